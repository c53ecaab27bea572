"""Shared by the pruning scripts: export a model to ONNX (fp32 or int8 QDQ) and time it in ONNX Runtime
through edgebench's own exporter, backend session and timed harness (no separate timing code)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgebench.job import MeasureSettings
from edgebench.prune.allocation.latency.table import onnx_p50_ms
from edgebench.runtimes.base import BackendSettings
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

SETTINGS = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=1.0, max_time_s=10.0)


def ort_p50_ms(model: nn.Module, calibration: np.ndarray, threads: int = 1, int8: bool = False) -> float:
    """Median single-stream (batch 1) latency in ms of ``model`` exported to ONNX and run by ORT CPU."""
    example = torch.from_numpy(np.ascontiguousarray(calibration[:1], dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        export_fp32_onnx(model.eval(), example, path)
        if int8:
            quantize_qdq(path, Path(tmp) / "int8.onnx", calibration)
            path = Path(tmp) / "int8.onnx"
        return onnx_p50_ms(path, "onnxruntime", BackendSettings(threads=threads), example.numpy(), SETTINGS)
