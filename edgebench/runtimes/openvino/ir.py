"""OpenVINO IR (``model.xml`` + ``model.bin``), the form NNCF's post-training quantization and OpenVINO's own tools
write: measured as another tool's artifact (``artifacts:`` in an experiment, ``edgebench bench model.xml``).

edgebench exports no IR itself (OpenVINO reads its ONNX files directly); this format entry gives the artifact cache
an IR's layout - a directory holding ``model.xml`` and ``model.bin`` - so it is copied, hashed, sized and shipped to
a board as one artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebench.errors import ArtifactError, ConfigError
from edgebench.runtimes.base import EXPORTERS, Exporter
from edgebench.variants import QuantSpec

if TYPE_CHECKING:
    from torch import nn

#: the names an IR has inside the cache's directory artifact
IR_XML, IR_BIN = "model.xml", "model.bin"


def openvino_reason(exc: BaseException) -> str:
    """OpenVINO's reason in an error, without the "Exception from src/...cpp:N:" lines it stacks before it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith("Exception from ")), lines[-1] if lines else repr(exc))


def partial_dims(shape: Any) -> tuple[int | None, ...]:
    """An OpenVINO partial shape's dims, None where dynamic."""
    return tuple(d.get_length() if d.is_static else None for d in shape)


def read_ir(path: Path) -> Any:
    """The ``ov.Model`` of the IR at ``path``, for checks before any work; None where OpenVINO is not installed (its
    target's availability check then says what to install), ConfigError with OpenVINO's reason where it cannot
    read the file."""
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:
        weights = path.with_suffix(".bin")
        if not weights.is_file():  # OpenVINO says only "Check 'm_weights_provider' failed"
            raise ConfigError(f"{path}: its weights file {weights.name} is not beside it (an IR is the .xml and the "
                              ".bin of the same name, in one folder)") from None
        raise ConfigError(f"{path}: not an OpenVINO IR OpenVINO can read ({openvino_reason(exc)})") from None


def ir_xml(artifact: Path) -> Path:
    """The ``.xml`` of an IR artifact: the file itself, or ``model.xml`` in a cached directory artifact."""
    return artifact / IR_XML if artifact.is_dir() else artifact


@EXPORTERS.register("openvino")
class OpenVinoIrFormat(Exporter):
    """The cache layout of an OpenVINO IR another tool wrote; it writes none (no precision to export)."""

    format = "openvino"
    precisions = ()
    suffix = ""  # a directory: model.xml beside model.bin

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        raise ArtifactError("edgebench writes no OpenVINO IR: OpenVINO measures its ONNX files; an IR another tool "
                            "made (NNCF) is measured as given, listed under artifacts:")
