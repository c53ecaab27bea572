"""TFLite artifacts through litert-torch (extra ``litert``): fp32, and int8 via its PT2E quantizer.

int8 is static, symmetric per-channel weights, calibrated on training images;
the converted model has int8 input and output tensors, which the LiteRT backend
quantizes/dequantizes with each tensor's scale and zero point. litert-torch keeps
the PyTorch NCHW input layout (it inserts the transposes itself).
tflite-runtime is not used: its last wheels (2.14) do not work with numpy 2.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgebench.errors import require_module
from edgebench.runtimes.base import EXPORTERS, Exporter
from edgebench.runtimes.litert import LITERT_TORCH
from edgebench.variants import QuantSpec

log = logging.getLogger(__name__)


def _import_litert_torch():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    litert_torch = require_module("litert_torch", "litert", "the TFLite exporter", "litert-torch")

    litert_torch.config.show_progress = False
    return litert_torch


def _calibrated_int8(model: nn.Module, example: torch.Tensor, calibration: np.ndarray):
    """PT2E: export, insert observers, run calibration images, convert to a quantized graph."""
    from litert_torch.quantize import pt2e_quantizer
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    graph = torch.export.export(model, (example,)).module()
    prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in calibration:  # the exported graph has a static batch of one
            prepared(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32)))
    converted = move_exported_model_to_eval(quantize_pt2e.convert_pt2e(prepared, fold_quantize=False))
    # exported graphs keep training=True even with inference ops; litert-torch warns on the flag alone
    converted.training = False
    return converted, quantizer


@EXPORTERS.register("tflite")
class TfliteExporter(Exporter):
    """fp32 and int8 (PT2E static, per-channel) .tflite files."""

    format = "tflite"
    precisions = ("fp32", "int8")
    suffix = ".tflite"
    needs = (LITERT_TORCH,)

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        litert_torch = _import_litert_torch()
        model = model.eval()
        example = torch.from_numpy(np.ascontiguousarray(calibration[:1], dtype=np.float32))
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if quant.precision == "fp32":
                edge_model = litert_torch.convert(model, (example,))
            elif quant.precision == "int8":
                from litert_torch.quantize.quant_config import QuantConfig

                graph, quantizer = _calibrated_int8(model, example, calibration[: quant.calibration_samples])
                edge_model = litert_torch.convert(graph, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
            else:
                raise ValueError(f"TFLite exporter cannot produce precision '{quant.precision}'; use fp32 or int8")
            edge_model.export(str(out_path))
        log.info("wrote %s (%s, %d bytes)", out_path, quant.precision, out_path.stat().st_size)
        return out_path
