"""Replacing nodes of a torch.fx graph: the one loop the runtimes' graph rewrites share (LiteRT's aten graphs,
hls4ml's traced modules)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def rewritten(graph: torch.fx.GraphModule, match: Callable[[torch.fx.Node], bool],
              build: Callable[[torch.fx.Node], torch.fx.Node | object]) -> int:
    """Replace each ``call_function``/``call_method`` node of ``graph`` that ``match`` accepts by what ``build``
    makes of it (nodes inserted before it, or a constant its users then read); return how many went, the graph
    recompiled where any did."""
    replaced = 0
    for node in list(graph.graph.nodes):
        if node.op not in ("call_function", "call_method") or not match(node):
            continue
        with graph.graph.inserting_before(node):
            out = build(node)
        if isinstance(out, torch.fx.Node):
            node.replace_all_uses_with(out)
        else:  # a value: each user reads it in the node's place
            for user in list(node.users):
                user.args = torch.fx.node.map_arg(user.args, lambda a, n=node, v=out: v if a is n else a)
                user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda a, n=node, v=out: v if a is n else a)
        graph.graph.erase_node(node)
        replaced += 1
    if replaced:
        graph.recompile()
    return replaced


def fresh_name(graph: torch.fx.GraphModule, prefix: str) -> str:
    """A name for a new attribute of ``graph`` (a buffer, a layer) that none of its attributes has: registering
    one under a name taken would silently replace what the graph's other nodes read."""
    index = len(graph.graph.nodes)
    while hasattr(graph, f"{prefix}_{index}"):
        index += 1
    return f"{prefix}_{index}"


def constant(graph: torch.fx.GraphModule, prefix: str, value: torch.Tensor) -> torch.fx.Node:
    """``value`` as a buffer of ``graph``, read by a node (made where the graph is inserting)."""
    name = fresh_name(graph, prefix)
    graph.register_buffer(name, value)
    return graph.graph.get_attr(name)


def traced(module: torch.nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace(module)`` with each node's stack trace kept (``node.meta['stack_trace']``, beside
    the ``nn_module_stack`` every trace keeps): an op a converter refuses can then be found in the model's code."""
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    graph = tracer.trace(module)
    return torch.fx.GraphModule(tracer.root, graph, type(module).__name__)
