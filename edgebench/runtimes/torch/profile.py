"""PyTorch eager per-layer profile through ``torch.profiler``.

Each leaf module's forward is wrapped in a ``record_function`` range named after its module path
(pre/post forward hooks), so the profiler's per-range CPU time is the module's time. BatchNorm,
activations and pooling count towards the conv/linear layer that ran before them, as on the
compiled runtimes where they are fused into it; functional code outside modules (a residual
``+``, ``torch.flatten``) is the ``(outside modules)`` row: run time minus the modules' time.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from torch import nn

from edgebench.models.cost import layer_macs
from edgebench.profile.table import INPUT_ROW, LayerInfo, LayerProfile, OpTime, build_profile

OUTSIDE_ROW = "(outside modules)"
_RANGE_PREFIX = "edgebench.layer::"


def layer_infos(model: nn.Module, example: Any) -> tuple[dict[str, LayerInfo], list[str]]:
    """Conv/linear layers with MACs per sample and channels, and the execution order of leaf modules."""
    import torch

    macs = layer_macs(model, tuple(example.shape[1:]))
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    handles = [m.register_forward_hook(lambda module, _i, _o: order.append(names[module]))
               for m in model.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            model(example[:1])
    finally:
        for h in handles:
            h.remove()
    infos = {}
    for path, n in macs.items():
        module = model.get_submodule(path)
        if isinstance(module, nn.Conv2d):
            infos[path] = LayerInfo(path, "Conv", n, module.in_channels, module.out_channels)
        else:
            infos[path] = LayerInfo(path, "Gemm", n, module.in_features, module.out_features)
    return infos, order


def profile_torch(model: nn.Module, batch: np.ndarray, runs: int = 50, warmup_runs: int = 5) -> LayerProfile:
    """Per-layer profile of eager ``model`` on the CPU, ``runs`` inferences of ``batch``."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    x = torch.from_numpy(batch).to(next(model.parameters()).dtype)
    infos, order = layer_infos(model, x)
    owner: dict[str, str] = {}  # leaf module -> the conv/linear layer it is attributed to
    current = INPUT_ROW
    for path in order:
        current = path if path in infos else current
        owner[path] = current
    ranges: dict[nn.Module, Any] = {}

    def enter(module: nn.Module, _inputs: Any) -> None:
        ranges[module] = record_function(_RANGE_PREFIX + paths[module])
        ranges[module].__enter__()

    def leave(module: nn.Module, _inputs: Any, _output: Any) -> None:
        ranges.pop(module).__exit__(None, None, None)

    paths = {m: n for n, m in model.named_modules() if n in owner}
    handles = [h for m in paths for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.inference_mode():
            for _ in range(warmup_runs):
                model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter_ns()
                for _ in range(runs):
                    model(x)
                wall_ms = (time.perf_counter_ns() - t0) / 1e6 / runs
    finally:
        for h in handles:
            h.remove()
    ops = []
    for event in prof.key_averages():
        if event.key.startswith(_RANGE_PREFIX):
            path = event.key[len(_RANGE_PREFIX):]
            kind = type(model.get_submodule(path)).__name__
            op_type = {"Conv2d": "Conv", "Linear": "Gemm"}.get(kind, kind)
            ops.append(OpTime(path, op_type, event.cpu_time_total / 1e3 / runs, owner[path]))
    inside = sum(o.time_ms for o in ops)
    ops.append(OpTime(OUTSIDE_ROW, "python", max(0.0, wall_ms - inside), OUTSIDE_ROW))
    return build_profile("torch", ops, infos, wall_ms, runs)
