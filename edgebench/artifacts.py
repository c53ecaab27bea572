"""The export stage: every planned artifact, cached by content hash, built in worker processes.

Exports run in a process pool (one process per core): LiteRT conversion and the hls4ml g++ build
take seconds per variant, and a converter that crashes takes down its worker, not the run. All
exports finish before any measurement starts, so they never disturb timing.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebench.plan import PlannedJob
from edgebench.runtimes.base import get_exporter
from edgebench.targets import TargetSpec
from edgebench.variants import QuantSpec

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


def artifact_path(job: PlannedJob, workdir: Path) -> Path:
    """Where ``job``'s artifact lives in the cache."""
    suffix = get_exporter(job.artifact_format, job.target).suffix
    return workdir / "artifacts" / f"{job.artifact_key}{suffix}"


#: written last into a directory artifact: a directory without it is a half-built export
COMPLETE_MARKER = ".edgebench-complete"


def artifact_ready(path: Path) -> bool:
    """Whether a complete artifact exists at ``path`` (file, or directory with the marker)."""
    return path.is_file() or (path / COMPLETE_MARKER).is_file()


def artifact_size(path: Path) -> int:
    """Bytes on disk of a file or a directory artifact."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _init_worker(log_dir: Path) -> None:
    # converters write to stderr from C++ (TensorFlow/absl notices, g++ output): keep it in a log file
    # per worker instead of the terminal; a failure's message still comes back as the task's error
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(log_dir / f"export-{os.getpid()}.log", "a")  # noqa: SIM115 - lives as long as the worker
    os.dup2(log_file.fileno(), 2)
    import torch

    torch.set_num_threads(1)  # one export per core


def run_export(task: ExportTask) -> Path:
    """Build one artifact (in a worker process); written under a temporary name, then renamed."""
    import torch

    model = torch.load(task.model_path, map_location="cpu", weights_only=False).eval()
    calibration = np.load(task.calibration_path)["x"]
    exporter = get_exporter(task.fmt, task.target)
    reason = exporter.available()
    if reason:
        raise RuntimeError(f"{task.fmt} export unavailable: {reason}")
    if not exporter.relocatable:
        result = exporter.export(model, task.quant, calibration, task.out_path)
    else:
        tmp = task.out_path.with_name(f"tmp-{os.getpid()}-{task.out_path.name}")
        result = exporter.export(model, task.quant, calibration, tmp)
        os.replace(result, task.out_path)
    if task.out_path.is_dir():
        (task.out_path / COMPLETE_MARKER).touch()
    return task.out_path


def export_all(
    tasks: Iterable[ExportTask],
    log_dir: Path,
    processes: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[Path, str | None]:
    """Build every missing artifact; returns artifact path -> None on success or the error text.

    The workers' stderr (converter output) goes to ``log_dir/export-<pid>.log``.
    """
    todo = {t.out_path: t for t in tasks if not artifact_ready(t.out_path)}
    status: dict[Path, str | None] = {}
    if not todo:
        return status
    next(iter(todo)).parent.mkdir(parents=True, exist_ok=True)
    processes = processes or min(len(todo), os.cpu_count() or 1)
    context = multiprocessing.get_context("spawn")  # no forked copies of torch's thread pools
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker, initargs=(log_dir,)) as pool:
        futures = {pool.submit(run_export, task): path for path, task in todo.items()}
        for done, future in enumerate(as_completed(futures), 1):
            path = futures[future]
            try:
                future.result()
                status[path] = None
            except BrokenProcessPool:
                status[path] = f"the export process crashed; see the converter's output in {log_dir}/export-*.log"
            except Exception as exc:
                status[path] = f"{type(exc).__name__}: {exc}"
                log.warning("export %s failed: %s", path.name, exc)
            if progress:
                progress(done, len(todo), path.name)
    return status
