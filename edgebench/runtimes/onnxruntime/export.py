"""ONNX artifacts: fp32 export and ONNX Runtime int8 quantization.

fp32 uses the dynamo exporter (``external_data=False`` keeps one file) with the
TorchScript exporter as fallback. int8 static uses QDQ (:mod:`calibration`: per-channel
7-bit weights, u8 activations, float logits, the quant spec's calibrator) calibrated on
training images; QOperator with s8 activations was 25x slower than QDQ here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgebench.runtimes.base import EXPORTERS, Exporter
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.variants import DEFAULT_CALIBRATOR, QuantSpec

log = logging.getLogger(__name__)
# the dynamo exporter warns about every torchvision op it cannot register; torchvision is not used here
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

INPUT_NAME, OUTPUT_NAME = "input", "logits"


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    """fp32, int8 static (QDQ, per-channel) and int8 dynamic ONNX models."""

    format = "onnx"
    precisions = ("fp32", "int8", "int8_dynamic")
    suffix = ".onnx"

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        example = torch.from_numpy(np.ascontiguousarray(calibration[:1], dtype=np.float32))
        if quant.precision == "fp32":
            export_fp32_onnx(model, example, out_path)
            return out_path
        with tempfile.TemporaryDirectory() as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            export_fp32_onnx(model, example, fp32_path)
            if quant.precision == "int8":
                settings = quantize_qdq(fp32_path, out_path, calibration[: quant.calibration_samples],
                                        calibrator=quant.calibrator or DEFAULT_CALIBRATOR)
                log.info("int8 QDQ %s: %s", out_path.name, settings)
            elif quant.precision == "int8_dynamic":
                quantize_int8_dynamic(fp32_path, out_path)
            else:
                raise ValueError(f"ONNX exporter cannot produce precision '{quant.precision}'")
        return out_path


def export_fp32_onnx(model: nn.Module, example: torch.Tensor, out_path: Path) -> None:
    """Export with a dynamic batch axis (offline scenario runs batch N)."""
    model = getattr(model, "onnx_exportable", model).eval()  # a user's TorchScript program goes in as itself
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
            program.save(str(out_path), external_data=False)
    except Exception as exc:  # dynamo cannot trace some graphs; the TorchScript exporter usually can
        log.info("dynamo ONNX export failed (%s); falling back to the TorchScript exporter", exc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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


def quantize_int8_dynamic(fp32_path: Path, out_path: Path) -> None:
    """Dynamic int8 (weights only; activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(out_path), weight_type=QuantType.QInt8)
