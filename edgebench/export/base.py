"""Exporter interface and registry (one exporter per artifact format)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from edgebench.registry import Registry
from edgebench.variants import QuantSpec

if TYPE_CHECKING:
    from edgebench.targets import TargetSpec


class Exporter(ABC):
    """Writes one artifact format; quantization for that format happens here too."""

    format: str = ""
    #: precisions this exporter can produce
    precisions: tuple[str, ...] = ("fp32",)
    #: file name suffix of the artifact ("" for a directory)
    suffix: str = ""
    #: False when the artifact embeds its own absolute path (hls4ml's compiled C simulation loads
    #: its weights from where it was built), so it must be written in place, not moved there
    relocatable: bool = True

    @classmethod
    def for_target(cls, target: TargetSpec | None) -> Exporter:
        """The exporter configured for ``target`` (e.g. an FPGA part); most formats need no target settings."""
        return cls()

    def options(self) -> dict[str, Any]:
        """Target settings that change the artifact; part of the artifact cache key."""
        return {}

    def available(self) -> str | None:
        """None when the exporter's dependencies are importable, else the reason."""
        return None

    @abstractmethod
    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        """Export ``model`` (fp32, eval mode) at ``quant`` precision to ``out_path`` and return the artifact path.

        ``calibration`` holds training images (NCHW float32); its first image is
        also the example input for tracing.
        """


EXPORTERS: Registry[type[Exporter]] = Registry(
    "exporter",
    modules=(
        "edgebench.export.torch_export",
        "edgebench.export.onnx_export",
        "edgebench.export.tflite_export",
        "edgebench.export.hls4ml_export",
        "edgebench.export.tensorrt_export",
    ),
)


def get_exporter(fmt: str, target: TargetSpec | None = None) -> Exporter:
    """The exporter of artifact format ``fmt``, configured for ``target`` when given."""
    return EXPORTERS.get(fmt).for_target(target)
