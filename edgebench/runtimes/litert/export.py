"""TFLite artifacts through litert-torch (extra ``litert``): fp32, fp16 weights, and int8 via its PT2E quantizer.

fp16 is TFLite's float16 quantization (litert-torch's fp16 recipe, applied by ai-edge-quantizer): weights stored
as fp16 and dequantized in the graph. As TFLite's documentation says, the CPU interpreter dequantizes them to fp32
and computes in fp32 (a GPU delegate would compute in fp16), so on a CPU target fp16 halves the file, not the
arithmetic; the LiteRT session reports the fp16 tensors it found.

int8 is static: TFLite's own int8 scheme (symmetric per-channel int8 weights, asymmetric per-tensor int8
activations) written by ai-edge-quantizer into the fp32 file, with each activation's range the min and max over
the calibration images (``_quantized_flatbuffer``); for a quantization-trained model, PT2E holding the trained
scales (``_trained_int8``). Quantizing the fp32 file takes 0.1-0.8 s where a PT2E conversion took 3-5 s for the
digits CNN (a second torch.export and three graph decompositions inside litert-torch), so the sweep hands the
exporter the variant's fp32 file (``derives_from_fp32``). The model has int8 input and output tensors, which the
LiteRT backend quantizes/dequantizes with each tensor's scale and zero point. litert-torch keeps the PyTorch NCHW
input layout (it inserts the transposes itself).
tflite-runtime is not used: its last wheels (2.14) do not work with numpy 2.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import operator
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgebench.errors import ArtifactError, UnsupportedModelError, first_line, require_module
from edgebench.fx_rewrite import constant, rewritten
from edgebench.quantization.fake_quant import QParams
from edgebench.quantization.qat import deployable, is_quantization_trained
from edgebench.runtimes.base import EXPORTERS, INPUT_METADATA_KEY, Exporter
from edgebench.runtimes.litert import LITERT_TORCH
from edgebench.runtimes.unsupported_op import own_frame, unsupported_op
from edgebench.variants import QatSpec, QuantSpec

log = logging.getLogger(__name__)


def _import_litert_torch():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    litert_torch = require_module("litert_torch", "litert", "the TFLite exporter", "litert-torch")

    litert_torch.config.show_progress = False
    return litert_torch


def _without_dropout(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` without its inference-mode dropouts (``aten.dropout(x, p, train=False)``, which an eval-mode
    ``nn.Dropout`` or ``F.dropout`` exports as): a no-op, but PT2E quantizes around it and litert-torch's int8
    conversion of it left the logits off by a quarter of their scale (a Linear after Dropout(0.2): |diff| 0.044 on
    logits of 0.16 against 0.0013 for PT2E's own simulation of the same graph)."""
    for node in list(graph.graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.dropout.default and node.args[2:3] == (False,):
            node.replace_all_uses_with(node.args[0])
            graph.graph.erase_node(node)
    graph.recompile()
    return graph


def _unfused_shared_convs(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``graph`` with a clone between each conv whose output has other users and the BatchNorm that reads it:
    PT2E's conv-BN fusion folds such a BN into the conv anyway, so the other users (DenseNet's concatenation of a
    block's input, ``cat([x, conv(relu(bn(x)))])``) read normalised values; a trained DenseNet-style model's int8
    logits were off by 4.1 on logits of 1.0 (0.033 with the clone)."""
    batch_norms = (torch.ops.aten.batch_norm.default, torch.ops.aten._native_batch_norm_legit_no_training.default)
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.aten.conv2d.default or len(node.users) < 2:
            continue
        for user in [u for u in node.users if u.target in batch_norms]:
            with graph.graph.inserting_after(node):
                clone = graph.graph.call_function(torch.ops.aten.clone.default, (node,))
            user.replace_input_with(node, clone)
    graph.recompile()
    return graph


#: elementwise ops that broadcast their operands themselves
_BROADCASTING = (torch.ops.aten.mul.Tensor, torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor,
                 torch.ops.aten.div.Tensor)


def _without_broadcast_expands(graph: torch.fx.GraphModule) -> int:
    """Drop from ``graph`` each ``expand``/``expand_as`` that only feeds ops which broadcast to the same shape
    without it (a squeeze-and-excitation block's ``x * w.view(b, c, 1, 1).expand_as(x)``); return how many went.

    litert-torch moves the ``mul`` to NHWC but leaves the expanded operand NCHW: the fp32 conversion fails ("'tfl.mul'
    op operands don't have broadcast-compatible shapes") and the int8 one writes a file whose BROADCAST_TO fails
    to load. Without the expand, the multiply broadcasts (b, c, 1, 1) as it does for a 1x1-conv excitation."""
    def shape(arg: object) -> tuple[int, ...]:
        return tuple(arg.meta["val"].shape) if isinstance(arg, torch.fx.Node) else ()

    def broadcast(node: torch.fx.Node) -> bool:
        if node.target not in (torch.ops.aten.expand.default, torch.ops.aten.expand_as.default):
            return False
        source = node.args[0]
        return all(user.op == "call_function" and user.target in _BROADCASTING
                   and torch.broadcast_shapes(*(shape(source if a is node else a) for a in user.args[:2])) == shape(user)
                   for user in node.users)

    return rewritten(graph, broadcast, lambda node: node.args[0])


def _bounds(size: int, out: int) -> list[tuple[int, int]]:
    """Adaptive pooling's windows along one axis: output i reads [floor(i*size/out), ceil((i+1)*size/out))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _without_adaptive_max_pools(graph: torch.fx.GraphModule) -> int:
    """Replace in ``graph`` each ``adaptive_max_pool2d`` whose indices nothing reads by the same maximum written
    with ops litert-torch lowers (0.10 has no lowering for it: "Lowering not found"); return how many went.

    Where the input divides into the output, the windows are equal and it is ``max_pool2d`` with kernel = stride
    = input // output (a global max pool: one window of the whole map); otherwise each output cell is the ``amax``
    of its own window (adaptive pooling's floor/ceil bounds), concatenated. Both give the same values exactly."""
    aten = torch.ops.aten
    replaced = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target != aten.adaptive_max_pool2d.default:
            continue
        users = list(node.users)  # getitem 0 (the maxima) and 1 (the indices, exported even where unread)
        if any(u.target is not operator.getitem or (u.args[1] != 0 and u.users) for u in users):
            continue  # the indices are read (return_indices=True): left, and the conversion fails as before
        source = node.args[0]
        height, width = (int(d) for d in source.meta["val"].shape[-2:])
        out_h, out_w = (int(d) if d is not None else size for d, size in zip(node.args[1], (height, width)))
        with graph.graph.inserting_before(node):
            if height % out_h == 0 and width % out_w == 0:
                kernel = [height // out_h, width // out_w]
                pooled = graph.graph.call_function(aten.max_pool2d.default, (source, kernel, kernel))
            else:
                rows = []
                for top, bottom in _bounds(height, out_h):
                    band = graph.graph.call_function(aten.slice.Tensor, (source, -2, top, bottom))
                    cells = [graph.graph.call_function(aten.amax.default, (
                        graph.graph.call_function(aten.slice.Tensor, (band, -1, left, right)), [-2, -1], True))
                        for left, right in _bounds(width, out_w)]
                    rows.append(graph.graph.call_function(aten.cat.default, (cells, -1)))
                pooled = graph.graph.call_function(aten.cat.default, (rows, -2))
        for user in users:
            if user.args[1] == 0:
                user.replace_all_uses_with(pooled)
            graph.graph.erase_node(user)
        graph.graph.erase_node(node)
        replaced += 1
    if replaced:
        graph.recompile()
    return replaced


#: PyTorch's legacy ``nearest`` resize (``F.interpolate``'s default mode, ``nn.Upsample``'s)
_NEAREST = (torch.ops.aten.upsample_nearest2d.vec, torch.ops.aten.upsample_nearest2d.default)


def _source_rows(node: torch.fx.Node) -> tuple[torch.Tensor, torch.Tensor]:
    """The input row and column each output pixel of a nearest-resize ``node`` copies, read off PyTorch's own op
    run on an image of pixel numbers (so its rounding and its scale factors are PyTorch's, exactly)."""
    _, _, height, width = node.args[0].meta["val"].shape
    numbers = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    picked = node.target(numbers, *node.args[1:], **node.kwargs)[0, 0].long()
    return picked[:, 0] // width, picked[0, :] % width


def _shifted_by_litert(rows: torch.Tensor, size: int) -> bool:
    """Whether LiteRT's nearest resize (half-pixel centres: PyTorch's ``nearest-exact``) picks other ``rows`` of an
    axis of ``size``; an integer upsampling picks the same."""
    out = len(rows)
    return not torch.equal(rows, torch.clamp(((torch.arange(out) + 0.5) * size / out).floor().long(), max=size - 1))


def _picked(graph: torch.fx.GraphModule, source: torch.fx.Node, dim: int, rows: torch.Tensor) -> torch.fx.Node:
    """``source`` along ``dim`` reduced to ``rows``: a strided slice where they are evenly spaced (copied, as the
    resize's output was: a ``view`` after it must not meet a strided tensor), else a gather."""
    steps = torch.diff(rows)
    if len(rows) > 1 and bool((steps == steps[0]).all()) and int(steps[0]) > 0:
        start, step = int(rows[0]), int(steps[0])
        sliced = graph.graph.call_function(torch.ops.aten.slice.Tensor, (source, dim, start, int(rows[-1]) + 1, step))
        return graph.graph.call_function(torch.ops.aten.clone.default, (sliced,),
                                         {"memory_format": torch.contiguous_format})
    index = constant(graph, "_nearest_rows", rows.clone())
    return graph.graph.call_function(torch.ops.aten.index_select.default, (source, dim, index))


def _without_legacy_nearest(graph: torch.fx.GraphModule) -> int:
    """Replace in ``graph`` each nearest resize that LiteRT would compute on other pixels by the same pixels picked
    with slices or gathers; return how many went.

    litert-torch converts PyTorch's legacy ``nearest`` to RESIZE_NEAREST_NEIGHBOR with half-pixel centres, which is
    PyTorch's ``nearest-exact``: the same pixels for an integer upsampling, others for any other size. A
    ``F.interpolate(x, scale_factor=0.5)`` downsampling read rows 1, 3, 5... where PyTorch reads 0, 2, 4...: the
    .tflite of such a model computed another function (logits 8.05 off), and nothing failed."""
    def shifted(node: torch.fx.Node) -> bool:
        if node.target not in _NEAREST:
            return False
        _, _, height, width = node.args[0].meta["val"].shape
        rows, columns = _source_rows(node)
        return _shifted_by_litert(rows, height) or _shifted_by_litert(columns, width)

    def picked(node: torch.fx.Node) -> torch.fx.Node:
        rows, columns = _source_rows(node)
        return _picked(graph, _picked(graph, node.args[0], 2, rows), 3, columns)

    return rewritten(graph, shifted, picked)


#: ``aten.avg_pool2d``'s arguments after the input and kernel size, at their defaults: stride (the kernel's),
#: padding, ceil_mode, count_include_pad, divisor_override
_AVG_POOL_DEFAULTS = ([], 0, False, True, None)


def _avg_pool_args(args: tuple) -> list:
    """An ``aten.avg_pool2d`` (or ``avg_pool3d``) call's positional ``args``, completed with the defaults of those
    left out."""
    return [*args, *_AVG_POOL_DEFAULTS[len(args) - 2:]]


def _pads_uncounted(args: tuple) -> bool:
    """Whether an ``aten.avg_pool2d`` call pads and leaves the padding out of its divisor (no divisor_override)."""
    _, _, _, padding, _, count_include_pad, divisor_override = _avg_pool_args(args)
    pads = padding if isinstance(padding, list | tuple) else [padding]
    return not count_include_pad and divisor_override is None and any(p > 0 for p in pads)


def _with_pads_counted(graph: torch.fx.GraphModule) -> int:
    """Replace in ``graph`` each average pool that pads without counting the padding (``count_include_pad=False``)
    by the pool that counts it divided by a constant map; return how many went.

    litert-torch lowers such a pool to a StableHLO reduce_window that ai-edge-quantizer cannot calibrate ("Failed to
    get quantization parameters for tensor: STABLEHLO_REDUCE_WINDOW..."): the model had no LiteRT int8. The pool that
    counts the padding divides each window's sum by its size within the padded input; the same pool of an all-ones
    image gives each window's share of real pixels, so dividing by that map is the pool without the padding,
    exactly (one with a divisor_override divides by that and is left as it is)."""
    aten = torch.ops.aten

    def counting(node: torch.fx.Node) -> torch.fx.Node:
        _, _, height, width = node.args[0].meta["val"].shape
        counted = [*_avg_pool_args(node.args)[:5], True]
        share = aten.avg_pool2d.default(torch.ones(1, 1, height, width), *counted[1:])
        pooled = graph.graph.call_function(aten.avg_pool2d.default, tuple(counted))
        return graph.graph.call_function(aten.div.Tensor, (pooled, constant(graph, "_real_pixel_share", share)))

    return rewritten(graph, lambda node: node.target == aten.avg_pool2d.default and not node.kwargs
                      and _pads_uncounted(node.args), counting)


def _channel_window_pool(args: tuple) -> bool:
    """Whether an ``aten.avg_pool3d`` call slides a window along the channels of 2-D feature maps: a (k, 1, 1) kernel,
    stride 1, no padding, over (N, 1, C, H, W), as ``F.local_response_norm`` (AlexNet's LRN) pools squares."""
    x, kernel, stride, padding, ceil_mode, _, divisor = _avg_pool_args(args)  # avg_pool3d's defaults are 2-D's
    pads = padding if isinstance(padding, list | tuple) else [padding]
    return (x.dim() == 5 and x.shape[1] == 1 and list(kernel)[1:] == [1, 1] and list(stride) == [1, 1, 1]
            and not any(pads) and not ceil_mode and divisor is None)


def _without_channel_pools(graph: torch.fx.GraphModule) -> int:
    """Replace in ``graph`` each average pool along channels (:func:`_channel_window_pool`) by a 1x1 convolution
    whose band of weights ``1/k`` sums the same windows; return how many went.

    litert-torch lowers the 3-D pool to a StableHLO reduce_window that ai-edge-quantizer cannot calibrate, so a model
    with a LocalResponseNorm had no LiteRT int8 ("Failed to get quantization parameters for tensor:
    STABLEHLO_REDUCE_WINDOW1_arg0"); the convolution is the same sum (exact in fp32) and quantizes."""
    aten = torch.ops.aten

    def convolved(node: torch.fx.Node) -> torch.fx.Node:
        source = node.args[0]
        k, channels = int(node.args[1][0]), int(source.meta["val"].shape[2])
        band = torch.zeros(channels - k + 1, channels, 1, 1)
        for i in range(channels - k + 1):
            band[i, i:i + k] = 1.0 / k
        flat = graph.graph.call_function(aten.squeeze.dim, (source, 1))
        summed = graph.graph.call_function(aten.conv2d.default, (flat, constant(graph, "_channel_window", band)))
        return graph.graph.call_function(aten.unsqueeze.default, (summed, 1))

    return rewritten(graph, lambda node: node.target == aten.avg_pool3d.default and not node.kwargs
                      and _channel_window_pool((node.args[0].meta["val"], *node.args[1:])), convolved)


class _MisconvertedOps(torch.utils._python_dispatch.TorchDispatchMode):
    """Sees, during one forward, whether the model calls an op litert-torch converts wrongly or to a file that cannot
    be quantized (checked without exporting the model): a legacy ``nearest`` resize to a size LiteRT would read other
    pixels for, an average pool that leaves its padding uncounted, or one along channels."""

    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in _NEAREST:
            height, width = args[0].shape[-2:]
            self.found |= out.shape[-2] % height != 0 or out.shape[-1] % width != 0
        elif func == torch.ops.aten.avg_pool2d.default:
            self.found |= _pads_uncounted(args)
        elif func == torch.ops.aten.avg_pool3d.default:
            self.found |= _channel_window_pool(args)
        return out


def _misconverted(model: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``model`` calls an op :func:`_without_legacy_nearest`, :func:`_with_pads_counted` or
    :func:`_without_channel_pools` rewrites."""
    finder = _MisconvertedOps()
    with torch.no_grad(), finder:
        model(example)
    return finder.found


def _data_dependent_branch(exc: BaseException, model: nn.Module) -> UnsupportedModelError | None:
    """The one-line refusal for torch.export meeting a Python branch on a tensor's value (a 'data-dependent'
    guard), naming the model's own file:line where the message shows it; None for any other failure."""
    text = str(exc)
    if "data-dependent" not in text and "DataDependent" not in type(exc).__name__:
        return None
    where = f" at {frame}" if (frame := own_frame(text, model)) else ""
    return UnsupportedModelError(f"LiteRT conversion (torch.export) cannot trace the branch on a tensor's value"
                                 f"{where} (a Python `if` in forward); write it with torch.where (or torch.cond)")


def _float_converted(litert_torch, model: nn.Module, example: torch.Tensor, **options):
    """litert-torch's conversion of ``model``; where it fails, that of its exported graph rewritten where it can be
    (broadcast expands dropped, ``_without_broadcast_expands``; adaptive max pools in ops it lowers,
    ``_without_adaptive_max_pools``). The model as written goes first: exporting it to look for either would cost
    every conversion a second export."""
    if _misconverted(model, example):  # converts without an error, but to another function or an unquantizable op
        graph = torch.export.export(model, (example,)).module()
        _without_legacy_nearest(graph)
        _with_pads_counted(graph)
        _without_channel_pools(graph)
        graph.training = False
        log.info("converting the model's graph with its nearest resizes as slices and gathers (LiteRT's own resize "
                 "reads other pixels), its average pools counting their padding and its pools along channels as "
                 "convolutions")
        model = graph
    try:
        return litert_torch.convert(model, (example,), **options)
    except Exception as exc:
        if (branch := _data_dependent_branch(exc, model)) is not None:
            raise branch from None
        graph = torch.export.export(model, (example,)).module()
        if not (_without_broadcast_expands(graph) + _without_adaptive_max_pools(graph)):
            if missing := re.match(r"Lowering not found: (\S+)", str(exc)):  # an op it cannot lower at all
                raise unsupported_op(model, example, missing[1], "LiteRT's converter", "the LiteRT targets") from None
            raise
        graph.training = False
        log.info("litert-torch could not convert the model as written; converting its graph without broadcast "
                 "expands and adaptive max pools")
        return litert_torch.convert(graph, (example,), **options)


def _with_contiguous_tensors(model: nn.Module) -> nn.Module:
    """``model`` with every parameter and buffer in contiguous (NCHW) memory: a copy where any is not (a model moved
    to ``torch.channels_last``), ``model`` itself otherwise. litert-torch converts a channels-last model's weights
    wrongly: a trained pre-activation ResNet's .tflite gave logits 1.23 off PyTorch's and chance accuracy (0.25
    against 0.79), and nothing failed; ONNX and the other exporters are not affected."""
    if all(t.is_contiguous() for t in (*model.parameters(), *model.buffers())):
        return model
    model = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.data = tensor.data.contiguous()
    return model


def _with_transposed_bns_folded(model: nn.Module) -> nn.Module:
    """``model`` with each BatchNorm2d that reads only a ConvTranspose2d's output (groups 1: a decoder block) folded
    into that layer's weights and bias, the BN left an identity (a copy; ``model`` itself is untouched where there is
    none). litert-torch fuses a BN into a Conv2d, not into a ConvTranspose2d: the BN stays a [1, 1, 1, C] multiply
    whose constant ai-edge-quantizer gives per-axis scales LiteRT refuses ("num_scales must be 1"), so such a model
    had no int8 file. The fold is exact up to float rounding: y = (conv(x) - mean) * g / sqrt(var + eps) + b."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # a forward fx cannot trace (data-dependent code): converted as it is
        log.warning("LiteRT export: torch.fx cannot trace the model (%s); a BatchNorm after a ConvTranspose2d, if any, "
                    "stays unfolded (LiteRT may then refuse its int8 file)", first_line(exc))
        return model
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if node.args else None
        conv = modules.get(source.target) if getattr(source, "op", None) == "call_module" else None
        if (isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and isinstance(conv, nn.ConvTranspose2d)
                and conv.groups == 1 and len(source.users) == 1):
            pairs.append((source.target, node.target))
    if not pairs:
        return model
    model = copy.deepcopy(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        with torch.no_grad():
            scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.mul_(scale.view(1, -1, 1, 1))  # (in, out, kH, kW): output channels on axis 1
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
        parent, _, leaf = bn_name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    return model


def _prepared(model: nn.Module, example: torch.Tensor, calibration: np.ndarray):
    """PT2E: export, insert observers (symmetric per-channel int8 weights), run the calibration images."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    graph = torch.export.export(model, (example,)).module()
    _without_broadcast_expands(graph)  # first: the passes below add nodes without shape metadata
    _without_adaptive_max_pools(graph)
    graph = _unfused_shared_convs(_without_dropout(graph))
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in calibration:  # the exported graph has a static batch of one
            prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    return prepared, quantizer


def _training_mode_ops(graph: torch.fx.GraphModule) -> bool:
    """Whether ``graph`` holds a dropout or batch norm not explicitly in inference mode (its flag literally False).

    A graph exported from a model in eval mode has none, and torchao's ``move_exported_model_to_eval`` then
    rewrites nothing, but it traces its dropout and batch-norm patterns anew on every call: 1.0-1.3 s of each
    digits CNN int8 conversion (about a fifth of it)."""
    aten = torch.ops.aten
    flag_at = {aten.dropout.default: 2, aten.native_dropout.default: 2, aten.batch_norm.default: 5,
               aten._native_batch_norm_legit.default: 5}
    for node in graph.graph.nodes:
        name = str(node.target)
        if node.op != "call_function" or not ("dropout" in name or "batch_norm" in name):
            continue
        if node.target == aten._native_batch_norm_legit_no_training.default:
            continue
        index = flag_at.get(node.target)
        if index is None or node.args[index:index + 1] != (False,):
            return True
    return False


def _converted(prepared: nn.Module) -> nn.Module:
    """The quantized graph of a prepared (observed) one."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    if _training_mode_ops(converted):
        converted = move_exported_model_to_eval(converted)
    # exported graphs keep training=True even with inference ops; litert-torch warns on the flag alone
    converted.training = False
    return converted


#: the narrowest calibrated range an int8 activation keeps: a scale of at least float32's eps over 255 steps, the
#: floor PyTorch's observers use
MIN_RANGE = 255 * float(np.finfo(np.float32).eps)


def _with_scale_floor(qsvs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``qsvs`` (tensor name -> calibrated ``min``/``max``) with every range narrower than :data:`MIN_RANGE` widened
    to it. A tensor no calibration image moves (a ReLU that never fires, e.g. a pruned squeeze-and-excitation
    layer) otherwise gets ai-edge-quantizer's 1e-9 floor, a scale of 4e-12, and the conv that reads it a
    requantization scale XNNPACK refuses at load ("failed to prepare")."""
    widened = {}
    for name, qsv in qsvs.items():
        low, high = np.asarray(qsv["min"]), np.asarray(qsv["max"])
        if not np.issubdtype(high.dtype, np.floating):  # a boolean mask (ELU's, Mish's GREATER before a SELECT)
            widened[name] = qsv
            continue
        narrow = high - low < MIN_RANGE
        widened[name] = {**qsv, "max": np.where(narrow, low + MIN_RANGE, high).astype(high.dtype)} if narrow.any() else qsv
    return widened


def _with_flat_fc_biases(fp32_path: Path, out_path: Path) -> bool:
    """Write ``fp32_path`` to ``out_path`` with each FULLY_CONNECTED bias of shape [1, ..., 1, C] reshaped to [C]
    (the same values); False, writing nothing, where it has none.

    The converter leaves such a bias where it folds a per-channel multiply into a Linear (ConvNeXt's layer scale,
    ``linear(x) * gamma`` on channels-last activations). LiteRT runs the fp32 file, but ai-edge-quantizer gives the
    4-D bias C scales along an axis of size 1, and LiteRT refuses the int8 file ("num_scales must be 1"): such a
    model had no LiteRT int8. A 1-D bias is quantized per channel as every other Linear's is."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(fp32_path))
    fully_connected = {i for i, code in enumerate(model.operatorCodes)
                       if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED}
    flattened = 0
    for graph in model.subgraphs:
        for op in graph.operators:
            if op.opcodeIndex not in fully_connected or len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            bias = graph.tensors[op.inputs[2]]
            shape = [int(d) for d in bias.shape]
            if len(shape) > 1 and all(d == 1 for d in shape[:-1]):
                bias.shape = np.array(shape[-1:], dtype=np.int32)
                flattened += 1
    if flattened:
        flatbuffer_utils.write_model(model, str(out_path))
    return bool(flattened)


def _quantized_flatbuffer(fp32_path: Path, calibration: np.ndarray, out_path: Path) -> None:
    """Write to ``out_path`` ai-edge-quantizer's static int8 of the float .tflite at ``fp32_path``.

    Its calibrator keeps a moving average of each tensor's per-image min and max by default, which clips every
    image's extremes: on three small models that took the logits 14-20 % of their scale off PyTorch's, against
    0.7-1.4 % with the plain min and max over all images (as ONNX Runtime's minmax calibrator)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "flat-biases.tflite"
        source = str(flat if _with_flat_fc_biases(fp32_path, flat) else fp32_path)
        ((signature, names),) = Interpreter(model_path=source).get_signature_list().items()
        (input_name,) = names["inputs"]
        int8 = recipe.static_wi8_ai8()
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(int8)
        ranges = calibrator.Calibrator(source, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
        images = [{input_name: np.ascontiguousarray(image[None], dtype=np.float32)} for image in calibration]
        ranges.calibrate({signature: images}, manager)
        quantized = quantizer.Quantizer(source, int8).quantize(_with_scale_floor(ranges.get_model_qsvs()))
    out_path.write_bytes(quantized.quantized_model)  # its export_model makes the file executable
    # the quantizer can write parameters LiteRT refuses (a per-axis scale on a [1,1,1,C] constant): fail here. With
    # the built-in kernels only: a file XNNPACK alone refuses runs on them (the backend says how)
    builtin = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        Interpreter(model_path=str(out_path), experimental_op_resolver_type=builtin).allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        out_path.unlink()
        raise ArtifactError(f"ai-edge-quantizer wrote an int8 .tflite LiteRT cannot load ({first_line(exc)}); "
                            "this model has no LiteRT int8 (its fp32 and fp16 files are not affected)") from None


def takes_trained(qat: QatSpec) -> bool:
    """Whether LiteRT's int8 graph holds ``qat``'s trained quantizers exactly: 8 bits for the weights and inputs of
    every layer (float or power-of-two scales alike; narrower codes would need a clip the int8 graph has not)."""
    return qat.weight_bits == qat.activation_bits == 8 and all(bits == (8, 8) for bits in qat.layer_bits.values())


def _held_weights(observer: nn.Module, q: QParams, channels: int) -> nn.Module:
    """A per-channel weight observer whose scales are ``q``'s trained ones (one power-of-two scale repeated)."""
    from torchao.quantization.pt2e.observer import PerChannelMinMaxObserver

    held = PerChannelMinMaxObserver(ch_axis=0, dtype=observer.dtype, qscheme=observer.qscheme,
                                    quant_min=observer.quant_min, quant_max=observer.quant_max)
    bound = q.qmax * q.scale.float().reshape(-1).expand(channels)  # symmetric: scale = bound / qmax
    held(torch.stack([-bound, bound], dim=1))
    return held


def _hold_input(prepared: nn.Module, observer: torch.fx.Node, q: QParams) -> None:
    """Replace ``observer`` (and those above the max-pools and flattens that feed it: quantizing commutes with
    them) by observers of ``q``'s trained range: int8 codes ``zero_point - 128`` on the same grid as QAT's u8 ones."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    commuting = (torch.ops.aten.max_pool2d.default, torch.ops.aten.flatten.using_ints)
    lo, hi = ((bound - int(q.zero_point)) * float(q.scale) for bound in (q.qmin, q.qmax))
    while observer.op == "call_module":
        old = getattr(prepared, observer.target)
        held = MinMaxObserver(dtype=old.dtype, qscheme=torch.per_tensor_affine, quant_min=old.quant_min,
                              quant_max=old.quant_max)
        held(torch.tensor([lo, hi]))
        setattr(prepared, observer.target, held)
        producer = observer.args[0]
        if producer.op != "call_function" or producer.target not in commuting:
            return
        observer = producer.args[0]


def _trained_int8(model: nn.Module, example: torch.Tensor, calibration: np.ndarray):
    """PT2E int8 of a quantization-trained ``model`` holding its trained quantizers, not recalibrated: each
    layer's weight observer holds the trained weight scales (the deployable model's weights lie on that grid, so
    the int8 codes are the trained ones) and its input observer the trained range. Only the logits' range comes
    from the calibration images: LiteRT's int8 graph quantizes its output too."""
    plain, layers = deployable(model)
    by_weight = {f"{layer.name}.weight": layer for layer in layers}
    prepared, quantizer = _prepared(plain, example, calibration)
    layer_ops = (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default)
    for node in list(prepared.graph.nodes):
        if node.op == "call_function" and node.target in layer_ops:
            weight_observer = node.args[1]
            layer = by_weight[str(weight_observer.args[0].target)]
            old = getattr(prepared, weight_observer.target)
            setattr(prepared, weight_observer.target, _held_weights(old, layer.weight, len(layer.weight_q)))
            _hold_input(prepared, node.args[0], layer.input)
    return _converted(prepared), quantizer


@EXPORTERS.register("tflite")
class TfliteExporter(Exporter):
    """fp32, fp16 (weights) and int8 (static, per-channel; from the trained quantizers for QAT variants) .tflite
    files."""

    format = "tflite"
    precisions = ("fp32", "fp16", "int8")
    qat_precisions = ("int8",)
    suffix = ".tflite"
    needs = (LITERT_TORCH,)
    calibrators = ("minmax",)  # ai-edge-quantizer's own min and max over the calibration images
    derives_from_fp32 = True  # int8 quantizes the fp32 file (fp16 is converted anew: litert-torch's own recipe)
    # int8: inference-mode dropouts dropped, BatchNorm kept out of a conv another branch reads (1), broadcast
    # expands dropped (2), ai-edge-quantizer's int8 of the fp32 file (3), a floor on its calibrated ranges (4: a
    # file cached before it may be one XNNPACK refuses), the input spec in its metadata (5)
    revision = 6
    converters = ("torch", "torchao", "litert-torch", "litert-converter", "ai-edge-quantizer", "ai-edge-litert")

    def takes_qat(self, qat: QatSpec) -> bool:
        return takes_trained(qat)

    def refuses(self, model: nn.Module, input_shape: tuple[int, ...]) -> str | None:
        """A TorchScript program (``model.weights``): litert-torch converts through torch.export, which cannot trace
        a ScriptModule (it fails at export with "ScriptModule has not been initialized")."""
        if any(isinstance(module, torch.jit.ScriptModule) for module in model.modules()):
            return ("a TorchScript program cannot go through torch.export (LiteRT's converter): give the model's code "
                    "and a state dict, or a torch.export (.pt2) program")
        return None

    def describe_input(self, artifact: Path, spec: dict[str, Any]) -> None:
        """``spec`` as JSON in the flatbuffer's ``metadata`` under ``edgebench.input`` (a buffer of its own; the
        interpreter ignores it: ``flatbuffer_utils.read_model(path).metadata`` reads it)."""
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(str(artifact))
        data = np.frombuffer(json.dumps(spec).encode(), dtype=np.uint8)
        entry = next((m for m in model.metadata or [] if m.name in (INPUT_METADATA_KEY, INPUT_METADATA_KEY.encode())),
                     None)
        if entry is None:  # an int8 file quantized from the fp32 one may carry the fp32 file's already
            entry, buffer = schema.MetadataT(), schema.BufferT()
            model.buffers.append(buffer)
            entry.name, entry.buffer = INPUT_METADATA_KEY, len(model.buffers) - 1
            model.metadata = [*(model.metadata or []), entry]
        model.buffers[entry.buffer].data = data
        flatbuffer_utils.write_model(model, str(artifact))

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path,
               fp32_source: Path | None = None) -> Path:
        litert_torch = _import_litert_torch()
        model = _with_transposed_bns_folded(_with_contiguous_tensors(model.eval()))
        example = torch.from_numpy(np.ascontiguousarray(calibration[:1], dtype=np.float32))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):  # ai-edge-quantizer's progress bar and summary
            warnings.simplefilter("ignore")
            if quant.precision == "fp32":
                _float_converted(litert_torch, model, example).export(str(out_path))
            elif quant.precision == "fp16":
                from litert_torch.generative.quantize.quant_recipes import full_fp16_recipe

                _float_converted(litert_torch, model, example, quant_config=full_fp16_recipe()).export(str(out_path))
            elif quant.precision == "int8" and quant.qat is None:
                with tempfile.TemporaryDirectory() as tmp:
                    if fp32_source is None:
                        fp32_source = Path(tmp) / "fp32.tflite"
                        _float_converted(litert_torch, model, example).export(str(fp32_source))
                    _quantized_flatbuffer(fp32_source, calibration[: quant.calibration_samples], out_path)
            elif quant.precision == "int8":
                from litert_torch.quantize.quant_config import QuantConfig

                if not (takes_trained(quant.qat) and is_quantization_trained(model)):
                    raise ValueError(f"LiteRT int8 of {quant.qat.tag} takes a quantization-trained model with 8-bit "
                                     "weights and inputs")
                graph, quantizer = _trained_int8(model, example, calibration[: quant.calibration_samples])
                edge_model = litert_torch.convert(graph, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
                edge_model.export(str(out_path))
            else:
                raise ValueError(f"TFLite exporter cannot produce precision '{quant.precision}'; use fp32, fp16 or int8")
        log.info("wrote %s (%s, %d bytes)", out_path, quant.precision, out_path.stat().st_size)
        return out_path
