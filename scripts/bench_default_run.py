"""Benchmark edgebench itself: (a) wall time of the default run, (b) harness overhead.

(a) runs `edgebench run` (the built-in default) in a fresh run directory and
    times it end to end (training, pruning, export, measurement, report); prints
    the stage seconds the run reports, the store's bytes of raw samples per
    measurement, and the widest 95 % confidence interval of a p50 (relative).
(b) measures the same ONNX model at one thread twice, each in a fresh process:
    edgebench's worker (Backend -> Session -> harness) and a bare loop calling
    `InferenceSession.run` timed with perf_counter_ns; prints the p50 ratio.

Targets: default run <= 90 s on 2 cores with every p50 within +-1 % (issue 22); overhead ratio <= 1.03.
The CPU model and load average are printed with the figures: on a shared machine, say under what load.
Usage: python scripts/bench_default_run.py [--skip-run] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

BARE_LOOP = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
model, data, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
x = np.ascontiguousarray(np.load(data)["x"][:1].astype(np.float32))
name = sess.get_inputs()[0].name
for _ in range(warmup):
    sess.run(None, {name: x})
samples = []
for _ in range(n):
    t0 = time.perf_counter_ns()
    sess.run(None, {name: x})
    samples.append(time.perf_counter_ns() - t0)
print(json.dumps({"p50_ms": float(np.percentile(samples, 50)) / 1e6, "n": n}))
"""


def time_default_run(workdir: Path) -> tuple[float, str]:
    """Wall seconds of `edgebench run` with the default experiment, from a clean run directory, and the
    stage seconds it printed."""
    for sub in ("runs/default", "reports/default"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("edgebench")
    start = time.perf_counter()
    done = subprocess.run([str(exe), "run"], cwd=workdir, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    stages = next((line.split(":", 1)[1].strip() for line in done.stdout.splitlines()
                   if line.startswith("stage seconds:")), "not printed")
    return wall, stages


def store_figures(db: Path) -> str:
    """Raw-sample bytes and samples per measurement, and the widest p50 interval (relative), of a store."""
    with sqlite3.connect(db) as conn:
        count, samples, blob = conn.execute("select count(*), sum(n), sum(length(data)) from samples").fetchone()
        rows = conn.execute("select p50_ms, p50_low_ms, p50_high_ms from measurements where status = 'ok'").fetchall()
    widths = [max(p - lo, hi - p) / p for p, lo, hi in rows if lo is not None and hi is not None and p]
    within = sum(w <= 0.01 for w in widths)
    widest = f"{max(widths):.2%}" if widths else "none recorded"
    return (f"{count} measurements, {samples / count:.0f} samples and {blob / count / 1024:.1f} KiB of raw samples "
            f"each ({db.stat().st_size / 1024:.0f} KiB file); p50 95 % interval within +-1 %: {within}/{len(rows)}, "
            f"widest +-{widest}")


def machine_line() -> str:
    """The CPU model (lscpu) and the 1-minute load average: the context of every speed figure."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    return f"CPU {model}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"


def harness_overhead(model: Path, data: Path, iters: int) -> tuple[float, float]:
    """p50 ms of edgebench's worker and of a bare ORT loop, each in a fresh process."""
    from edgebench.executor.tasks import run_one
    from edgebench.job import Job, MeasureSettings

    settings = MeasureSettings(warmup_iters=200, min_iters=iters, min_time_s=0, max_iters=iters)
    job = Job(job_id="overhead", variant_id="-", target="local-cpu", backend="onnxruntime", artifact=str(model),
              eval_data=str(data), measure=settings, threads=1)
    result = run_one(job, timeout_s=600)
    if result.status != "ok":
        raise SystemExit(f"edgebench worker failed: {result.error}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, str(model), str(data), str(iters), "200"],
                         capture_output=True, text=True, check=True, env=env)
    return result.latency_ms["p50"], json.loads(out.stdout)["p50_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-run", action="store_true", help="reuse an existing default run for (b)")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where runs/ and reports/ go")
    parser.add_argument("--iters", type=int, default=5000)
    args = parser.parse_args()

    if not args.skip_run:
        print(f"before: {machine_line()}")
        wall, stages = time_default_run(args.workdir)
        print(f"(a) default run wall time: {wall:.1f} s  (target <= 90 s); stage seconds: {stages}")
        print(f"after:  {machine_line()}")
    db = args.workdir / "runs/default/results.db"
    if db.is_file():
        print(f"    store: {store_figures(db)}")

    artifacts = sorted((args.workdir / "runs/default/artifacts").glob("*.onnx"), key=lambda p: -p.stat().st_size)
    data = next((args.workdir / "runs/default/data").glob("test-*.npz"), None)
    if not artifacts or data is None:
        raise SystemExit("no default run found: run without --skip-run first")
    model = artifacts[0]  # the largest ONNX file: the fp32 baseline
    print(f"(b) before: {machine_line()}")
    edge, bare = harness_overhead(model, data, args.iters)
    print(f"(b) ONNX Runtime p50, 1 thread, {args.iters} iterations, {model.name} ({machine_line()} after):")
    print(f"    edgebench harness {edge * 1e3:.2f} us, bare session.run loop {bare * 1e3:.2f} us, "
          f"ratio {edge / bare:.3f}  (target <= 1.03)")


if __name__ == "__main__":
    main()
