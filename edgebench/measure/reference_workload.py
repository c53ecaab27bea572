"""A fixed reference workload measured in every run: the machine's speed during that run.

A small CNN (three 3x3 convolutions, global pooling, a dense layer; weights from a fixed seed) is built
from code as ONNX, so every edgebench of the same ``VERSION`` times the same bytes, and measured with ONNX
Runtime on one thread at the start of every run. Its throughput is the run's machine-speed index (stored
in the run's ``machine.speed``): ``edgebench compare`` says when the machine itself was slower during one
side ("the machine was 8 % slower"), instead of leaving it to be read as a slowdown of every variant.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.cache_files import replacing
from edgebench.errors import one_line
from edgebench.job import Job, JobResult, MeasureSettings

#: changes whenever the workload does: indices of different versions are not compared
VERSION = 1
NAME = f"edgebench-reference-v{VERSION}"
_SHAPE = (1, 3, 32, 32)
#: long enough for a p50 within about 1 % on a quiet machine; short next to a run
SETTINGS = MeasureSettings(warmup_iters=50, min_iters=300, min_time_s=1.0, max_time_s=5.0)


def _model_bytes() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights, nodes, previous, channels = [], [], "x", 3
    for i, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2))):
        w = (rng.standard_normal((width, channels, 3, 3)) / np.sqrt(9 * channels)).astype(np.float32)
        weights += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        previous, channels = f"r{i}", width
    dense = (rng.standard_normal((channels, 10)) / np.sqrt(channels)).astype(np.float32)
    weights.append(numpy_helper.from_array(dense, "dense"))
    nodes += [helper.make_node("GlobalAveragePool", [previous], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"]),
              helper.make_node("MatMul", ["flat", "dense"], ["logits"])]
    graph = helper.make_graph(nodes, NAME, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(_SHAPE))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgebench")
    model.ir_version = 8
    return model.SerializeToString()


def reference_job(directory: Path) -> Job:
    """The reference workload's measurement job, its files under ``directory`` written again (atomically) whenever
    they are not what this code makes: a file truncated by a crash or a full disk would fail every later run."""
    folder = directory / NAME
    model, data = folder / "model.onnx", folder / "data.npz"
    wanted = _model_bytes()
    if not _holds(model, wanted):
        with replacing(model) as tmp:
            tmp.write_bytes(wanted)
    x = np.random.default_rng(1).standard_normal((4, *_SHAPE[1:])).astype(np.float32)
    if not _holds_inputs(data, x):
        with replacing(data) as tmp:
            np.savez(tmp, x=x, y=np.zeros(len(x), dtype=np.int64))
    return Job(job_id="machine-speed", variant_id=NAME, target="local-cpu", backend="onnxruntime",
               artifact=str(model), eval_data=str(data), threads=1, measure=SETTINGS)


def _holds(path: Path, content: bytes) -> bool:
    try:
        return path.read_bytes() == content
    except OSError:
        return False


def _holds_inputs(path: Path, x: np.ndarray) -> bool:
    """Whether the .npz at ``path`` holds inputs ``x`` (compared by value: an .npz's bytes carry its write time)."""
    try:
        with np.load(path) as npz:
            return np.array_equal(npz["x"], x) and "y" in npz
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False


def speed_record(result: JobResult) -> dict[str, Any] | None:
    """What a run stores as its machine speed: the workload, its p50 and the index (inferences per second)."""
    p50 = result.latency_ms.get("p50") if result.status == "ok" else None
    if not p50:
        return None
    contention = result.contention.model_dump() if result.contention is not None else None
    return {"workload": NAME, "p50_ms": p50, "index": 1e3 / p50, "contention": contention,
            "measured_at": result.timed_window[0] if result.timed_window else None}


def speed_failure(result: JobResult) -> str:
    """The one line a run logs when the reference could not be measured, its error whole: a failure's stored error
    is cut to :data:`~edgebench.errors.SUMMARY_CHARS` ("... (re-export it (one in a run's artifact cache: dele …"),
    and its traceback ends with the whole message."""
    error = result.error or "no latency"
    kind, detail = error.split(":", 1)[0], result.error_detail or ""
    if error.endswith(" …") and (at := detail.rfind(f"{kind}: ")) >= 0:
        error = one_line(detail[at:])
    return f"the machine-speed reference could not be measured, so this run stores no machine speed: {error}"
