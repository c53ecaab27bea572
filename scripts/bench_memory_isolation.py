"""Is a measurement's peak RSS its own? The same artifact measured after different worker histories.

One small ONNX model (digits_cnn, fp32, 1 thread) is measured by the local executor's measurement
workers after three histories, each in a fresh executor, ``--repeats`` times:

  clean          the worker's first task;
  after-measure  after a measurement of a much larger model (VGG-16 at CIFAR shape) in the same worker;
  after-export   after a torch export of that large model ran in the same worker (a build/export task).

Prints the peak RSS of the small model's measurement per history (median, min, max), the spread over all
of them ((max - min) / median; goal <= 2 %), and the per-job cost outside the timed window (job wall time
minus timed window), for the executor's measurement workers and for a fresh process per job
(``max_tasks_per_worker=1``).

    python scripts/bench_memory_isolation.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))

from bench_executor import digits_onnx, load  # noqa: E402

from edgebench.executor.base import Task  # noqa: E402
from edgebench.executor.local import LocalExecutor  # noqa: E402
from edgebench.executor.tasks import job_result, measure_task  # noqa: E402
from edgebench.job import Job, MeasureSettings  # noqa: E402

HISTORIES = ("clean", "after-measure", "after-export")
SETTINGS = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=0.3, max_time_s=5)


def vgg_onnx(root: Path) -> tuple[Path, Path]:
    """An (untrained) VGG-16 at CIFAR shape exported to ONNX, and random CIFAR-shaped eval data."""
    big_model(root)
    data = root / "cifar.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((64, 3, 32, 32)).astype(np.float32), y=np.zeros(64, dtype=np.int64))
    return root / "vgg.onnx", data


def big_model(root: Path) -> Path:
    """Export VGG-16 (CIFAR shape) to ``root / vgg.onnx``: what an export task does, in whatever process runs it."""
    import torch

    from edgebench.models import create_model
    from edgebench.runtimes.base import get_exporter
    from edgebench.variants import QuantSpec

    torch.manual_seed(0)
    model = create_model("vgg16_cifar", num_classes=10, in_channels=3, input_size=32).eval()
    return get_exporter("onnx").export(model, QuantSpec(), np.zeros((4, 3, 32, 32), np.float32), root / "vgg.onnx")


def _job(key: str, artifact: Path, data: Path) -> Job:
    return Job(job_id=key, variant_id="-", target="local-cpu", backend="onnxruntime", artifact=str(artifact),
               eval_data=str(data), measure=SETTINGS)


def measure_after(history: str, small: tuple[Path, Path], big: tuple[Path, Path], root: Path,
                  fresh: bool) -> tuple[float, float]:
    """Peak RSS (MiB) of the small model's measurement after ``history``, and its cost outside the timed window."""
    target = measure_task(_job("small", *small), 300)
    before: list[Task] = []
    if history == "after-measure":
        before = [measure_task(_job("big", *big), 300)]
    elif history == "after-export":  # a torch export in the measurement's own worker kind
        before = [Task(key="export", kind="export", fn=big_model, args=(root,), worker=target.worker, timeout_s=600)]
    for task in before:
        task.after = ()
    target.after = tuple(t.key for t in before)
    executor = LocalExecutor(workers=1, max_tasks_per_worker=1) if fresh else LocalExecutor(workers=1)
    with executor:
        results = {r.key: r for r in executor.run([*before, target])}
    result = results["small"]
    measured = job_result(result)
    assert measured.status == "ok", measured.error
    return measured.peak_rss_mb, result.wall_s - measured.timed_window_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(next(line for line in model.splitlines() if line.startswith("Model name")), f"| load {load()}")
    root = Path(tempfile.mkdtemp(prefix="edgebench-memory-"))
    small, big = digits_onnx(root), vgg_onnx(root)
    for label, fresh in (("measurement workers", False), ("a fresh process per job", True)):
        peaks: dict[str, list[float]] = {h: [] for h in HISTORIES}
        costs: list[float] = []
        for _ in range(args.repeats):
            for history in HISTORIES:
                peak, cost = measure_after(history, small, big, root, fresh)
                peaks[history].append(peak)
                costs.append(cost)
        every = [p for values in peaks.values() for p in values]
        median = statistics.median(every)
        print(f"{label}: peak RSS of digits_cnn fp32 ONNX, {args.repeats} repeats per history (load {load()})")
        for history, values in peaks.items():
            print(f"  {history:14s} median {statistics.median(values):7.1f} MiB  min {min(values):7.1f}  "
                  f"max {max(values):7.1f}")
        print(f"  spread over all: {(max(every) - min(every)) / median:.1%} of {median:.1f} MiB (goal <= 2 %); "
              f"cost outside the timed window: median {statistics.median(costs):.3f} s")


if __name__ == "__main__":
    main()
