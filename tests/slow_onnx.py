"""A constructed slowdown: an ONNX model with busy work added to every inference, calibrated to a fraction.

The busy work (a chain of ``Sin`` over a small vector started from the input's mean) feeds the output
through a multiplication by zero, so the outputs are unchanged and no optimiser can drop it; its length is
chosen from measured ONNX Runtime times so each inference takes about ``fraction`` longer. Used by the
compare tests and by ``scripts/bench_regression_detection.py``, which put such a model in place of a stored
run's artifact with :func:`copy_run`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from edgebench.job import Job, JobResult
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord

VECTOR = 64


def with_busy_work(src: Path, dst: Path, steps: int) -> Path:
    """``src`` with ``steps`` busy operations added to every inference, written to ``dst``."""
    model = onnx.load(str(src))
    graph = model.graph
    x, y = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.output[:] = ["busy_pre" if o == y else o for o in node.output]
    graph.initializer.extend([
        numpy_helper.from_array(np.array([VECTOR], dtype=np.int64), "busy_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "busy_zero"),
    ])  # fmt: skip
    nodes = [helper.make_node("ReduceMean", [x], ["busy_mean"], keepdims=0),
             helper.make_node("Expand", ["busy_mean", "busy_shape"], ["busy_0"])]
    nodes += [helper.make_node("Sin", [f"busy_{i}"], [f"busy_{i + 1}"]) for i in range(steps)]
    nodes += [helper.make_node("ReduceSum", [f"busy_{steps}"], ["busy_sum"], keepdims=0),
              helper.make_node("Mul", ["busy_sum", "busy_zero"], ["busy_nothing"]),
              helper.make_node("Add", ["busy_pre", "busy_nothing"], [y])]
    graph.node.extend(nodes)
    onnx.save(model, str(dst))
    return dst


def p50_ms(path: Path, x: np.ndarray, iters: int = 300) -> float:
    """p50 of ONNX Runtime (one thread) on ``x``."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(30):
        session.run(None, {name: x})
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def slowed(src: Path, dst: Path, fraction: float, x: np.ndarray) -> tuple[Path, float]:
    """``src`` made about ``fraction`` slower per inference by busy work, written to ``dst``; and the slowdown
    measured here (the busy work's fixed cost is fitted, so the step count is a line through two probes)."""
    base = p50_ms(src, x)
    short, long = 1, 200
    t_short, t_long = p50_ms(with_busy_work(src, dst, short), x), p50_ms(with_busy_work(src, dst, long), x)
    per_step = max((t_long - t_short) / (long - short), 1e-9)
    steps = max(1, round(short + (base * (1 + fraction) - t_short) / per_step))
    with_busy_work(src, dst, steps)
    return dst, p50_ms(dst, x) / p50_ms(src, x) - 1


def copy_run(store: Store, run_id: str, tag: str, artifacts: dict[str, Path]) -> str:
    """A new run holding ``run_id``'s results, its stored jobs reading ``artifacts`` (by job key) instead."""
    info = store.get_run(run_id)
    new = store.start_run(info["name"], info["experiment"], "copy-" + info["experiment_hash"], info["machine"], (tag,))
    rows = store.measurements(run_id)
    for _, row in rows[rows["status"] == "ok"].iterrows():
        job = Job.model_validate(row["details"]["job"])
        if row["job_key"] in artifacts:
            job = job.model_copy(update={"artifact": str(artifacts[row["job_key"]])})
        result = JobResult(job_id=row["job_key"], status="ok", accuracy=row["accuracy"], n_eval=row["n_eval"],
                           latency_ms={"p50": row["p50_ms"], "p99": row["p99_ms"]},
                           throughput_ips=row["throughput_ips"], peak_rss_mb=row["peak_rss_mb"],
                           samples_ns=store.samples(int(row["id"])).tolist())
        store.add_measurement(MeasurementRecord(new, row["job_key"], row["variant_id"], row["target"], row["backend"],
                                                result, row["settings"], int(row["size_bytes"]), job=job))
    store.finish_run(new)
    return new
