"""Benchmark the executors: per-job overhead, harness overhead, Ray scaling and a device-farm simulation.

overhead  the same measurement jobs (the default experiment's timing rules, digits_cnn ONNX, 1 thread) run
          once each in a fresh process (as before the executor) and in a warm local worker; prints the
          median of (job wall time - timed window), where the timed window is the wall time of the harness's
          timed loop and the job wall time runs from handing the job to a worker until its result is back.
          Target: <= 0.3 s with warm workers.
harness   edgebench's p50 in a warm worker (after another job ran there) over a bare `session.run` loop's
          p50, same model, 1 thread. Target: <= 1.03.
builds    >= 16 variant builds (digits_cnn pruned while training) with the local executor (2 workers) and
          on a two-node local Ray cluster started here (1 CPU per node, so both have 2 CPUs in all).
farm      16 timed jobs that each hold a board for a fixed time (sleep 1 s, standing in for a remote
          board's measurement) on 4 board resources vs 1; makespan ratio. Target: >= 3.5x.

ssh       what a real farm adds per job: SSH connect and the SFTP copy of each artifact kind (digits_cnn
          ONNX/torch, and a VGG-16-CIFAR ONNX for a realistic size) to a key-only sshd on 127.0.0.1 (the
          remote-target tests' server); the loopback has no network latency, a board's link adds it.

Usage: python scripts/bench_executor.py [overhead|harness|builds|farm|ssh ...] (default: all)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS), str(SCRIPTS.parent / "tests")]

from bench_default_run import BARE_LOOP  # noqa: E402

from edgebench.config import load_experiment  # noqa: E402
from edgebench.executor.base import Lane, Task  # noqa: E402
from edgebench.executor.local import LocalExecutor  # noqa: E402
from edgebench.executor.tasks import call_task, job_result, measure_task  # noqa: E402
from edgebench.job import Job, JobResult, MeasureSettings  # noqa: E402


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0]


def digits_onnx(root: Path) -> tuple[Path, Path]:
    """An (untrained) digits_cnn exported to ONNX and the digits test split as the workers' npz."""
    import torch

    from edgebench.data import load_dataset
    from edgebench.models import create_model
    from edgebench.runtimes.base import get_exporter
    from edgebench.variants import QuantSpec

    splits = load_dataset("digits", seed=0)
    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=splits.num_classes, in_channels=splits.input_shape[0],
                         input_size=splits.input_shape[-1]).eval()
    artifact = get_exporter("onnx").export(model, QuantSpec(), splits.x_train[:64], root / "digits_cnn.onnx")
    data = root / "test.npz"
    np.savez(data, x=splits.x_test.astype(np.float32), y=splits.y_test.astype(np.int64))
    return artifact, data


def _job(key: str, artifact: Path, data: Path, settings: MeasureSettings) -> Job:
    return Job(job_id=key, variant_id="-", target="local-cpu", backend="onnxruntime", artifact=str(artifact),
               eval_data=str(data), measure=settings)


def _outside_window(wall_s: float, result: JobResult) -> float:
    return wall_s - result.timed_window_s


def _overheads(executor: LocalExecutor, artifact: Path, data: Path, settings: MeasureSettings, n: int) -> list[float]:
    with executor:
        tasks = [measure_task(_job(f"job-{i}", artifact, data, settings), 300) for i in range(n)]
        return [_outside_window(r.wall_s, job_result(r)) for r in executor.run(tasks)]


def bench_overhead(artifact: Path, data: Path, n: int) -> None:
    settings = load_experiment(None).measurement
    fresh = _overheads(LocalExecutor(workers=1, max_tasks_per_worker=1), artifact, data, settings, n)
    warm = _overheads(LocalExecutor(workers=1), artifact, data, settings, n)
    print(f"overhead: {n} jobs of digits_cnn fp32 ONNX, 1 thread, min_time_s {settings.min_time_s:g}; "
          f"job wall time minus timed window (load {load()}):")
    print(f"  a fresh process per job (as before):  median {statistics.median(fresh):.3f} s  "
          f"(first {fresh[0]:.3f} s, max {max(fresh):.3f} s)")
    print(f"  warm local worker:                    median {statistics.median(warm):.3f} s  "
          f"(first {warm[0]:.3f} s, max {max(warm):.3f} s)   target <= 0.3 s")


def bench_harness(artifact: Path, data: Path, iters: int) -> None:
    settings = MeasureSettings(warmup_iters=200, min_iters=iters, min_time_s=0, max_iters=iters)
    with LocalExecutor(workers=1) as executor:
        first, second = (job_result(r) for r in executor.run(
            [measure_task(_job(f"h{i}", artifact, data, settings), 600) for i in range(2)]))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, str(artifact), str(data), str(iters), "200"],
                         capture_output=True, text=True, check=True, env=env)
    bare = json.loads(out.stdout)["p50_ms"]
    edge = second.latency_ms["p50"]
    print(f"harness: ONNX Runtime p50, 1 thread, {iters} iterations (load {load()}): edgebench in a warm worker "
          f"(its 2nd job) {edge * 1e3:.2f} us, bare session.run loop {bare * 1e3:.2f} us, ratio {edge / bare:.3f}  "
          f"(target <= 1.03; the worker's 1st job: {first.latency_ms['p50'] * 1e3:.2f} us)")


def _build_tasks(n: int) -> list[Task]:
    from edgebench.data import load_dataset
    from edgebench.plan import plan_fp32_variants
    from edgebench.prune import build_fp32_model

    exp = load_experiment(None)
    ratios = [round(0.1 + 0.8 * i / 5, 2) for i in range(6)]
    exp = exp.model_copy(update={"pruning": exp.pruning.model_copy(update={"ratios": ratios}),
                                 "training": exp.training.model_copy(update={"epochs": 8})})
    specs = [s for s in plan_fp32_variants(exp) if s.prune is not None][:n]
    splits = load_dataset(exp.dataset.name, **exp.dataset.kwargs)
    return [call_task(spec.id, "build", build_fp32_model, spec, splits) for spec in specs]


def _makespan(executor: object, tasks: list[Task]) -> tuple[float, list]:
    start = time.perf_counter()
    results = list(executor.run(tasks))  # type: ignore[attr-defined]
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} tasks failed, e.g. {failed[0]}")
    return time.perf_counter() - start, results


def bench_builds(n: int) -> None:
    from ray_cluster import start_cluster

    from edgebench.executor.ray_executor import RayExecutor

    with LocalExecutor(workers=2) as executor:
        local_s, _ = _makespan(executor, _build_tasks(n))
    with tempfile.TemporaryDirectory() as tmp, start_cluster(Path(tmp), head_cpus=1) as cluster:
        cluster.add_node("second", {"second-node": 1}, num_cpus=1)
        with RayExecutor() as executor:
            ray_s, results = _makespan(executor, _build_tasks(n))
    nodes = {r.where.node for r in results}
    print(f"builds: {n} variant builds (digits_cnn, pruned while training, 8 epochs), 2 CPUs either way "
          f"(load {load()}): local executor {local_s:.1f} s, Ray 2-node cluster {ray_s:.1f} s on {len(nodes)} nodes, "
          f"local/Ray {local_s / ray_s:.2f}x")


def bench_farm(jobs: int, boards: int, seconds: float) -> None:
    from executor_tasks import pid_after
    from ray_cluster import start_cluster

    from edgebench.executor.ray_executor import RayExecutor

    def farm(n_boards: int) -> list[Task]:
        names = [f"board:{i}" for i in range(n_boards)]
        return [Task(key=f"job-{i}", kind="measure", fn=pid_after, args=(seconds,), lane=Lane(names[i % n_boards]),
                     timed=True, resources={names[i % n_boards]: 1}) for i in range(jobs)]

    resources = {f"board:{i}": 1 for i in range(boards)}
    tests = SCRIPTS.parent / "tests"
    with tempfile.TemporaryDirectory() as tmp, \
            start_cluster(Path(tmp), head_cpus=2, head_resources=resources, extra_paths=(tests,)), \
            RayExecutor() as executor:
        _makespan(executor, farm(boards))  # starts the Ray workers once, outside both figures
        many, _ = _makespan(executor, farm(boards))
        one, _ = _makespan(executor, farm(1))
    print(f"farm: {jobs} jobs holding a board {seconds:g} s each (load {load()}): 1 board {one:.2f} s, "
          f"{boards} boards {many:.2f} s, ratio {one / many:.2f}x  (target >= 3.5x; ideal {min(boards, jobs)}x)")


def bench_ssh(root: Path, files: list[Path], repeats: int = 5) -> None:
    from sshd_fixtures import start_sshd

    from edgebench.executor.ssh import _put, connect

    (root / "sshd").mkdir()
    with start_sshd(root / "sshd") as server:
        ssh = server.spec().ssh
        assert ssh is not None
        connects, copies = [], {f: [] for f in files}
        for i in range(repeats):
            start = time.perf_counter()
            client = connect(ssh)
            sftp = client.open_sftp()
            connects.append(time.perf_counter() - start)
            for f in files:
                start = time.perf_counter()
                _put(sftp, f, f"{root}/copy-{i}-{f.name}")
                copies[f].append(time.perf_counter() - start)
            client.close()
    print(f"ssh: loopback sshd, median of {repeats} (load {load()}): connect + SFTP session "
          f"{statistics.median(connects) * 1e3:.0f} ms")
    for f, times in copies.items():
        size = f.stat().st_size
        print(f"  copy {f.name} ({size / 1024:.0f} KiB): {statistics.median(times) * 1e3:.1f} ms "
              f"({size / statistics.median(times) / 2**20:.0f} MiB/s)")


def vgg16_onnx(root: Path) -> Path:
    """VGG-16 at CIFAR shape (untrained) as ONNX: the size of a real board's artifact."""
    import torch

    from edgebench.models import create_model
    from edgebench.runtimes.base import get_exporter
    from edgebench.variants import QuantSpec

    torch.manual_seed(0)
    model = create_model("vgg16_cifar", num_classes=10, in_channels=3).eval()
    return get_exporter("onnx").export(model, QuantSpec(), np.zeros((1, 3, 32, 32), np.float32), root / "vgg16.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["overhead", "harness", "builds", "farm", "ssh"])
    parser.add_argument("--jobs", type=int, default=12, help="measurement jobs for 'overhead'")
    parser.add_argument("--iters", type=int, default=5000, help="timed iterations for 'harness'")
    parser.add_argument("--builds", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        artifact, data = digits_onnx(Path(tmp))
        if "overhead" in args.parts:
            bench_overhead(artifact, data, args.jobs)
        if "harness" in args.parts:
            bench_harness(artifact, data, args.iters)
        if "ssh" in args.parts:
            bench_ssh(Path(tmp), [artifact, data, vgg16_onnx(Path(tmp))])
    if "builds" in args.parts:
        bench_builds(args.builds)
    if "farm" in args.parts:
        bench_farm(16, 4, 1.0)


if __name__ == "__main__":
    main()
