"""hls4ml projects (extra ``fpga``): fixed-point conversion, g++ C simulation, optional C synthesis.

The artifact is a directory: the hls4ml project, its compiled C-simulation library,
``edgebench.json`` (how to call it: input layout, sizes, library) and
``synthesis.json`` (parsed csynth figures, or "not synthesised" and why).

Layout matters: with ``io_parallel`` hls4ml transposes NCHW inputs itself
(``channels_last_conversion='full'``); ``io_stream`` cannot, so the project is built
with ``'internal'`` and its inputs must be fed NHWC. A model that flattens its image input with no convolution
or pooling before (an MLP) is built with ``'internal'`` too: hls4ml 1.3's ``'full'`` then reads the pixels in
another order (errors of 0.4 on a 16-pixel MLP). A wrong layout gives silently wrong outputs.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from edgebench.errors import UnsupportedModelError, first_line, require_module
from edgebench.fx_rewrite import traced
from edgebench.models.code_closure import library_dirs
from edgebench.quantization.fixed_point import apply_precisions, hls_precisions
from edgebench.quantization.modules import LayerQuant
from edgebench.quantization.qat import deployable, is_quantization_trained
from edgebench.runtimes.base import EXPORTERS, Exporter, TargetBlock
from edgebench.runtimes.hls4ml import GXX, HLS4ML
from edgebench.runtimes.hls4ml.csim import CFLAGS, compile_csim, cxx_standard
from edgebench.runtimes.hls4ml.graph_forms import hls4ml_forms, node_values
from edgebench.runtimes.hls4ml.multipliers import AP_ROUNDING, bit_operations, count_multipliers, weight_bytes
from edgebench.runtimes.hls4ml.report import METADATA_FILE, find_csynth_report, parse_csynth_report, write_synthesis
from edgebench.runtimes.hls4ml.target import FPGASpec
from edgebench.variants import QuantSpec

log = logging.getLogger(__name__)

PROJECT = "edgebench"
DEFAULT_FPGA = FPGASpec(part="xczu9eg-ffvb1156-2-e", io_type="io_stream")  # = local-hls4ml-csim

#: layers hls4ml 1.3 rejects that edge CNNs commonly use, with what to do instead
_KNOWN_UNSUPPORTED = {
    "AdaptiveAvgPool2d": "use a fixed AvgPool2d/MaxPool2d for the known input size",
    "AdaptiveMaxPool2d": "use a fixed MaxPool2d for the known input size",
    "Hardswish": "use ReLU",
    "ReLU6": "use ReLU (hls4ml 1.3's PyTorch converter has no ReLU6)",
    "Hardsigmoid": "use Sigmoid or ReLU",
    "SiLU": "use ReLU",
    "GELU": "use ReLU",
}
#: hls4ml 1.3 errors that name no layer, with the form of the model that meets them and what converts it
_MESSAGE_HINTS = {
    "broadcasting merge not supported non-io_parallel": " (x * w with w of shape (N, C, 1, 1), as a "
    "squeeze-and-excitation gates its channels: hls4ml 1.3 broadcasts in io_parallel only; a target with fpga: "
    "{io_type: io_parallel} converts it)",
}
#: layers hls4ml 1.3 converts to a firmware that computes something else, with what to use instead
_WRONG_CONVERSIONS = {
    # it keeps the PyTorch parameter's 1 or C slopes where its kernel reads one per input element: a conv's PReLU
    # gave max |C-sim - PyTorch| 37.3 against outputs of at most 0.43
    "PReLU": "hls4ml 1.3 converts it to a firmware that reads its slopes per element, not per channel: use LeakyReLU",
}
#: layers that do nothing at inference, which hls4ml 1.3 has no converter for (Dropout it passes through in some graphs
#: only); eager-mode quantization's stubs, as torchvision's quantizable models carry them, pass a float model's
#: tensors on unchanged
_INFERENCE_NO_OPS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity,
                     torch.ao.quantization.QuantStub, torch.ao.quantization.DeQuantStub)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
#: calls in a forward that hls4ml 1.3's tracer rejects ("Unsupported function <name>"), with what to write instead
_UNSUPPORTED_FUNCTIONS = {
    "size": " (x.size(0) in forward, other than to flatten each image: hls4ml's tracer has no batch size; write the "
            "op without it)",
    "getattr": " (a tensor attribute read in forward, such as n, c, h, w = x.shape: hls4ml's tracer has no shapes; "
               "write the op without it, e.g. x.flatten(1))",
    # what graph_forms does not rewrite: reductions over other axes, pads of channels, other divisions
    "mean": " (a mean over other axes than height and width, such as x.mean(1): hls4ml 1.3 has no reduction layer)",
    "amax": " (a maximum over other axes than height and width, such as x.amax(1): hls4ml 1.3 has no reduction layer)",
    "pad": " (F.pad of channels, or not with zeros: hls4ml 1.3 pads height and width with zeros only)",
    "truediv": " (a division other than by a constant per channel: hls4ml 1.3 has no division layer)",
    "log_softmax": " (a log_softmax output: hls4ml 1.3 has softmax only; return the logits, which training's "
                   "cross-entropy takes)",
    # channel splits (Res2Net, GhostNet-style, ShuffleNet's halves): hls4ml 1.3 has no layer that splits a tensor
    "split": " (torch.split of channels in forward: hls4ml 1.3 has no split layer; this model cannot be an hls4ml "
             "firmware as written)",
    "chunk": " (x.chunk(...) of channels in forward: hls4ml 1.3 has no split layer; this model cannot be an hls4ml "
             "firmware as written)",
}

#: functions whose layer is not their name
_FUNCTION_LAYERS = {"interpolate": "Upsample"}
#: what a layer that stands for a function must be given to convert right
_LAYER_NOTES = {"Upsample": " (with a scale_factor and mode='nearest', hls4ml 1.3's only resize)"}


class _PassThrough(nn.Module):
    """What stands for an inference no-op: a module outside ``torch.nn``, so hls4ml's tracer (and torch.fx's) traces
    through its forward instead of looking for a converter, and no layer is left of it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def without_inference_no_ops(model: nn.Module) -> nn.Module:
    """``model`` itself when it holds no layer of ``_INFERENCE_NO_OPS`` (a Dropout before the classifier), which
    hls4ml 1.3 has no converter for; else a copy with each replaced by a pass-through, in an ``nn.Sequential`` or
    called by name in a forward (``x = self.dropout(x)``) alike. The other layers keep their names, which per-layer
    fixed-point types are matched by, and the model stays the user's class (hls4ml writes it into its project)."""
    if not any(_is_no_op(m) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):
            if _is_no_op(child):
                parent._modules[key] = _PassThrough()
    return model


def _is_no_op(module: nn.Module) -> bool:
    """A layer of ``_INFERENCE_NO_OPS`` with no forward hook (a prepared quantization stub's observer or fake
    quantizer runs in one, and changes the values)."""
    return isinstance(module, _INFERENCE_NO_OPS) and not module._forward_hooks


def with_fixed_adaptive_pools(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """``model`` with each ``AdaptiveAvgPool2d``/``AdaptiveMaxPool2d`` (hls4ml 1.3 has no converter for them) that
    sees one map size which divides into its output replaced by the ``AvgPool2d``/``MaxPool2d`` of kernel = stride =
    size // output: the same windows, so the same values (a global pool: one window of the whole map). The sizes are
    read from a forward of zeros at ``input_shape`` (C, H, W). ``model`` itself where none is replaced; a pool whose
    windows would be uneven stays, and hls4ml's refusal names it."""
    adaptive = {nn.AdaptiveAvgPool2d: nn.AvgPool2d, nn.AdaptiveMaxPool2d: nn.MaxPool2d}
    pools = {name: m for name, m in model.named_modules() if type(m) in adaptive and not getattr(m, "return_indices", 0)}
    if not pools:
        return model
    sizes = _map_sizes(model, pools, input_shape)
    if sizes is None:  # a forward that fails on zeros: converted as it is, and hls4ml says what it meets
        return model
    fixed = {}
    for name, pool in pools.items():
        seen = {size for size, _ in sizes[name]}
        if len(seen) != 1:
            continue  # never called, or called on maps of several sizes
        ((height, width),) = seen
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size, pool.output_size)
        out_h, out_w = (size if o is None else o for o, size in zip(out, (height, width)))
        if height % out_h == 0 and width % out_w == 0:
            kernel = (height // out_h, width // out_w)
            fixed[name] = adaptive[type(pool)](kernel, kernel)
    if not fixed:
        return model
    model = copy.deepcopy(model)
    for name, pool in fixed.items():
        parent, _, leaf = name.rpartition(".")
        model.get_submodule(parent)._modules[leaf] = pool
    return model


def _map_sizes(model: nn.Module, layers: Mapping[str, nn.Module],
               input_shape: tuple[int, ...]) -> dict[str, set[tuple[tuple[int, ...], tuple[int, ...]]]] | None:
    """The (input, output) map sizes (the dimensions after batch and channels) each of ``layers`` sees in a forward
    of zeros at ``input_shape`` (C, H, W): what an adaptive pool's windows and a ceil_mode pool's output size depend
    on. None when the forward fails on zeros."""
    sizes: dict[str, set[tuple[tuple[int, ...], tuple[int, ...]]]] = {name: set() for name in layers}
    hooks = [m.register_forward_hook(lambda _m, args, out, name=name: sizes[name].add((tuple(args[0].shape[2:]),
                                                                                       tuple(out.shape[2:]))))
             for name, m in layers.items()]
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    except Exception:  # any error of the user's forward: the caller goes on without the sizes
        return None
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return sizes


def hls4ml_ready(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """``model`` as it goes to hls4ml: inference no-ops dropped, functional forms written as hls4ml reads them
    (:mod:`~edgebench.runtimes.hls4ml.graph_forms`), adaptive pools fixed for ``input_shape`` (C, H, W)."""
    return with_fixed_adaptive_pools(hls4ml_forms(without_inference_no_ops(model), input_shape), input_shape)


def check_supported(model: nn.Module, input_shape: tuple[int, ...], io_type: str = "io_parallel") -> None:
    """Raise UnsupportedModelError naming the first layer hls4ml cannot convert, converts to a firmware that computes
    other outputs at images of ``input_shape`` (C, H, W), or (for ``io_type`` ``io_stream``) cannot stream, and the
    other such layers after it (one at a time took a run per layer to find them all)."""
    from hls4ml.converters import get_supported_pytorch_layers

    supported = set(get_supported_pytorch_layers())
    problems = [(name, module, problem) for name, module in model.named_modules()
                if (problem := _layer_problem(model, name, module, supported, io_type))]
    if problems:
        others = [f"'{name}' ({type(module).__name__})" for name, module, _ in problems[1:]]
        also = f"; also {len(others)} more: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''}" if others else ""
        raise UnsupportedModelError(problems[0][2] + also)
    _check_ceil_modes(model, input_shape)


def _layer_problem(model: nn.Module, name: str, module: nn.Module, supported: set[str], io_type: str) -> str | None:
    """Why hls4ml cannot convert (or stream) the leaf layer ``module``, or None (containers and no-ops pass)."""
    if module is model and not isinstance(module, _CONTAINERS):
        return None  # the user's top-level class; its children are checked
    if isinstance(module, _CONTAINERS) or list(module.children()) or isinstance(module, _PassThrough):
        return None  # a no-op's stand-in is traced through
    kind = type(module).__name__
    if isinstance(module, nn.Conv1d | nn.Conv2d) and module.groups > 1:
        what = "depthwise" if module.groups == module.in_channels else "grouped"
        return (f"hls4ml cannot convert layer '{name}' ({kind} with groups={module.groups}, {what} convolution): "
                "hls4ml's PyTorch converter has no grouped/depthwise convolution")
    if isinstance(module, nn.Conv1d | nn.Conv2d) and module.padding_mode != "zeros":
        return (f"hls4ml cannot convert layer '{name}' ({kind} with padding_mode='{module.padding_mode}'): its "
                "converter pads with zeros only")
    if misread := _misread_attribute(name, module):
        return misread
    if io_type == "io_stream" and isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and module.padding not in (0, (0, 0)):
        return (f"hls4ml cannot stream layer '{name}' ({kind} with padding={module.padding}): its io_stream pooling "
                "takes no padding (the C simulation aborts); a target with fpga: {io_type: io_parallel} converts it")
    if io_type == "io_stream" and isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        window, stride = (_per_dim(getattr(module, f), 2) for f in ("kernel_size", "stride"))
        if window != stride:  # nnet_pooling_stream.h asserts pool size == stride: the C simulation aborts
            return (f"hls4ml cannot stream layer '{name}' ({kind} of window {module.kernel_size}, stride "
                    f"{module.stride}): its io_stream pooling takes windows that do not overlap (stride = window; the "
                    "C simulation aborts); a target with fpga: {io_type: io_parallel} converts it")
    if kind in _WRONG_CONVERSIONS:
        return f"hls4ml cannot convert layer '{name}' ({kind}) right: {_WRONG_CONVERSIONS[kind]}"
    if kind not in supported:
        advice = _KNOWN_UNSUPPORTED.get(kind, "see hls4ml's supported PyTorch layers")
        return f"hls4ml cannot convert layer '{name}' ({kind}): {advice}"
    return None


def _check_reshapes(model: nn.Module, input_shape: tuple[int, ...], io_type: str) -> None:
    """Raise UnsupportedModelError naming where the forward reshapes a 4-D tensor to a 3-D one that hls4ml 1.3 reads
    in another order, a firmware that computes other outputs: in io_stream any such reshape, in io_parallel one
    that merges the channels into the new ones (``torch.flatten(x, 1, 2)`` or ``x.squeeze(1)`` of the (1, C, L)
    image into a Conv1d's (C, L) signal, as a 1-D model reads edgebench's images). Such a Conv1d/BatchNorm1d/MaxPool1d
    net was 1.4 off PyTorch at ap_fixed<28,10> (outputs of 0.8) and a trained one stored "ok" at chance accuracy,
    where the same layers on a 3-D input agree within 6e-5; io_parallel's ``x.flatten(2)`` of (C, H, W) maps agrees
    within 5e-5, io_stream's was 0.04 off outputs of 0.1. The same net in Conv2d layers over the image converts."""
    training = model.training
    try:  # in eval mode: a training BatchNorm would move the user's running statistics on the random images
        graph = model if isinstance(model, torch.fx.GraphModule) else traced(model)
        values = node_values(graph.eval(), (2, *input_shape))
    except Exception:  # a model fx cannot trace or run: hls4ml's own tracer says what it meets
        return
    finally:
        model.train(training)
    for node in graph.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module") or not node.args:
            continue
        source, out = values.get(getattr(node.args[0], "name", "")), values.get(node.name)
        if not (isinstance(source, torch.Tensor) and isinstance(out, torch.Tensor) and source.dim() == 4
                and out.dim() == 3 and source.numel() == out.numel()):
            continue
        if io_type == "io_parallel" and out.shape[1] == source.shape[1]:
            continue  # the channels kept, each map flattened: io_parallel computes it
        stack = node.meta.get("nn_module_stack")
        where = f"layer '{next(reversed(stack))}'" if stack else "the model's forward"
        if line := _own_line(node.meta.get("stack_trace") or ""):
            where += f" ({line})"
        raise UnsupportedModelError(
            f"hls4ml cannot convert {where} right: it reshapes a {tuple(source.shape[1:])} tensor to "
            f"{tuple(out.shape[1:])}, which hls4ml 1.3's {io_type} reads in another order, a firmware that computes "
            "other outputs; write a 1-D net's layers as 2-D ones over the (1, C, L) image (Conv1d(C, n, k) as "
            "Conv2d(1, n, (C, k)), then Conv2d kernels (1, k), BatchNorm2d, MaxPool2d((1, p))) or leave hls4ml "
            "targets out for this model")


def _misread_attribute(name: str, module: nn.Module) -> str | None:
    """Why hls4ml 1.3 converts layer ``name`` to a firmware that computes other outputs, for an attribute of a
    convolution or pool it does not read, and what to do; None where there is none. Its converters pass a Conv's
    dilation on for the output size only (nnet_conv1d.h/nnet_conv2d.h fix dilation 1, the streaming kernels read
    none) and never read a MaxPool's dilation or an AvgPool's divisor_override: a dilated Conv2d gave max |C-sim -
    PyTorch| 0.47 against outputs of 0.35 (3e-5 undilated), a dilated MaxPool2d 0.85, divisor_override=2 1.31."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.MaxPool1d | nn.MaxPool2d):
        dims = 1 if isinstance(module, nn.Conv1d | nn.MaxPool1d) else 2
        dilation, kernel = (_per_dim(getattr(module, f), dims) for f in ("dilation", "kernel_size"))
        if any(d != 1 and k != 1 for d, k in zip(dilation, kernel)):  # a 1-wide window reads one pixel at any dilation
            return (f"hls4ml cannot convert layer '{name}' ({kind} with dilation={module.dilation}) right: hls4ml 1.3 "
                    "reads the pixels of its window next to each other (dilation 1), a firmware that computes other "
                    "outputs; use dilation=1 (a larger kernel or a stride widens its view) or leave hls4ml targets "
                    "out for this model")
    if isinstance(module, nn.AvgPool2d) and module.divisor_override is not None:
        return (f"hls4ml cannot convert layer '{name}' ({kind} with divisor_override={module.divisor_override}) "
                "right: hls4ml 1.3 divides by the pixels of its window whatever the divisor, a firmware that computes "
                "other outputs; drop divisor_override (scale the next layer instead) or leave hls4ml targets out for "
                "this model")
    return None


def _check_ceil_modes(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Raise UnsupportedModelError naming a pool whose ceil_mode gives it a larger output than hls4ml 1.3's
    floor((size + 2 padding - window) / stride) + 1 at images of ``input_shape``: its converter never reads ceil_mode
    (a MaxPool1d of 11 samples: max |C-sim - PyTorch| 1.3 in io_parallel, 340 in io_stream, against outputs of
    0.81). Where the windows fit the map, ceil_mode changes nothing and the pool converts."""
    pools = {name: m for name, m in model.named_modules()
             if isinstance(m, nn.modules.pooling._MaxPoolNd | nn.modules.pooling._AvgPoolNd) and m.ceil_mode
             and not getattr(m, "return_indices", False)}
    sizes = _map_sizes(model, pools, input_shape) if pools else None
    for name, pool in pools.items():
        for size, out in (sizes or {}).get(name, ()):
            window, stride, padding = (_per_dim(getattr(pool, f), len(size))
                                       for f in ("kernel_size", "stride", "padding"))
            floor = tuple((s + 2 * p - k) // st + 1 for s, p, k, st in zip(size, padding, window, stride))
            if floor != out:
                raise UnsupportedModelError(
                    f"hls4ml cannot convert layer '{name}' ({type(pool).__name__} with ceil_mode=True) right: on its "
                    f"{'x'.join(map(str, size))} input hls4ml 1.3 rounds the output size down, to "
                    f"{'x'.join(map(str, floor))} where PyTorch gives {'x'.join(map(str, out))}; use "
                    "ceil_mode=False, or a padding or input size that the windows fit")


def _per_dim(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    """A layer's size, stride, padding or dilation, given as one int or one per map dimension, per dimension."""
    return (value,) * dims if isinstance(value, int) else tuple(value)


#: an hls4ml fixed-point type: ap_fixed<W,I[,Q[,O[,N]]]> or ap_ufixed<...> (the ap_ is optional)
_AP_FIXED = re.compile(r"(?:ap_)?(u?)fixed<(\d+),(-?\d+)(?:,(\w+))?(?:,(\w+))?(?:,\d+)?>")


class FixedRange(NamedTuple):
    """The values an AP fixed-point type holds, ``low`` to ``high`` in steps of ``step``, and the quantization mode
    that rounds a value onto them (its ``AP_ROUNDING`` name) before the overflow mode saturates or wraps it."""

    low: float
    high: float
    saturates: bool
    step: float
    rounding: str

    def beyond(self, lo: float, hi: float) -> float | None:
        """``hi`` if the type's rounding sends it above ``high``, else ``lo`` if it sends it below ``low``, else None."""
        rounded_hi, rounded_lo = AP_ROUNDING.get(self.rounding, np.floor)(np.array([hi, lo]) / self.step) * self.step
        if rounded_hi > self.high:
            return hi
        return lo if rounded_lo < self.low else None


def fixed_range(precision: str) -> FixedRange | None:
    """An AP fixed-point type's values (Vitis HLS UG1399): -2^(I-1) to 2^(I-1) - 2^(I-W) signed (AP_SAT_SYM leaves
    out the most negative), 0 to 2^I - 2^(I-W) unsigned, in steps of 2^(I-W), with its quantization mode (AP_TRN,
    the default, floors): ap_fixed<8,3,AP_RND> rounds 3.984375 up to 4, out of range (it wraps to -4), AP_RND_MIN_INF
    down to 3.96875, in range; AP_TRN_ZERO truncates -4.01 up to -4, in range. hls4ml's own spelling
    (fixed<21,11,TRN,WRAP,0>) is read too. None for what is not such a type (ap_int)."""
    match = _AP_FIXED.fullmatch(precision.replace(" ", ""))
    if match is None:
        return None
    unsigned, width, integer = match[1] == "u", int(match[2]), int(match[3])
    rounding = (match[4] or "TRN").upper().removeprefix("AP_")
    overflow = (match[5] or "WRAP").upper().removeprefix("AP_")
    step = 2.0 ** (integer - width)
    end = 2.0 ** integer if unsigned else 2.0 ** (integer - 1)
    low = 0.0 if unsigned else -end + (step if overflow == "SAT_SYM" else 0.0)
    return FixedRange(low, end - step, "SAT" in overflow, step, rounding)


def overflowing_layers(model: nn.Module, calibration: np.ndarray, precision: str,
                       types: Mapping[str, str] | None = None) -> list[str]:
    """The tensors the model computes on (up to 256) calibration images that leave the range of their fixed-point
    type (:func:`fixed_range`), each with its furthest value: every node of the traced forward (the input, layers,
    adds and concatenations), or the Conv2d/Linear/BatchNorm outputs of a model fx cannot trace. ``types``: the
    output type hls4ml gave each layer, by its name (the fx node's); a node it has no layer for (folded into the one
    before) the type of the node before; without ``types``, ``precision`` for every tensor. hls4ml widens
    the results of convolutions, dense layers and adds, so a value past ``precision`` there overflows only where
    a narrower type follows (the activation after it), or nowhere for the last layer. With hls4ml's default
    overflow (AP_WRAP) the C simulation's outputs there are garbage, not a rounding error."""
    if fixed_range(precision) is None:
        return []
    extremes: dict[str, tuple[float, float, str]] = {}
    previous = [precision]  # the type of the node run before: a node hls4ml folded away (a BatchNorm into its conv)

    def record(name: str, node: str, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.is_floating_point() and output.numel():
            lo, hi, _ = extremes.get(name, (math.inf, -math.inf, ""))
            node_type = precision if types is None else types.get(node, previous[0])
            previous[0] = node_type
            extremes[name] = (min(lo, float(output.min())), max(hi, float(output.max())), node_type)

    x = torch.from_numpy(np.ascontiguousarray(calibration[:256], dtype=np.float32))
    with torch.no_grad():
        try:
            _Recorder(torch.fx.symbolic_trace(model), record).run(x)
        except Exception:  # a forward fx cannot trace (any error of the tracer): the layers' outputs by hooks
            extremes.clear()
            layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear | nn.BatchNorm2d)]
            hooks = [m.register_forward_hook(lambda _m, _i, out, name=n: record(name, name.replace(".", "_"), out))
                     for n, m in layers]
            try:
                model(x)
            finally:
                for hook in hooks:
                    hook.remove()
    found = []
    for name, (lo, hi, node_type) in extremes.items():
        bounds = fixed_range(node_type)
        if bounds is not None and (value := bounds.beyond(lo, hi)) is not None:
            found.append(f"{name} reaches {value:.3g}")
    return found


def overflowing_weights(hls_model: Any) -> list[str]:
    """The weights and biases of an hls4ml model that leave the range of the fixed-point type it stores them in,
    each with its furthest value (a bias of -50 in ap_fixed<16,6> wraps to 14: every output of that layer is
    off, whatever the calibration images)."""
    found = []
    for layer in hls_model.get_layers():
        for name, weights in layer.weights.items():
            bounds, data = fixed_range(str(weights.type.precision)), np.asarray(weights.data, dtype=np.float64)
            if bounds is None or not data.size:
                continue
            if (value := bounds.beyond(float(data.min()), float(data.max()))) is not None:
                found.append(f"{layer.name} {name} reaches {value:.3g}")
    return found


#: operations that only move values: their outputs repeat what the node before them was found to hold
_RESHAPES = {"flatten", "view", "reshape", "permute", "transpose", "squeeze", "unsqueeze", "contiguous"}


class _Recorder(torch.fx.Interpreter):
    """Runs a traced model, handing each node's output (but a reshape's) to ``record`` under the module's or the
    operation's name, with the node's own name (hls4ml's name for the layer)."""

    def __init__(self, graph: torch.fx.GraphModule, record: Any) -> None:
        super().__init__(graph)
        self.record = record

    def run_node(self, n: torch.fx.Node) -> Any:
        out = super().run_node(n)
        module = self.module.get_submodule(str(n.target)) if n.op == "call_module" else None
        op = getattr(n.target, "__name__", str(n.target))
        if n.op != "output" and not isinstance(module, nn.Flatten) and op not in _RESHAPES:
            self.record(str(n.target) if module is not None else n.name, n.name, out)
        return out


def channels_last_conversion(model: nn.Module, fpga: FPGASpec) -> str:
    """hls4ml's input conversion: ``'full'`` (the firmware takes NCHW) for ``io_parallel`` models with a spatial
    layer, else ``'internal'`` (it takes NHWC; see the module's docstring)."""
    spatial = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
    if fpga.io_type == "io_parallel" and any(isinstance(m, spatial) for m in model.modules()):
        return "full"
    return "internal"


def _hls_config(hls4ml: Any, model: nn.Module, input_shape: tuple[int, ...], quant: QuantSpec,
                fpga: FPGASpec, layers: list[LayerQuant] | None = None) -> dict[str, Any]:
    """Per-layer config ('name' granularity): the variant's ap_fixed default, reuse factor and strategy; with the
    ``layers`` of a quantization-trained model, each layer's exact types from its trained quantizers."""
    config = hls4ml.utils.config_from_pytorch_model(
        model,
        input_shape,
        granularity="name",
        backend=fpga.hls_backend,
        default_precision=quant.fixed_point or fpga.default_precision,
        default_reuse_factor=quant.reuse_factor,
        channels_last_conversion=channels_last_conversion(model, fpga),
    )
    config["Model"]["Strategy"] = fpga.strategy
    if layers is not None:
        apply_precisions(config, hls_precisions(model, layers))
    return config


def convert_model(model: nn.Module, input_shape: tuple[int, ...], quant: QuantSpec, fpga: FPGASpec,
                  out_path: Path, layers: list[LayerQuant] | None = None) -> Any:
    """The hls4ml model of ``model`` (converted, not yet written or compiled) for ``fpga`` at ``quant``; ``layers``:
    the trained quantizers of a quantization-trained model (``model`` is then its ``qat.deployable`` copy). A reshape
    it would misread is refused once hls4ml has converted the rest (its refusals of the ops say what to write first)."""
    hls4ml = require_module("hls4ml", "fpga", "the hls4ml exporter")
    try:  # the config already traces the model: an op hls4ml lacks fails here
        config = _hls_config(hls4ml, model, input_shape, quant, fpga, layers)
        with contextlib.redirect_stdout(io.StringIO()):
            hls_model = hls4ml.converters.convert_from_pytorch_model(
                model, output_dir=str(out_path), project_name=PROJECT, backend=fpga.hls_backend,
                hls_config=config, io_type=fpga.io_type, part=fpga.part, clock_period=fpga.clock_period_ns,
            )
    except Exception as exc:  # hls4ml raises bare Exceptions for unsupported graphs
        if isinstance(exc, KeyError) and str(exc.args[0]).startswith("getitem"):  # it skips index nodes, then misses them
            raise UnsupportedModelError("hls4ml cannot convert the model: it has no layer that indexes or slices a "
                                        "tensor (x[:, :2], x[:, :, ::2, ::2] in forward)") from exc
        if layer := re.fullmatch(r"Unsupported layer (\w+)", str(exc)):  # one the forward calls: name it
            kind = layer[1]
            names = [name for name, m in model.named_modules() if type(m).__name__ == kind]
            advice = _KNOWN_UNSUPPORTED.get(kind, "see hls4ml's supported PyTorch layers")
            raise UnsupportedModelError(f"hls4ml cannot convert layer '{names[0] if names else '?'}' ({kind}): "
                                        f"{advice}") from exc
        if function := re.fullmatch(r"Unsupported function (\w+)", str(exc)):  # name where the forward calls it
            hint = _called_where(model, function[1]) + (_UNSUPPORTED_FUNCTIONS.get(function[1])
                                                         or _function_advice(function[1]))
        else:
            hint = _MESSAGE_HINTS.get(str(exc), "") or _raised_where(exc)
        raise UnsupportedModelError(f"hls4ml cannot convert the model: {exc}{hint}") from exc
    _check_reshapes(model, input_shape, fpga.io_type)
    return hls_model


def _called_where(model: nn.Module, function: str) -> str:
    """Where the forward of ``model`` calls ``function`` as hls4ml names it (its node's name, less a ``_<n>`` of
    repeats): " in 'b1' (<file>:<line>), 'b2'", each module that calls it, the model's own line of the first; ""
    when the model cannot be traced. A model that graph_forms rewrote is its traced copy, whose nodes keep the
    modules and stack traces of the model's code."""
    try:
        graph = (model if isinstance(model, torch.fx.GraphModule) else traced(model)).graph
    except Exception:  # hls4ml traced it with torch.fx, but the error stands without a place
        return ""
    calls = [n for n in graph.nodes
             if n.op in ("call_function", "call_method") and re.sub(r"_\d+$", "", n.name) == function]
    places = [f"'{next(reversed(n.meta['nn_module_stack']))}'" if n.meta.get("nn_module_stack")
              else "the model's forward" for n in calls]
    if not places:
        return ""
    if line := _own_line(calls[0].meta.get("stack_trace") or ""):
        places[0] += f" ({line})"
    return " in " + ", ".join(dict.fromkeys(places))


def _own_line(stack_trace: str) -> str:
    """The last frame of ``stack_trace`` (torch.fx's record of a node's call) in the model's own code, as
    "<file>:<line>"; "" when there is none."""
    own = [frame for frame in re.findall(r'File "([^"]+)", line (\d+)', stack_trace) if _models_code(frame[0])]
    return ":".join(own[-1]) if own else ""


def _models_code(filename: str) -> bool:
    """Whether ``filename`` is the model's own code: not edgebench's, Python's or an installed package's."""
    return not filename.startswith(tuple(map(str, library_dirs())))


def _function_advice(function: str) -> str:
    """What to write instead of a ``function`` hls4ml 1.3's tracer refuses: the layer of the same op where hls4ml
    converts it (``F.interpolate`` as ``nn.Upsample``), what to use where it has neither form (``F.hardswish``: no
    ``Hardswish`` layer either)."""
    layers = {cls.lower(): cls for cls in dir(nn) if isinstance(getattr(nn, cls), type)}
    layer = _FUNCTION_LAYERS.get(function) or layers.get(function.replace("_", ""))
    if layer in _KNOWN_UNSUPPORTED:
        return f": hls4ml 1.3 has no {layer} layer either; {_KNOWN_UNSUPPORTED[layer]}"
    from hls4ml.converters import get_supported_pytorch_layers

    if layer in get_supported_pytorch_layers():
        return f": write it as the nn.{layer} layer, which hls4ml converts{_LAYER_NOTES.get(layer, '')}"
    return (": hls4ml 1.3 converts no such op; write the model without it, or leave hls4ml targets out for this "
            "model")


def _raised_where(exc: BaseException) -> str:
    """Where in the conversion ``exc`` came from: the hls4ml parser (which names the op), or the
    model's own forward (file:line) that hls4ml's tracer ran; "" when neither shows."""
    frames = traceback.extract_tb(exc.__traceback__)
    parsers = [f.name for f in frames if f.name.startswith("parse_") and f.name != "parse_pytorch_model"]
    if parsers:
        return f" (in hls4ml's {parsers[-1]})"
    own = [f for f in frames if _models_code(f.filename)]
    return f" (in the model's code, {own[-1].filename}:{own[-1].lineno}, as hls4ml's tracer ran it)" if own else ""


@EXPORTERS.register("hls4ml")
class Hls4mlExporter(Exporter):
    """Fixed-point hls4ml project for ``fpga`` (part, clock, io_type), C-simulated and optionally synthesised."""

    format = "hls4ml"
    precisions = ("fixed",)
    qat_precisions = ("fixed",)
    suffix = ""  # the artifact is a directory
    relocatable = False  # the C-simulation library reads firmware/weights/*.txt from its build path
    needs = (HLS4ML, GXX)
    target_block = "fpga"
    # 1: edgebench.json holds weight_bytes; 2: an MLP on image input reads its pixels in order; 3: and the input spec;
    # 4: functional forms rewritten (graph_forms: a constant scale that hls4ml took as it was is now a BatchNorm)
    revision = 4
    converters = ("hls4ml", "torch")  # the C simulation's numerics are the ap_fixed types', not g++'s

    def __init__(self, fpga: FPGASpec | None = None) -> None:
        self.fpga = fpga or DEFAULT_FPGA

    @classmethod
    def for_target(cls, block: TargetBlock | None) -> Hls4mlExporter:
        if block is not None and not isinstance(block, FPGASpec):
            raise TypeError(f"the hls4ml exporter reads an fpga: block, got {type(block).__name__}")
        return cls(block)

    def options(self) -> dict[str, Any]:
        return self.fpga.model_dump(mode="json")

    def describe_input(self, artifact: Path, spec: dict[str, Any]) -> None:
        """``spec`` as ``input`` in the project's ``edgebench.json``, beside how the C simulation is called."""
        meta_path = artifact / METADATA_FILE
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "input": spec}, indent=2))

    def sizes(self, artifact: Path) -> tuple[int, int | None]:
        """The firmware's weights at their fixed-point widths (``weight_bytes``, counted at export): the project
        folder is mostly hls4ml's own headers and the C simulation's library, the same for every variant (about
        1 MB of the 1.3 MB of a pruned digits CNN), and its ZIP says nothing about the FPGA."""
        meta = json.loads((artifact / METADATA_FILE).read_text())
        return int(meta["weight_bytes"]), None

    def refuses(self, model: nn.Module, input_shape: tuple[int, ...]) -> str | None:
        """A layer type hls4ml has no converter for or converts to other outputs, or a graph its parser fails on
        (converted, not written or compiled: about 0.02 s for the digits CNN)."""
        try:
            plain = hls4ml_ready(model, input_shape)
            check_supported(plain, input_shape, self.fpga.io_type)
            with tempfile.TemporaryDirectory() as tmp:
                convert_model(plain, input_shape, QuantSpec(precision="fixed"), self.fpga, Path(tmp) / PROJECT)
        except UnsupportedModelError as exc:
            return str(exc)
        return None

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        require_module("hls4ml", "fpga", "the hls4ml exporter")
        reason = self.available()
        if reason:
            raise UnsupportedModelError(reason)
        model = model.eval()
        layers = None
        if is_quantization_trained(model):  # the trained quantizers set every type; nothing is re-chosen
            if quant.qat is None or quant.qat.scales != "power_of_two":
                raise UnsupportedModelError("hls4ml takes quantization-trained models with power-of-two scales only "
                                            "(qat scales: power_of_two): other scales are no fixed-point type")
            model, layers = deployable(model)
        input_shape = tuple(int(d) for d in calibration.shape[1:])
        model = hls4ml_ready(model, input_shape)
        fpga = self.fpga
        check_supported(model, input_shape, fpga.io_type)
        if out_path.exists():
            shutil.rmtree(out_path)  # a half-written project from an interrupted run

        t0 = time.perf_counter()
        hls_model = convert_model(model, input_shape, quant, fpga, out_path, layers)
        convert_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            hls_model.write()
        library = compile_csim(out_path, PROJECT, hls_model.config.get_config_value("Stamp"))
        compile_s = time.perf_counter() - t0

        out_vars = hls_model.get_output_variables()
        metadata = {
            "project": PROJECT,
            "library": str(library.relative_to(out_path)),
            "io_type": fpga.io_type,
            "input_layout": "NHWC" if channels_last_conversion(model, fpga) == "internal" and len(input_shape) == 3
            else "NCHW",
            "input_shape": list(input_shape),
            "output_size": int(np.prod(out_vars[0].shape)),
            "precision": f"per layer, trained ({quant.qat.tag})" if layers else quant.fixed_point or fpga.default_precision,
            "reuse_factor": quant.reuse_factor,
            "strategy": fpga.strategy,
            "part": fpga.part,
            "hls_backend": fpga.hls_backend,
            "clock_period_ns": fpga.clock_period_ns,
            "convert_s": round(convert_s, 3),
            "compile_s": round(compile_s, 3),
            "compile_flags": " ".join([*CFLAGS, cxx_standard()]),
            "weight_bytes": weight_bytes(hls_model),
            "multipliers": count_multipliers(hls_model),
            "bit_operations": bit_operations(hls_model),
        }
        if layers is None:  # a quantization-trained model's types come from its own ranges
            precision = quant.fixed_point or fpga.default_precision
            types = {layer.name: str(layer.get_output_variable().type.precision) for layer in hls_model.get_layers()}
            overflow = overflowing_weights(hls_model) + overflowing_layers(model, calibration, precision, types)
            if overflow:
                metadata["overflow"] = overflow
                how = "saturates" if fixed_range(precision).saturates else "wraps around"  # type: ignore[union-attr]
                log.warning("hls4ml %s %s in %s on the calibration images: give quantization.fixed_point more integer "
                            "bits", precision, how, ", ".join(overflow))
        (out_path / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
        self._synthesise(hls_model, out_path)
        log.info("hls4ml project %s: convert %.2f s, C-sim compile %.2f s", out_path, convert_s, compile_s)
        return out_path

    def _synthesise(self, hls_model: Any, out_path: Path) -> None:
        """Run C synthesis when asked and the tool is on PATH; record the figures or why there are none."""
        fpga = self.fpga
        if not fpga.synthesize:
            write_synthesis(out_path, None, "synthesis not requested (fpga.synthesize: false)")
            return
        if shutil.which(fpga.hls_tool) is None:
            write_synthesis(out_path, None, f"{fpga.hls_tool} not on PATH")
            return
        t0 = time.perf_counter()
        try:
            hls_model.build(csim=False, synth=True, export=False, vsynth=False)
        except Exception as exc:  # the firmware and its C simulation stand; the synthesis figures are what is missing
            write_synthesis(out_path, None, f"hls4ml's {fpga.hls_backend} build failed: {first_line(exc)}")
            return
        report_path = find_csynth_report(out_path, PROJECT)
        if report_path is None:
            write_synthesis(out_path, None, f"{fpga.hls_tool} ran but wrote no {PROJECT}_csynth.xml (see its log)")
            return
        write_synthesis(out_path, parse_csynth_report(report_path))
        log.info("synthesised %s in %.0f s", out_path, time.perf_counter() - t0)
