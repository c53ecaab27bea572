"""Exported artifacts: where each lives in the cache, whether it is complete, and how one is built.

``run_export`` runs as an executor task (``edgebench.sweep``): LiteRT conversion and the hls4ml g++
build take seconds per variant, and a converter that crashes takes down its worker, not the run.
Exports never run beside a timed measurement on the same cores (the executor's lanes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebench.cache_files import COMPLETE_MARKER, digest_matches, exclusive, replacing, write_digest
from edgebench.plan import PlannedJob
from edgebench.runtimes.base import Exporter, get_exporter
from edgebench.targets import TargetSpec
from edgebench.variants import QuantSpec

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportTask:
    """One artifact to build from a cached fp32 model."""

    fmt: str
    target: TargetSpec
    quant: QuantSpec
    model_path: Path
    calibration_path: Path
    out_path: Path
    #: the same model's fp32 artifact in this format, for an exporter that ``derives_from_fp32`` (used when ready)
    fp32_source: Path | None = None
    #: what the artifact must be fed (the run's input record), written into it where its format has a place
    input_spec: Mapping[str, Any] | None = None


def artifact_path(job: PlannedJob, workdir: Path) -> Path:
    """Where ``job``'s artifact lives in the cache."""
    suffix = get_exporter(job.artifact_format, job.target.blocks).suffix
    return workdir / "artifacts" / f"{job.artifact_key}{suffix}"


def artifact_ready(path: Path) -> bool:
    """Whether a complete artifact exists at ``path`` (file, or directory with the marker). A file whose bytes no
    longer match the digest written when it was built (replaced or damaged in the cache) is not: it is exported
    again rather than measured as this variant."""
    if path.is_dir():
        return (path / COMPLETE_MARKER).is_file()
    if not path.is_file():
        return False
    if not digest_matches(path):
        log.warning("%s changed since it was exported (its sha256 is not the one written then): exporting it again",
                    path)
        return False
    return True


def run_export(task: ExportTask) -> Path:
    """Build one artifact (in a worker process), holding its lock file: a run beside this one that wants the
    same artifact waits and then finds it done. A relocatable artifact is written under a temporary name of
    this process and renamed into place; the others are built in place."""
    import torch

    exporter = get_exporter(task.fmt, task.target.blocks)
    reason = exporter.available()
    if reason:
        raise RuntimeError(f"{task.fmt} export unavailable: {reason}")
    with exclusive(task.out_path):
        if artifact_ready(task.out_path):
            return task.out_path
        model = torch.load(task.model_path, map_location="cpu", weights_only=False).eval()
        data = np.load(task.calibration_path)
        calibration = data["x"]
        # an accuracy budget is checked on the validation split, kept beside the calibration images
        extra: dict = {"validation": (data["x_val"], data["y_val"])} if task.quant.max_drop is not None else {}
        if exporter.derives_from_fp32 and task.fp32_source is not None and artifact_ready(task.fp32_source):
            extra["fp32_source"] = task.fp32_source
        if not exporter.relocatable:
            _export(exporter, model, task, calibration, task.out_path, extra)
        else:
            with replacing(task.out_path) as tmp:
                _export(exporter, model, task, calibration, tmp, extra)
        if task.out_path.is_dir():
            (task.out_path / COMPLETE_MARKER).touch()
        else:
            write_digest(task.out_path)
    return task.out_path


def _export(exporter: Exporter, model: nn.Module, task: ExportTask, calibration: np.ndarray, path: Path,
            extra: dict[str, Any]) -> None:
    exporter.export(model, task.quant, calibration, path, **extra)
    if task.input_spec is not None:
        exporter.describe_input(path, dict(task.input_spec))
