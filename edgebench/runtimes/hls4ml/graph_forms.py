"""The forms hls4ml 1.3's PyTorch parser reads, written into a traced copy of the model with the same values.

hls4ml traces a model with torch.fx and converts each node it knows by name; models as users write them use
other forms of the same ops, each of which it refuses ("Unsupported function ...") or misreads:

- ``F.adaptive_avg_pool2d`` / ``F.adaptive_max_pool2d``, a global ``x.mean((2, 3))`` / ``x.amax((2, 3))``: the
  pool layers (which :func:`~edgebench.runtimes.hls4ml.export.with_fixed_adaptive_pools` then fixes);
- ``F.avg_pool2d`` / ``F.max_pool2d`` calls: their layers (the function form's parser looks up a ``stride``
  keyword the traced call lacks);
- sizes read off a tensor (``F.avg_pool2d(x, x.size(3))``) and numbers made of them: the numbers, known for the
  model's one input size;
- ``x.view(x.size(0), -1)`` / ``x.reshape(...)`` that flatten each image: ``torch.flatten(x, 1)``;
- ``F.pad`` of height and width with zeros, and ``nn.ZeroPad2d``: the ``ConstantPad2d`` layer;
- ``F.conv2d`` of a module's own weight and bias (TF "same" padding layers: EfficientNet-PyTorch's
  ``Conv2dStaticSamePadding``, timm's ``Conv2dSame``): the ``Conv2d`` layer;
- ``F.batch_norm`` of a module's own statistics in eval mode (timm's ``BatchNormAct2d``): the ``BatchNorm2d``
  layer, and the shape checks ``torch._assert(x.ndim == 4, ...)`` before it, true for the model's input, dropped;
- ``torch.cat(xs, 1)``: the ``dim`` keyword, the only form its parser reads, two tensors at a time;
- a constant per channel added, subtracted, multiplied or divided (``(x - self.mean) / self.std`` inside the
  model): a BatchNorm with those scales and shifts (hls4ml would read the buffer as a second model input);
- a BatchNorm1d after a Linear: folded into the Linear (hls4ml's own fusion of the two fails).

The copy is kept only where it gives the model's outputs on a random batch; else the model goes to hls4ml as it
is, and hls4ml's refusal names what it met.
"""

from __future__ import annotations

import copy
import logging
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgebench.fx_rewrite import fresh_name, rewritten, traced

log = logging.getLogger(__name__)

#: pooling functions and the layer each stands for, with the call's arguments in order after the input
_POOLS: dict[Callable[..., Any], tuple[type[nn.Module], tuple[str, ...]]] = {
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ("output_size", "return_indices")),
}
_GLOBAL_POOLS = {"mean": nn.AdaptiveAvgPool2d, "amax": nn.AdaptiveMaxPool2d}
#: elementwise ops with a constant operand, as a scale and shift of the tensor operand ``x`` by the constant ``c``
_AFFINE: dict[Callable[..., Any], Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor]]] = {
    operator.add: lambda c, _first: (torch.ones_like(c), c),
    operator.sub: lambda c, x_first: (torch.ones_like(c), -c) if x_first else (-torch.ones_like(c), c),
    operator.mul: lambda c, _first: (c, torch.zeros_like(c)),
    operator.truediv: lambda c, x_first: (1 / c, torch.zeros_like(c)),
}


def hls4ml_forms(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A traced copy of ``model`` (images of ``input_shape``, C x H x W) in the forms hls4ml reads (see the module
    docstring), or ``model`` itself where none needs rewriting, it cannot be traced, or the copy computes other
    outputs."""
    try:
        graph = traced(copy.deepcopy(model).eval())  # its nodes' stack traces: a refusal names the model's line
        small, large = (node_values(graph, (batch, *input_shape)) for batch in (2, 3))
    except Exception:  # hls4ml's tracer is torch.fx's too: its own error then says what it met
        return model
    changed = (_static_sizes(graph, small, large) + _flattens(graph, small, large) + _pool_layers(graph, small)
               + _global_pools(graph, small) + _zero_pads(graph, small) + _zero_pad_layers(graph)
               + _conv_layers(graph, small) + _batch_norm_layers(graph, small) + _true_asserts(graph, small)
               + _cat_dims(graph) + _channel_affines(graph, small)
               + _folded_linear_norms(graph))
    if not changed:
        return model
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()  # the layers replaced: hls4ml's layer check reads every module left
    for node in graph.graph.nodes:  # hls4ml pickles the model into its project's YAML; torch 2.13's GraphModule
        node.type = None            # cannot be pickled with the forward's annotations (x: torch.Tensor)
    graph.recompile()
    if not _same_outputs(model, graph, input_shape):
        log.warning("hls4ml: the rewritten forms of %s compute other outputs; converting it as written",
                    type(model).__name__)
        return model
    return graph


def _replaced(graph: torch.fx.GraphModule, values: dict[str, Any], match: Callable[[torch.fx.Node], bool],
              build: Callable[[torch.fx.Node], torch.fx.Node]) -> int:
    """:func:`~edgebench.fx_rewrite.rewritten`, each new node given the value of the node it replaces (the same
    value: a later rewrite of its users reads it)."""
    def recorded(node: torch.fx.Node) -> torch.fx.Node:
        out = build(node)
        values[out.name] = values.get(node.name)
        return out

    return rewritten(graph, match, recorded)


def node_values(graph: torch.fx.GraphModule, shape: tuple[int, ...]) -> dict[str, Any]:
    """Each node's value for one batch of random images of ``shape`` (read by the rewrites here, and by the export's
    check of reshapes hls4ml misreads)."""
    values: dict[str, Any] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            values[n.name] = out = super().run_node(n)
            return out

    with torch.no_grad():
        Recorder(graph).run(_images(shape))
    return values


def _images(shape: tuple[int, ...]) -> torch.Tensor:
    """Random images of ``shape``, the same each call, leaving torch's global random state (training's) untouched."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _same_outputs(model: nn.Module, graph: nn.Module, input_shape: tuple[int, ...]) -> bool:
    x, training = _images((4, *input_shape)), model.training
    try:
        with torch.no_grad():
            want, got = model.eval()(x), graph.eval()(x)
    finally:
        model.train(training)
    return (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor) and want.shape == got.shape
            and torch.allclose(want, got, rtol=1e-4, atol=1e-5 * max(1.0, float(want.abs().max()))))


def _static_sizes(graph: torch.fx.GraphModule, small: dict[str, Any], large: dict[str, Any]) -> int:
    """Numbers the forward computes that are the same for any batch (``x.size(3)``, ``c * h * w`` of ``x.shape``)
    as constants."""
    def static(node: torch.fx.Node) -> bool:
        value = small.get(node.name)
        return _is_size(value) and value == large.get(node.name)

    def number(node: torch.fx.Node) -> object:
        value = small[node.name]
        return tuple(value) if isinstance(value, tuple) else value  # a torch.Size as the tuple it compares equal to

    return rewritten(graph, static, number)


def _is_size(value: object) -> bool:
    """A Python int or a tuple of them (a ``torch.Size``): what sizes are, never a value read off the data."""
    if isinstance(value, tuple):
        return bool(value) and all(map(_is_size, value))
    return isinstance(value, int) and not isinstance(value, bool)


def _flattens(graph: torch.fx.GraphModule, small: dict[str, Any], large: dict[str, Any]) -> int:
    """``view``/``reshape`` of each image of a batch into one row (``x.view(x.size(0), -1)``) as
    ``torch.flatten(x, 1)``."""
    def flattens(node: torch.fx.Node) -> bool:
        if node.target not in ("view", "reshape", torch.reshape) or not isinstance(node.args[0], torch.fx.Node):
            return False
        source = node.args[0].name
        return all(isinstance(v.get(source), torch.Tensor) and v[source].dim() > 2
                   and tuple(v[node.name].shape) == (len(v[source]), v[source][0].numel()) for v in (small, large))

    return _replaced(graph, small, flattens,
                     lambda node: graph.graph.call_function(torch.flatten, (node.args[0], 1)))


def _pool_layers(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """Pooling calls with fixed arguments as their layers."""
    def pool(node: torch.fx.Node) -> bool:
        return node.target in _POOLS and not any(isinstance(a, torch.fx.Node) for a in (*node.args[1:],
                                                                                        *node.kwargs.values()))

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        kind, names = _POOLS[node.target]
        options = {**dict(zip(names, node.args[1:])), **node.kwargs}
        if options.get("stride") in (None, []):
            options.pop("stride", None)  # the functions' "no stride" is the layers' default: the kernel
        return _call_layer(graph, node.args[0], kind(**options))

    return _replaced(graph, small, pool, layer)


def _global_pools(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """A mean or maximum over the height and width of a batch of maps as a global pool layer, flattened unless the
    call keeps the dims."""
    def spec(node: torch.fx.Node) -> tuple[type[nn.Module], bool] | None:
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        source = node.args[0] if node.args else None
        if name not in _GLOBAL_POOLS or not isinstance(source, torch.fx.Node):
            return None
        value = small.get(source.name)
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        dims = (dims,) if isinstance(dims, int) else dims
        if not isinstance(value, torch.Tensor) or value.dim() != 4 or not isinstance(dims, (tuple, list)):
            return None
        if sorted(d % 4 for d in dims) != [2, 3] or node.kwargs.get("dtype") is not None:
            return None
        return _GLOBAL_POOLS[name], bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        kind, keepdim = spec(node)  # type: ignore[misc]
        pooled = _call_layer(graph, node.args[0], kind(1))
        return pooled if keepdim else graph.graph.call_function(torch.flatten, (pooled, 1))

    return _replaced(graph, small, lambda node: spec(node) is not None, layer)


def _zero_pads(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """``F.pad(x, (left, right, top, bottom))`` of a batch of maps with zeros as the ``ConstantPad2d`` layer (the
    padding hls4ml converts: height and width, zeros)."""
    def zero_pad(node: torch.fx.Node) -> bool:
        if node.target not in (F.pad, torch._C._nn.pad) or not isinstance(node.args[0], torch.fx.Node):
            return False
        options = {**dict(zip(("pad", "mode", "value"), node.args[1:])), **node.kwargs}
        value = small.get(node.args[0].name)
        return (isinstance(value, torch.Tensor) and value.dim() == 4 and options.get("mode", "constant") == "constant"
                and not options.get("value") and isinstance(options.get("pad"), (tuple, list))
                and len(options["pad"]) == 4 and all(isinstance(p, int) for p in options["pad"]))

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        pad = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else None)
        return _call_layer(graph, node.args[0], nn.ConstantPad2d(tuple(pad), 0.0))

    return _replaced(graph, small, zero_pad, layer)


def _zero_pad_layers(graph: torch.fx.GraphModule) -> int:
    """``nn.ZeroPad2d`` layers as the ``ConstantPad2d`` of zeros each is (hls4ml knows layers by class name)."""
    pads = [(name, m) for name, m in graph.named_modules() if type(m) is nn.ZeroPad2d]
    for name, pad in pads:
        graph.add_submodule(name, nn.ConstantPad2d(pad.padding, 0.0))  # the copy's layer: the model keeps its own
    return len(pads)


def _conv_layers(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """``F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)`` - a layer whose forward pads the
    input itself, then convolves with its own parameters - as the ``Conv2d`` layer of those parameters."""
    names = ("weight", "bias", "stride", "padding", "dilation", "groups")

    def options(node: torch.fx.Node) -> dict[str, Any]:
        return {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                **dict(zip(names, node.args[1:])), **node.kwargs}

    def convolution(node: torch.fx.Node) -> bool:
        if node.target is not F.conv2d or not isinstance(node.args[0], torch.fx.Node):
            return False
        given = options(node)
        weight, bias = _held_tensor(graph, given["weight"]), given["bias"]
        return (weight is not None and weight.dim() == 4 and (bias is None or _held_tensor(graph, bias) is not None)
                and isinstance(small.get(node.args[0].name), torch.Tensor)
                and not any(isinstance(given[k], torch.fx.Node) for k in names[2:]))

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        given = options(node)
        weight, bias = _held_tensor(graph, given["weight"]), _held_tensor(graph, given["bias"])
        assert weight is not None
        conv = nn.Conv2d(weight.shape[1] * given["groups"], weight.shape[0], tuple(weight.shape[2:]), given["stride"],
                         given["padding"], given["dilation"], given["groups"], bias=bias is not None)
        with torch.no_grad():
            conv.weight.copy_(weight)
            if bias is not None:
                conv.bias.copy_(bias)
        return _call_layer(graph, node.args[0], conv)

    return _replaced(graph, small, convolution, layer)


def _batch_norm_layers(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """``F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, momentum, eps)`` of a
    batch of maps - a BatchNorm subclass whose forward normalises, then acts - as the ``BatchNorm2d`` layer of those
    statistics."""
    names = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")

    def options(node: torch.fx.Node) -> dict[str, Any]:
        return {"weight": None, "bias": None, "training": False, "eps": 1e-5, **dict(zip(names, node.args[1:])),
                **node.kwargs}

    def normalisation(node: torch.fx.Node) -> bool:
        if node.target is not F.batch_norm or not isinstance(node.args[0], torch.fx.Node):
            return False
        given, value = options(node), small.get(node.args[0].name)
        return (isinstance(value, torch.Tensor) and value.dim() == 4 and given["training"] is False
                and all(_held_tensor(graph, given[k]) is not None for k in ("running_mean", "running_var"))
                and all(given[k] is None or _held_tensor(graph, given[k]) is not None for k in ("weight", "bias")))

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        given = options(node)
        mean, var = _held_tensor(graph, given["running_mean"]), _held_tensor(graph, given["running_var"])
        assert mean is not None and var is not None
        norm = nn.BatchNorm2d(len(mean), eps=float(given["eps"])).eval()
        with torch.no_grad():
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            for key in ("weight", "bias"):
                if (value := _held_tensor(graph, given[key])) is not None:
                    getattr(norm, key).copy_(value)
        return _call_layer(graph, node.args[0], norm)

    return _replaced(graph, small, normalisation, layer)


def _true_asserts(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """``torch._assert`` checks whose condition held on the traced batch (a shape check, the same for every batch of
    the model's input): dropped, as hls4ml has no such op."""
    checks = [node for node in graph.graph.nodes if node.target is torch._assert and node.args
              and isinstance(node.args[0], torch.fx.Node) and small.get(node.args[0].name) is True]
    for node in checks:
        graph.graph.erase_node(node)
    return len(checks)


def _held_tensor(graph: torch.fx.GraphModule, operand: object) -> torch.Tensor | None:
    """The tensor a ``get_attr`` node reads (a module's own parameter or buffer); None for any other operand."""
    if not (isinstance(operand, torch.fx.Node) and operand.op == "get_attr"):
        return None
    value = operator.attrgetter(operand.target)(graph)
    return value if isinstance(value, torch.Tensor) else None


def _cat_dims(graph: torch.fx.GraphModule) -> int:
    """``torch.cat(xs, d)`` as ``torch.cat(xs, dim=d)``, and a concatenation of more than two tensors as one of two
    at a time (hls4ml's parser reads the keyword and joins two)."""
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target not in (torch.cat, torch.concat) or not node.args:
            continue
        tensors, dim = list(node.args[0]), node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if len(node.args) == 1 and len(tensors) <= 2:
            continue
        with graph.graph.inserting_before(node):
            while len(tensors) > 2:
                tensors[:2] = [graph.graph.call_function(torch.cat, (tensors[:2],), {"dim": dim})]
        node.args, node.kwargs = (tensors,), {**node.kwargs, "dim": dim}
        count += 1
    if count:
        graph.recompile()
    return count


def _channel_affines(graph: torch.fx.GraphModule, small: dict[str, Any]) -> int:
    """A constant per channel (a number, or a buffer or parameter of 1 or C values) added, subtracted, multiplied or
    divided by a batch of maps or rows, as a BatchNorm whose scales and shifts compute the same."""
    def operands(node: torch.fx.Node) -> tuple[torch.fx.Node, torch.Tensor, bool] | None:
        if node.op != "call_function" or node.target not in _AFFINE or len(node.args) != 2:
            return None
        first, second = node.args
        for x, c, x_first in ((first, second, True), (second, first, False)):
            if node.target is operator.truediv and not x_first:
                continue  # c / x is no scale of x
            value = small.get(x.name) if isinstance(x, torch.fx.Node) else None
            if not isinstance(value, torch.Tensor) or value.dim() not in (2, 4) or not value.is_floating_point():
                continue
            per_channel = _per_channel(graph, c, value.shape[1], value.dim())
            if per_channel is not None:
                return x, per_channel, x_first
        return None

    def layer(node: torch.fx.Node) -> torch.fx.Node:
        x, c, x_first = operands(node)  # type: ignore[misc]
        scale, shift = _AFFINE[node.target](c, x_first)
        kind = nn.BatchNorm2d if small[x.name].dim() == 4 else nn.BatchNorm1d
        norm = kind(len(c), eps=0.0).eval()
        with torch.no_grad():
            norm.weight.copy_(scale)
            norm.bias.copy_(shift)
        return _call_layer(graph, x, norm)

    return _replaced(graph, small, lambda node: operands(node) is not None, layer)


def _folded_linear_norms(graph: torch.fx.GraphModule) -> int:
    """Each BatchNorm1d that only normalises a Linear's output (one the model has, or a constant per feature made one
    above) folded into that Linear's weights and bias: hls4ml 1.3 fails fusing the two ("'WeightVariable' object
    has no attribute 'data_unquantized'")."""
    modules = dict(graph.named_modules())
    calls: dict[str, int] = {}
    for node in graph.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    count = 0
    for node in list(graph.graph.nodes):
        norm = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if isinstance(norm, nn.BatchNorm1d) else None
        if not (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(modules.get(source.target), nn.Linear) and calls[source.target] == 1
                and norm.running_mean is not None):
            continue
        linear = modules[source.target]
        scale = (norm.weight if norm.affine else 1.0) / torch.sqrt(norm.running_var + norm.eps)
        shift = (norm.bias if norm.affine else 0.0) - norm.running_mean * scale
        folded = nn.Linear(linear.in_features, linear.out_features)
        with torch.no_grad():
            folded.weight.copy_(linear.weight * scale[:, None])
            folded.bias.copy_((linear.bias if linear.bias is not None else 0.0) * scale + shift)
        graph.add_submodule(source.target, folded)  # the copy's layer: the model keeps its own
        node.replace_all_uses_with(source)
        graph.graph.erase_node(node)
        count += 1
    if count:
        graph.recompile()
    return count


def _per_channel(graph: torch.fx.GraphModule, operand: object, channels: int, dims: int) -> torch.Tensor | None:
    """``operand`` as ``channels`` values when it is a number, or a constant tensor that broadcasts per channel over
    a tensor of ``dims`` dims (1 value, or shape (C, 1, 1) / (1, C, 1, 1) for maps, (C,) / (1, C) for rows)."""
    if isinstance(operand, (int, float)) and not isinstance(operand, bool):
        return torch.full((channels,), float(operand))
    value = _held_tensor(graph, operand)
    if value is None or not value.is_floating_point():
        return None
    value = value.detach().float()
    if value.numel() == 1:
        return value.reshape(1).expand(channels).clone()
    trailing = (1,) * (dims - 2)
    if value.numel() == channels and tuple(value.shape[-(dims - 1):]) == (channels, *trailing) \
            and all(s == 1 for s in value.shape[:-(dims - 1)]):
        return value.reshape(channels).clone()
    return None


def _call_layer(graph: torch.fx.GraphModule, source: torch.fx.Node, layer: nn.Module) -> torch.fx.Node:
    """A node calling ``layer`` (added to ``graph`` under a fresh name) on ``source``."""
    name = fresh_name(graph, type(layer).__name__.lower())
    graph.add_submodule(name, layer)
    return graph.graph.call_module(name, (source,))
