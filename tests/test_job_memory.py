"""A measurement's peak RSS is its own: not what its worker ran before, not the harness's test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from executor_tasks import allocate_and_report_peak
from torch import nn

from edgebench.executor.base import Task
from edgebench.executor.local import LocalExecutor
from edgebench.executor.tasks import job_result, measure_task
from edgebench.job import Job, MeasureSettings
from edgebench.runtimes.base import get_exporter
from edgebench.variants import QuantSpec

FAST = MeasureSettings(warmup_iters=5, min_iters=50, min_time_s=0.1, max_time_s=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("job memory")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10)).eval()
    x = np.random.default_rng(0).standard_normal((4000, 3, 32, 32)).astype(np.float32)  # 47 MiB of test images
    np.savez(root / "large.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    np.savez(root / "small.npz", x=x[:16], y=np.zeros(16, dtype=np.int64))
    onnx = get_exporter("onnx").export(model, QuantSpec(), x[:8], root / "model.onnx")
    return {"onnx": onnx, "large": root / "large.npz", "small": root / "small.npz"}


def _measure(files: dict[str, Path], data: str = "small") -> Task:
    job = Job(job_id=f"m-{data}", variant_id="v", target="local-cpu", backend="onnxruntime",
              artifact=str(files["onnx"]), eval_data=str(files[data]), measure=FAST)
    return measure_task(job, 120)


def _peak(tasks: list[Task]) -> float:
    with LocalExecutor(workers=1) as executor:
        results = {r.key: r for r in executor.run(tasks)}
    measured = job_result(results[tasks[-1].key])
    assert measured.status == "ok", measured.error
    return measured.peak_rss_mb


def test_peak_rss_does_not_depend_on_what_the_worker_ran_before(files: dict[str, Path]) -> None:
    clean = _peak([_measure(files)])
    target = _measure(files)
    # a build-like task in the measurement's own worker that leaves 300 MiB resident behind
    build = Task(key="build", kind="build", fn=allocate_and_report_peak, args=(300, True), worker=target.worker)
    target.after = ("build",)
    after_build = _peak([build, target])
    assert after_build == pytest.approx(clean, rel=0.02)


def test_peak_rss_leaves_out_the_test_images(files: dict[str, Path]) -> None:
    with_small, with_large = _peak([_measure(files, "small")]), _peak([_measure(files, "large")])
    assert with_large == pytest.approx(with_small, rel=0.02)  # the 47 MiB test set is read after the peak
