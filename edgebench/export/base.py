"""Exporter interface and registry (one exporter per artifact format)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
from torch import nn

from edgebench.registry import Registry
from edgebench.variants import QuantSpec


class Exporter(ABC):
    """Writes one artifact format; quantization for that format happens here too."""

    format: str = ""
    #: precisions this exporter can produce
    precisions: tuple[str, ...] = ("fp32",)
    #: file name suffix of the artifact
    suffix: str = ""

    def available(self) -> str | None:
        """None when the exporter's dependencies are importable, else the reason."""
        return None

    @abstractmethod
    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        """Export ``model`` (fp32, eval mode) at ``quant`` precision to ``out_path`` and return the artifact path.

        ``calibration`` holds training images (NCHW float32); its first image is
        also the example input for tracing.
        """


EXPORTERS: Registry[type[Exporter]] = Registry("exporter")

_EXPORTER_MODULES = (
    "edgebench.export.torch_export",
    "edgebench.export.onnx_export",
    "edgebench.export.tflite_export",
    "edgebench.export.hls4ml_export",
    "edgebench.export.tensorrt_export",
)


def get_exporter(fmt: str) -> Exporter:
    """Instantiate the exporter of artifact format ``fmt``."""
    for module in _EXPORTER_MODULES:
        importlib.import_module(module)
    return EXPORTERS.get(fmt)()
