"""ONNX artifacts: fp32 export, fp16 conversion and ONNX Runtime int8 quantization.

fp32 uses the dynamo exporter (``external_data=False`` keeps one file; one torchlib registry per process,
:mod:`torchlib_registry`) with the TorchScript exporter as fallback. fp16 is the fp32 model's float tensors in
fp16 with fp32 input and logits (:mod:`fp16`). int8 static uses QDQ (:mod:`calibration`: per-channel
weights with codes -64..64, u8 activations, float logits, the quant spec's calibrator) calibrated on
training images; QOperator with s8 activations was 25x slower than QDQ here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgebench.errors import UnsupportedModelError, first_line
from edgebench.models.code_closure import library_dirs
from edgebench.quantization.qat import deployable, is_quantization_trained
from edgebench.quantization.qdq import write_qdq
from edgebench.runtimes.base import EXPORTERS, INPUT_METADATA_KEY, Exporter
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.fp16 import convert_fp16
from edgebench.runtimes.onnxruntime.mixed_precision import search_mixed_precision, stamp
from edgebench.runtimes.onnxruntime.torchlib_registry import share_torchlib_registry
from edgebench.runtimes.unsupported_op import unsupported_op
from edgebench.variants import DEFAULT_CALIBRATOR, QuantSpec

log = logging.getLogger(__name__)
# the dynamo exporter warns about every torchvision op it cannot register; torchvision is not used here
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    """fp32, fp16, int8 static (QDQ, per-channel) and int8 dynamic ONNX models."""

    format = "onnx"
    precisions = ("fp32", "fp16", "int8", "int8_dynamic")
    qat_precisions = ("int8",)
    takes_max_drop = True
    derives_from_fp32 = True  # the fp32 export is most of an int8 one (0.7 of 0.8 s for the digits CNN)
    suffix = ".onnx"
    # 1: without the dynamo exporter's debugging metadata; 2: fp16 files topologically sorted; 3: dynamic int8 7-bit;
    # 4: traced on two images (one let torch.export fix the batch of attention and LSTM models at 1); 5: the input
    # spec in its metadata; 6: int8 with standalone BatchNormalizations as Mul and Add (OpenVINO crashed on them)
    revision = 6
    # torch.onnx's dynamo exporter (onnxscript, onnx-ir) writes fp32; ONNX Runtime's tools quantize and cast fp16
    converters = ("torch", "onnxscript", "onnx-ir", "onnx", "onnxruntime", "onnxruntime-gpu")

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path,
               validation: tuple[np.ndarray, np.ndarray] | None = None, fp32_source: Path | None = None) -> Path:
        example = torch.from_numpy(np.ascontiguousarray(calibration[:2], dtype=np.float32))
        if quant.qat is not None:
            return export_qat_qdq(model, example, quant, out_path)
        if quant.precision == "fp32":
            export_fp32_onnx(model, example, out_path)
            return out_path
        with tempfile.TemporaryDirectory() as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            if fp32_source is not None:  # this model's fp32 export, already written by the sweep
                shutil.copyfile(fp32_source, fp32_path)
            else:
                export_fp32_onnx(model, example, fp32_path)
            if quant.precision == "int8" and quant.max_drop is not None:
                if validation is None:
                    raise ValueError("a max_drop export needs the validation split (validation=(x, y))")
                decision = search_mixed_precision(fp32_path, out_path, calibration[: quant.calibration_samples],
                                                  *validation, quant.max_drop, quant.calibrator or DEFAULT_CALIBRATOR)
                log.info("mixed int8 %s: fp32 layers %s, accuracy %.4f (fp32 %.4f, int8 %.4f)", out_path.name,
                         decision.float_layers, decision.accuracy, decision.fp32_accuracy, decision.int8_accuracy)
            elif quant.precision == "int8":
                settings = quantize_qdq(fp32_path, out_path, calibration[: quant.calibration_samples],
                                        calibrator=quant.calibrator or DEFAULT_CALIBRATOR)
                log.info("int8 QDQ %s: %s", out_path.name, settings)
            elif quant.precision == "int8_dynamic":
                quantize_int8_dynamic(fp32_path, out_path)
            elif quant.precision == "fp16":
                convert_fp16(fp32_path, out_path)
            else:
                raise ValueError(f"ONNX exporter cannot produce precision '{quant.precision}'")
        return out_path

    def describe_input(self, artifact: Path, spec: dict[str, Any]) -> None:
        """``spec`` under ``edgebench.input`` in the file's metadata (``custom_metadata_map`` of an ORT session)."""
        stamp(artifact, spec, INPUT_METADATA_KEY)


def export_qat_qdq(model: nn.Module, example: torch.Tensor, quant: QuantSpec, out_path: Path) -> Path:
    """QDQ int8 ONNX with the scales and zero points a quantization-trained ``model`` learned (no calibration)."""
    if quant.precision not in OnnxExporter.qat_precisions or not is_quantization_trained(model):
        raise ValueError(f"a quantization-trained ONNX export is int8 of a QAT model, not {quant.precision}")
    plain, layers = deployable(model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_fp32_onnx(plain, example, fp32_path)
        write_qdq(fp32_path, layers, out_path)
    stamp(out_path, {"qat": {"setting": quant.qat.tag, "layers": {
        layer.name: {"weight_bits": layer.weight.bits, "input_bits": layer.input.bits,
                     "weight_scales": "per channel" if layer.weight.axis is not None else float(layer.weight.scale),
                     "input_scale": float(layer.input.scale), "input_zero_point": int(layer.input.zero_point)}
        for layer in layers}}})
    log.info("int8 QDQ %s from trained quantizers (%s)", out_path.name, quant.qat.tag)
    return out_path


def export_fp32_onnx(model: nn.Module, example: torch.Tensor, out_path: Path) -> None:
    """Export with a dynamic batch axis (offline scenario runs batch N)."""
    model = getattr(model, "onnx_exportable", model).eval()  # a user's TorchScript program goes in as itself
    share_torchlib_registry()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            _without_debug_metadata(program.model)
            if program.model.graph.inputs[0].shape[0] != "batch" or program.model.graph.outputs[0].shape[0] != "batch":
                raise ValueError("torch.export fixed the batch size")  # the TorchScript exporter keeps it dynamic
            program.save(str(out_path), external_data=False)
    except Exception as exc:  # dynamo cannot trace some graphs; the TorchScript exporter usually can
        log.info("dynamo ONNX export failed (%s); falling back to the TorchScript exporter", exc)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore")
            warnings.simplefilter("always", torch.jit.TracerWarning)  # the tracer's word on what it could not keep
            try:
                torch.onnx.export(
                    model,
                    (example,),
                    str(out_path),
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    opset_version=17,
                )
            except torch.onnx.errors.UnsupportedOperatorError as unsupported:  # neither exporter converts the op
                op = re.search(r"operator '([^']+)'", str(unsupported))
                if op is None:
                    raise
                raise unsupported_op(model, example, op[1], "ONNX export (opset 17)",
                                     "the targets that load ONNX") from None
        _refuse_traced_branches(caught, out_path)
        _refuse_fixed_batch(model, example, out_path, exc)


def _refuse_fixed_batch(model: nn.Module, example: torch.Tensor, out_path: Path, dynamo_error: Exception) -> None:
    """UnsupportedModelError where the TorchScript exporter's file declares a dynamic batch but runs only at the
    example's: the tracer writes a batch read as a Python int (``x.view(x.size(0), -1)`` in a program's graph) as a
    constant, and evaluation and the offline scenario run other batches (a program's every ONNX job failed in ONNX
    Runtime after it was stored)."""
    import onnxruntime as ort

    batch = np.concatenate([example.numpy(), example[:1].numpy()])  # one image more than the traced batch
    options = ort.SessionOptions()
    options.log_severity_level = 4  # its failure is said in the error below, not logged to stderr besides
    try:
        (logits,) = ort.InferenceSession(str(out_path), options, providers=["CPUExecutionProvider"]).run(
            [OUTPUT_NAME], {INPUT_NAME: batch})
        if len(logits) == len(batch):
            return
        said = f"gives {len(logits)} rows of logits"
    except Exception as failure:  # ONNX Runtime's own error types: a reshape or matmul of the traced batch's size
        said = f"fails ({first_line(failure).rpartition('Status Message: ')[2]})"
    Path(out_path).unlink(missing_ok=True)
    while dynamo_error.__cause__ is not None:  # torch.onnx's ConversionError wraps the error that says what failed
        dynamo_error = dynamo_error.__cause__
    raise UnsupportedModelError(
        f"ONNX export of {type(model).__name__}: the dynamo exporter failed ({first_line(dynamo_error)[:160]}) and the "
        f"TorchScript exporter's file, traced at batch {len(example)}, {said} at batch {len(batch)}; fix what the "
        "dynamo exporter failed on, or reshape in forward without the batch as a number (x.flatten(1), not "
        "x.reshape(int(x.size(0)), -1))")


def _refuse_traced_branches(caught: list[warnings.WarningMessage], out_path: Path) -> None:
    """UnsupportedModelError where the tracer turned a tensor into a Python bool in the model's own code: an ``if``
    on a tensor's value in ``forward``, of which the file keeps the branch the example image took and answers other
    inputs wrongly (torch's own checks of that kind, in library code, are left to it)."""
    library = tuple(map(str, library_dirs()))
    for warning in caught:
        if (issubclass(warning.category, torch.jit.TracerWarning) and "Python boolean" in str(warning.message)
                and not warning.filename.startswith(library)):
            Path(out_path).unlink(missing_ok=True)
            raise UnsupportedModelError(
                f"ONNX export cannot keep the data-dependent branch at {warning.filename}:{warning.lineno} (a Python "
                "`if` on a tensor's value in forward): the file would hold only the branch the example image took and "
                "answer other inputs wrongly; write it with torch.where (or torch.cond)")


def _without_debug_metadata(model: Any) -> None:
    """Drop what the dynamo exporter records for debugging on every node and value (each node's Python stack
    trace with the user's absolute paths, its module hierarchy, the FX node): it is most of a small model's file
    (a 4.5k-parameter EfficientNet-style CNN: 72 of 111 KB), so the artifact's size would not follow its weights,
    and a deployed file would carry the build machine's paths. The graph and weights are untouched."""
    import onnx_ir as ir

    graph = model.graph
    graph.metadata_props.clear()
    values = [*graph.inputs, *graph.outputs, *graph.initializers.values()]
    for node in ir.traversal.RecursiveGraphIterator(graph):
        node.metadata_props.clear()
        values += [v for v in (*node.inputs, *node.outputs) if v is not None]
    for value in values:
        value.metadata_props.clear()


def quantize_int8_dynamic(fp32_path: Path, out_path: Path) -> None:
    """Dynamic int8 (weights only; activations quantized at run time as uint8). Weight codes run -64..64
    (``reduce_range``) as in calibrated int8: on x86 without VNNI ONNX Runtime adds pairs of u8 x s8 products in
    saturating int16, which full-range weights can overflow (an emulation of it moved logits by up to 6). One scale
    per weight tensor: ONNX Runtime's dynamic quantizer gives ConvInteger no per-channel scale."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8, reduce_range=True)
