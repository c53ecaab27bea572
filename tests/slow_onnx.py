"""A constructed slowdown: an ONNX model with busy work added to every inference, calibrated to a fraction.

The busy work (``Sin`` over a vector of ``length`` copies of the input's mean) feeds the output through a
multiplication by zero, so the outputs are unchanged and no optimiser can drop it. Its cost is a fixed part
(six more nodes to dispatch: ~4-5 us, 15-20 % of a 25 us digits model) plus a part linear in ``length``, so a
fraction smaller than the fixed part cannot be added to the bare model: :func:`slowed_pair` gives both sides the
fixed part (a baseline with a short vector) and chooses the candidate's length from measured ONNX Runtime times,
so the candidate is ``fraction`` slower than that baseline. Used by the compare tests and by
``scripts/bench_regression_detection.py``, which put such models in place of a stored run's artifacts with
:func:`copy_run`.
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

#: the baseline's busy vector in :func:`slowed_pair` (the fixed part's cost, next to nothing of the linear one)
SHORT = 16
#: alternations of the two models whose median ratio a calibration step uses, each side timed this long
ALTERNATIONS = 7
SIDE_S = 0.05


def with_busy_work(src: Path, dst: Path, length: int) -> Path:
    """``src`` with busy work over ``length`` floats added to every inference, written to ``dst``."""
    model = onnx.load(str(src))
    graph = model.graph
    x, y = graph.input[0].name, graph.output[0].name
    for node in graph.node:
        node.output[:] = ["busy_pre" if o == y else o for o in node.output]
    graph.initializer.extend([
        numpy_helper.from_array(np.array([length], dtype=np.int64), "busy_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "busy_zero"),
    ])  # fmt: skip
    graph.node.extend([
        helper.make_node("ReduceMean", [x], ["busy_mean"], keepdims=0),
        helper.make_node("Expand", ["busy_mean", "busy_shape"], ["busy_vector"]),
        helper.make_node("Sin", ["busy_vector"], ["busy_sin"]),
        helper.make_node("ReduceSum", ["busy_sin"], ["busy_sum"], keepdims=0),
        helper.make_node("Mul", ["busy_sum", "busy_zero"], ["busy_nothing"]),
        helper.make_node("Add", ["busy_pre", "busy_nothing"], [y]),
    ])  # fmt: skip
    onnx.save(model, str(dst))
    return dst


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _p50_ms(session: ort.InferenceSession, x: np.ndarray) -> float:
    """p50 over ``SIDE_S`` seconds (at least 50 inferences) after a few warm-up ones."""
    name = session.get_inputs()[0].name
    for _ in range(5):
        session.run(None, {name: x})
    times: list[float] = []
    end = time.perf_counter() + SIDE_S
    while len(times) < 50 or time.perf_counter() < end:
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def ratio(reference: Path, other: Path, x: np.ndarray) -> float:
    """p50 of ``other`` over p50 of ``reference``: the median over ``ALTERNATIONS`` back-to-back pairs, so the
    machine's changes of speed (seconds apart on a shared VM) hit both sides of a pair alike."""
    a, b = _session(reference), _session(other)
    return float(np.median([_p50_ms(b, x) / _p50_ms(a, x) for _ in range(ALTERNATIONS)]))


def _calibrated(reference: Path, src: Path, dst: Path, fraction: float, x: np.ndarray, start: int) -> float:
    """Write ``dst`` = ``src`` with the busy length that makes it ``fraction`` slower than ``reference`` (at
    least ``start`` floats); return the slowdown measured (interleaved with the reference)."""
    probe = max(4 * start, 4096)
    base = ratio(reference, with_busy_work(src, dst, start), x) - 1
    per_float = max((ratio(reference, with_busy_work(src, dst, probe), x) - 1 - base) / (probe - start), 1e-9)
    tried: dict[int, float] = {}
    for _ in range(3):  # a line through two probes, then secant steps from where it landed
        length = max(start, round(start + (fraction - base) / per_float))
        tried[length] = ratio(reference, with_busy_work(src, dst, length), x) - 1
        if length > start and tried[length] > base:
            per_float = (tried[length] - base) / (length - start)
    best = min(tried, key=lambda n: abs(tried[n] - fraction))  # a speed change can mislead the last step
    with_busy_work(src, dst, best)
    return tried[best]


def slowed(src: Path, dst: Path, fraction: float, x: np.ndarray) -> tuple[Path, float]:
    """``src`` made about ``fraction`` slower per inference by busy work, written to ``dst``; and the slowdown
    measured here (never less than the busy work's fixed part: see the module docstring)."""
    return dst, _calibrated(src, src, dst, fraction, x, 1)


def slowed_pair(src: Path, base_dst: Path, slow_dst: Path, fraction: float, x: np.ndarray) -> float:
    """``base_dst``: ``src`` with the busy work's fixed part; ``slow_dst``: with enough more busy work to be
    ``fraction`` slower than ``base_dst``. Returns the slowdown measured (interleaved)."""
    with_busy_work(src, base_dst, SHORT)
    return _calibrated(base_dst, src, slow_dst, fraction, x, SHORT)


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
