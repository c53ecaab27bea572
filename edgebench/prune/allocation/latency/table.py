"""Per-layer latency lookup tables (NetAdapt-style), measured on one target's runtime and cached.

A layer is described by its shape (:class:`LayerShape`: op, channels in/out, kernel, stride, input
size, groups). Its latency at any channel count is measured once, as a one-layer ONNX model (the
conv with its ReLU, as runtimes fuse them) timed by edgebench's harness on the target's backend,
and stored in a JSON file per target and runtime; a different runtime version starts a new table.
A model's latency is then estimated as the sum of its layers' entries plus a constant overhead
calibrated against one measurement of the whole model.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.cache_files import replacing
from edgebench.errors import first_line
from edgebench.job import MeasureSettings
from edgebench.measure.harness import time_session
from edgebench.measure.machine import cpu_model
from edgebench.runtimes.base import BackendSettings, get_backend, load_session

log = logging.getLogger(__name__)

#: short timing window per table entry: one small layer takes tens of microseconds. 100 warm-up calls, not 10:
#: OpenVINO's first calls in a session run slow for longer (a 16->16 3x3 conv at 32x32 timed in 16 fresh sessions
#: of a new process: 0.20-0.23 ms with 100, 0.21-0.34 ms with 10; ONNX Runtime the same either way)
LUT_TIMING = MeasureSettings(warmup_iters=100, min_iters=50, min_time_s=0.02, max_time_s=2.0, precision=None)
#: sessions per table entry, the median kept: the same OpenVINO layer measured in three rounds of fresh sessions
#: came out up to 2.1x apart between rounds
LUT_SESSIONS = 3
#: timing window of a whole model (the unpruned one, and each pruned candidate of the latency allocation)
MODEL_TIMING = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=0.2, max_time_s=10.0, precision=None)


@dataclass(frozen=True)
class LayerShape:
    """What a conv/linear layer's latency depends on."""

    op: str  # "Conv" or "Gemm"
    c_in: int
    c_out: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    in_hw: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def key(self) -> str:
        """Stable text key of the table entry (the fields as JSON; ``asdict``'s deep copy made this the search's
        hot spot: a greedy step looks up hundreds of entries)."""
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True, separators=(",", ":"))

    def with_channels(self, c_in: int, c_out: int) -> LayerShape:
        """The same layer with other channel counts (a depthwise conv keeps groups == channels)."""
        groups = c_in if self.groups > 1 and self.groups == self.c_in else self.groups
        return replace(self, c_in=c_in, c_out=c_out, groups=groups)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output spatial size."""
        return tuple((s + 2 * p - k) // st + 1 for s, p, k, st in  # type: ignore[return-value]
                     zip(self.in_hw, self.padding, self.kernel, self.stride))

    @property
    def weight_bytes(self) -> int:
        """Bytes of its fp32 weights and bias (what one inference reads of this layer's parameters)."""
        if self.op == "Gemm":
            return 4 * (self.c_in + 1) * self.c_out
        return 4 * self.c_out * (self.c_in // self.groups * self.kernel[0] * self.kernel[1] + 1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample."""
        if self.op == "Gemm":
            return self.c_in * self.c_out
        h, w = self.out_hw
        return self.c_out * (self.c_in // self.groups) * self.kernel[0] * self.kernel[1] * h * w


def layer_onnx(shape: LayerShape, path: Path, seed: int = 0, copies: int = 1) -> None:
    """Write a one-layer ONNX model of ``shape`` (Conv + Relu, or Gemm) with random weights; with ``copies`` > 1, a
    chain of that many such conv layers (``shape`` must keep its tensor's shape: c_in == c_out, same size out)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    if shape.op == "Gemm":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, shape.c_in])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shape.c_out])
        w = numpy_helper.from_array(rng.standard_normal((shape.c_out, shape.c_in)).astype(np.float32), "w")
        b = numpy_helper.from_array(np.zeros(shape.c_out, np.float32), "b")
        nodes, weights = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [w, b]
    else:
        if copies > 1 and (shape.c_in != shape.c_out or shape.out_hw != shape.in_hw):
            raise ValueError(f"a chain of {copies} layers needs a layer that keeps its tensor's shape, not {shape}")
        h, w_ = shape.out_hw
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, shape.c_in, *shape.in_hw])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shape.c_out, h, w_])
        nodes, weights, tensor = [], [], "x"
        for i in range(copies):
            weight = rng.standard_normal((shape.c_out, shape.c_in // shape.groups, *shape.kernel)).astype(np.float32)
            weights += [numpy_helper.from_array(weight * 0.1, f"w{i}"),
                        numpy_helper.from_array(np.zeros(shape.c_out, np.float32), f"b{i}")]
            out = "y" if i == copies - 1 else f"r{i}"
            nodes += [helper.make_node("Conv", [tensor, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=list(shape.kernel),
                                       strides=list(shape.stride), pads=[*shape.padding, *shape.padding],
                                       group=shape.groups),
                      helper.make_node("Relu", [f"c{i}"], [out])]
            tensor = out
    graph = helper.make_graph(nodes, "layer", [x], [y], initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def layer_input(shape: LayerShape) -> np.ndarray:
    """A random batch of one for the one-layer model of ``shape``."""
    dims = (1, shape.c_in, *shape.in_hw) if shape.op == "Conv" else (1, shape.c_in)
    return np.random.default_rng(0).standard_normal(dims).astype(np.float32)


def onnx_p50_ms(path: Path, backend: str, settings: BackendSettings, batch: np.ndarray,
                timing: MeasureSettings) -> float:
    """p50 in ms of the ONNX model at ``path`` run on ``backend`` by edgebench's harness."""
    session = load_session(backend, get_backend(backend), path, settings)
    try:
        return float(np.median(time_session(session, batch, timing).samples_ns)) / 1e6
    finally:
        session.close()


def _layer_timer(time_file: Callable[[Path, np.ndarray], float], copies: int = 1) -> Callable[[LayerShape], float]:
    """A function timing ``shape``'s one-layer model (a chain of ``copies``: ``layer_onnx``) with ``time_file``:
    the median of ``LUT_SESSIONS`` sessions."""

    def measure(shape: LayerShape) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "layer.onnx"
            layer_onnx(shape, path, copies=copies)
            x = layer_input(shape)
            return float(np.median([time_file(path, x) for _ in range(LUT_SESSIONS)]))

    return measure


def backend_layer_timer(backend: str, settings: BackendSettings, copies: int = 1) -> Callable[[LayerShape], float]:
    """A function measuring one layer's p50 in ms on ``backend`` (an ONNX runtime) with ``settings`` (a chain of
    ``copies`` of it: ``layer_onnx``): the median of ``LUT_SESSIONS`` sessions' p50s."""
    return _layer_timer(lambda path, x: onnx_p50_ms(path, backend, settings, x, LUT_TIMING), copies)


def own_time_timer(backend: str, settings: BackendSettings) -> Callable[[LayerShape], float] | None:
    """A function measuring one layer's *own time* in ms on ``backend``: what its nodes take by the runtime's
    per-node counters, without the call and the layout conversions at the one-layer model's edges (median of
    ``LUT_SESSIONS`` sessions); None for a runtime whose tables time whole one-layer models.

    OpenVINO only: on an Intel guest its counters timed 55 of ResNet-56's 57 convs inside the model within 0.002 ms
    of the same conv alone (the stem, reading the model's planar input, 0.017 against 0.010 ms; one 1x1 shortcut
    0.006 against 0.003 ms). ONNX Runtime's profiler used the same way predicted ResNet-56's variants worse than its
    one-layer p50s in one run (MAPE 9.8 against 5.0 %), so its tables keep those."""
    if backend != "openvino":
        return None
    from edgebench.runtimes.openvino.profile import own_time_ms

    return _layer_timer(lambda path, x: own_time_ms(path, x, settings, LUT_TIMING.warmup_iters, LUT_TIMING.min_iters,
                                                    LUT_TIMING.min_time_s))


def runtime_version(backend: str) -> str:
    """Installed versions of the packages ``backend`` needs: a table is only valid for them."""
    from edgebench.components import Package

    found = [f"{c.dist} {c.found()}" for c in get_backend(backend).needs if isinstance(c, Package) and c.found()]
    return ", ".join(found) or "unknown"


#: how the backends call their runtime; tables timed by an earlier form start anew (2: OpenVINO shares its input and
#: output buffers instead of copying them, about 0.014 ms less per call)
CALL_FORM = 2


def table_context(backend: str, settings: BackendSettings) -> dict[str, Any]:
    """What a measured latency is only valid for: runtime versions, CPU, threads, device and options, and the
    backends' call form."""
    return {"runtime": runtime_version(backend), "cpu": cpu_model(), "threads": settings.threads,
            "device": settings.device, "options": settings.options, "call_form": CALL_FORM}


class LatencyTable:
    """Layer latencies (ms) on one target and runtime, measured on demand and kept in ``path``."""

    def __init__(self, path: Path | None, target: str, runtime: str, version: str,
                 measure: Callable[[LayerShape], float]) -> None:
        self.path, self._measure = path, measure
        self.header = {"target": target, "runtime": runtime, "version": version}
        self.entries: dict[str, float] = {}
        self.measured = 0
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                header, entries = data.get("header"), dict(data["entries"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # a cache: measured again, then replaced
                log.warning("latency table %s is damaged (%s: %s); measuring its entries again", path,
                            type(exc).__name__, first_line(exc))
                return
            if header == self.header:
                self.entries = entries
            else:
                log.info("latency table %s was measured for %s; starting a new one", path, header)

    def latency(self, shape: LayerShape) -> float:
        """p50 in ms of ``shape``, measured the first time it is asked for."""
        key = shape.key
        if key not in self.entries:
            self.entries[key] = self._measure(shape)
            self.measured += 1
        return self.entries[key]

    def save(self) -> None:
        """Write the table (atomically) when it has a path."""
        if self.path is None:
            return
        with replacing(self.path) as tmp:  # a temporary file of this process: runs beside it write the same table
            tmp.write_text(json.dumps({"header": self.header, "entries": self.entries}, indent=0))


def default_table_path(target: str, runtime: str, root: Path | None = None) -> Path:
    """Where the table of ``target``/``runtime`` is cached (``~/.cache/edgebench/lut`` by default)."""
    base = root or Path.home() / ".cache" / "edgebench" / "lut"
    return base / f"{target}--{runtime}.json"


def channel_multiple(table: LatencyTable, shape: LayerShape, span: int = 32,
                     candidates: tuple[int, ...] = (16, 8, 4, 2)) -> int:
    """The channel multiple this runtime rewards on ``shape``, read from its measured latencies.

    For each candidate ``m`` (largest first), the output widths in the top ``span`` channels that are not
    multiples of ``m`` are compared with the next multiple up. If latency fell with every channel, their
    ratio would be about ``c / ceil_m(c)``; a runtime computing ``m`` channels at a time gives ~1 (or more:
    ragged widths can take slower kernels). ``m`` matters when the median ratio is closer to 1 than to
    proportional: pruning to a width below a multiple then buys little or no time. 1 when none does.
    """
    top = shape.c_out
    widths = list(range(max(1, top - span + 1), top + 1))
    times = {c: table.latency(shape.with_channels(shape.c_in, c)) for c in widths}
    for m in candidates:
        pairs = [(c, -(-c // m) * m) for c in widths if c % m and -(-c // m) * m in times]
        if not pairs:
            continue
        measured = float(np.median([times[c] / times[up] for c, up in pairs]))
        proportional = float(np.median([c / up for c, up in pairs]))
        if measured >= proportional + 0.5 * (1.0 - proportional):
            return m
    return 1
