"""A variant's p50 predicted from the per-layer latency tables before it is measured (issue 22, part 4).

The tables the ``latency`` allocation searches on (``table.py``) are a latency model: a model's conv/linear layers
looked up and summed, calibrated as NetAdapt's search calibrates it: the unpruned model's p50 measured on the
target, times the ratio of the two models' sums. What an entry holds depends on the runtime:

- OpenVINO: the layer's *own time*, what its nodes take by the CPU plugin's counters in a one-layer model, without
  the call or the layout conversions at that model's edges (``own_time_timer``); the call (the smallest one-layer
  model's p50 less its own time) is counted once per inference.
- Other runtimes (ONNX Runtime): one call of a one-layer model. Its call overhead (``call_overhead_ms``, the
  smallest possible layer timed the same way) is taken off every entry before the sums and counted once per
  inference instead, or a 16-layer model pruned hard would keep 16 calls' worth of overhead in its prediction
  (VGG-16 pruned 75 % on OpenVINO: 3.6x its p50 that way, 2.5x with it, in one run); what the one-layer model pays
  at its edges (its input and output converted to and from the runtime's layout on every call, :mod:`boundary`) is
  taken off each entry too.

A layer inside a model reads its weights from the cache level that holds the whole model, slower than its entry
did if the model outgrows the level that holds the layer alone: that extra time (:mod:`cache`) is added to each
sum. The prediction never reads the variant's own measurement; the pipeline stores it beside that measurement
(``measurement.predict_latency``), so every run reports how far the model is off.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgebench.cache_files import replacing
from edgebench.errors import ConfigError, first_line
from edgebench.job import ONE_LAYER_P50, OWN_TIME, LatencyPrediction
from edgebench.prune.allocation.latency.boundary import CHAIN_COPIES, BoundaryCosts
from edgebench.prune.allocation.latency.cache import CacheCosts, weights_mib
from edgebench.prune.allocation.latency.search import Estimator, layer_shapes
from edgebench.prune.allocation.latency.table import (
    MODEL_TIMING,
    LatencyTable,
    LayerShape,
    backend_layer_timer,
    default_table_path,
    onnx_p50_ms,
    own_time_timer,
    table_context,
)
from edgebench.runtimes.base import BACKENDS, BackendSettings, get_backend
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.targets import TargetSpec, get_target
from edgebench.variants import spec_hash

log = logging.getLogger(__name__)


#: the smallest layer there is (one channel, 1x1, at 1x1): its table entry is the runtime's cost of one call
CALL_OVERHEAD_SHAPE = LayerShape("Conv", 1, 1)


#: the format the tables' one-layer models and the measured candidates are written in
ONNX = "onnx"


def onnx_backend(target: str | TargetSpec, backend: str | None) -> tuple[TargetSpec, str]:
    """The target (a name, a YAML path or the target itself) and backend to measure latency tables on here: a
    local target and one of its backends that loads ONNX (default: the first). ConfigError naming the problem
    and what to do."""
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    if spec.kind != "local":
        raise ConfigError(f"target '{target}' runs over SSH, and latency tables are measured on the machine that "
                          "builds the variants; name a local target with the same runtime (e.g. local-cpu for "
                          "onnxruntime on this CPU) or run edgebench on the device itself")
    loads_onnx = [b for b in spec.backends if ONNX in BACKENDS.get(b).formats]
    if backend is None:
        if not loads_onnx:
            raise ConfigError(f"target '{target}' has no backend that loads ONNX ({', '.join(spec.backends)}); "
                              "name a target with onnxruntime or openvino")
        backend = loads_onnx[0]
    elif backend not in loads_onnx:
        raise ConfigError(f"backend '{backend}' is not a backend of target '{target}' that loads ONNX "
                          f"({', '.join(loads_onnx) or 'none'})")
    reason = get_backend(backend).available()
    if reason:
        raise ConfigError(f"backend '{backend}' of target '{target}' cannot run here: {reason}")
    return spec, backend


class CalibratedTables:
    """The tables calibrated on one unpruned model: its sum worked out once, then any model of layer shapes
    predicted as ``c + (unpruned_p50_ms - c) * S / S_unpruned`` with ``c = call_overhead_ms`` and ``S`` the sum over
    the layers of ``max(entry - c - edges, 0)`` (``entries_hold_call`` False: entries that hold no call, own times,
    lose no ``c``; ``edges``: with ``boundary``, what the layer's one-layer model pays at its edges), plus, with
    ``cache``, what they pay for the model's weight size (the entries are measured now when the tables lack them).
    The latency allocation asks for hundreds of candidates per narrowing step, so the unpruned sum is not redone."""

    def __init__(self, unpruned: list[LayerShape], table: LatencyTable, unpruned_p50_ms: float,
                 call_overhead_ms: float = 0.0, cache: CacheCosts | None = None,
                 boundary: BoundaryCosts | None = None, entries_hold_call: bool = True) -> None:
        self.table, self.cache, self.boundary = table, cache, boundary
        self.entry_call_ms = call_overhead_ms if entries_hold_call else 0.0
        self.unpruned_p50_ms = unpruned_p50_ms
        self.overhead_ms = min(call_overhead_ms, unpruned_p50_ms)
        self.unpruned_cache_ms = self._cache_ms(unpruned)
        self.unpruned_table_ms = self._layers_ms(unpruned) + self.unpruned_cache_ms

    def _edges_ms(self, shape: LayerShape) -> float:
        return self.boundary.layer_ms(shape) if self.boundary is not None else 0.0

    def _cache_ms(self, layers: list[LayerShape]) -> float:
        return self.cache.excess_ms(layers) if self.cache is not None else 0.0

    def _layers_ms(self, layers: list[LayerShape]) -> float:
        return sum(max(self.table.latency(shape) - self.entry_call_ms - self._edges_ms(shape), 0.0) for shape in layers)

    def _scaled(self, table_ms: float) -> float:
        if self.unpruned_table_ms <= 0:
            return self.unpruned_p50_ms
        return self.overhead_ms + (self.unpruned_p50_ms - self.overhead_ms) * table_ms / self.unpruned_table_ms

    def p50_ms(self, shapes: list[LayerShape]) -> float:
        """The predicted p50 alone: what the latency allocation searches on (an ``Estimator``)."""
        return self._scaled(self._layers_ms(shapes) + self._cache_ms(shapes))

    def predict(self, shapes: list[LayerShape]) -> LatencyPrediction:
        """The prediction with the figures behind it."""
        cache_ms = self._cache_ms(shapes)
        table_ms = self._layers_ms(shapes) + cache_ms
        return LatencyPrediction(p50_ms=self._scaled(table_ms), table_ms=table_ms,
                                 unpruned_table_ms=self.unpruned_table_ms, unpruned_p50_ms=self.unpruned_p50_ms,
                                 layers=len(shapes), call_overhead_ms=self.overhead_ms,
                                 weights_mib=weights_mib(shapes), cache_ms=cache_ms,
                                 unpruned_cache_ms=self.unpruned_cache_ms,
                                 boundary_ms=sum(self._edges_ms(shape) for shape in shapes))


class TargetLatencyModel:
    """The latency model of one local target's ONNX runtime: its table and the unpruned model's measured p50,
    both kept under ``directory`` (the run's ``<workdir>/latency``, shared with the latency allocation).

    On a runtime with per-node counters (OpenVINO: ``own_time_timer``) an entry is the layer's own time, with no call
    or edges to take off; otherwise it is a one-layer model's p50, with both taken off. Either way the call is
    counted once per inference."""

    def __init__(self, target: str | TargetSpec, backend: str, directory: Path) -> None:
        spec, self.backend = onnx_backend(target, backend)
        self.target = spec.name
        self.settings = BackendSettings(threads=spec.threads, device=spec.device,
                                        options=spec.backend_options.get(self.backend, {}))
        self.directory = directory
        self.context = table_context(self.backend, self.settings)
        version = json.dumps(self.context, sort_keys=True)
        # one-layer p50s: ONNX Runtime's entries, and on OpenVINO the smallest layer's call (its ``c``)
        self.walls = LatencyTable(default_table_path(self.target, self.backend, directory), self.target, self.backend,
                                  version, backend_layer_timer(self.backend, self.settings))
        own_time = own_time_timer(self.backend, self.settings)
        self.chains: LatencyTable | None = None
        if own_time is not None:
            self.entries = OWN_TIME
            self.table = LatencyTable(default_table_path(self.target, f"{self.backend}-own", directory), self.target,
                                      f"{self.backend} (layers' own time)", version, own_time)
        else:
            self.entries, self.table = ONE_LAYER_P50, self.walls
            self.chains = LatencyTable(default_table_path(self.target, f"{self.backend}-chain", directory),
                                       self.target, f"{self.backend} (chains of {CHAIN_COPIES} layers)", version,
                                       backend_layer_timer(self.backend, self.settings, copies=CHAIN_COPIES))

    @property
    def own_time(self) -> bool:
        """Whether the entries are the layers' own times (no call or edges in them)."""
        return self.entries == OWN_TIME

    @property
    def call_overhead_ms(self) -> float:
        """``c``, the runtime's cost of one call, counted once per inference: the smallest one-layer model's p50
        (less that layer's own time where entries are own times), measured the first time."""
        call = self.walls.latency(CALL_OVERHEAD_SHAPE)
        return max(call - self.table.latency(CALL_OVERHEAD_SHAPE), 0.0) if self.own_time else call

    @property
    def entry_call_ms(self) -> float:
        """What each entry holds of the call: ``c``, or none in own-time entries."""
        return 0.0 if self.own_time else self.call_overhead_ms

    def boundary(self) -> BoundaryCosts | None:
        """What one-layer models pay at their edges (None for own-time entries, which hold none)."""
        return None if self.chains is None else BoundaryCosts(self.table, self.chains, self.call_overhead_ms)

    def cache(self) -> CacheCosts:
        """What layers pay for the model's weight size beyond their entries."""
        return CacheCosts(self.table, self.entry_call_ms)

    def unpruned_p50_ms(self, unpruned: nn.Module, example: torch.Tensor) -> float:
        """The unpruned model's p50 on the target (median of 3 windows), measured once and kept."""
        shapes = sorted((name, shape.key) for name, shape in layer_shapes(unpruned, example).items())
        key = spec_hash([shapes, list(example.shape), self.target, self.backend, self.context])
        path = self.directory / f"unpruned-{key}.json"
        if path.is_file():
            try:
                return float(json.loads(path.read_text())["p50_ms"])
            except (ValueError, KeyError, TypeError) as exc:  # a cache: measured again, then replaced
                log.warning("latency cache %s is damaged (%s: %s); measuring the unpruned model again", path,
                            type(exc).__name__, first_line(exc))
        with tempfile.TemporaryDirectory() as tmp:
            onnx = Path(tmp) / "unpruned.onnx"
            export_fp32_onnx(unpruned.eval(), example, onnx)
            p50 = float(np.median([onnx_p50_ms(onnx, self.backend, self.settings, example.numpy(), MODEL_TIMING)
                                   for _ in range(3)]))
        with replacing(path) as tmp_path:
            tmp_path.write_text(json.dumps({"p50_ms": p50, "target": self.target, "backend": self.backend}))
        return p50

    def predict_shapes(self, shapes: list[LayerShape], unpruned: list[LayerShape], unpruned_p50_ms: float,
                       cache: bool = True, edges: bool = True) -> LatencyPrediction:
        """The prediction for a model of layers ``shapes`` calibrated on ``unpruned``'s (``cache``/``edges``
        False: without the cache term / without taking the edges off, as the benchmark compares)."""
        prediction = self.calibrated(unpruned, unpruned_p50_ms, cache, edges).predict(shapes)
        return prediction.model_copy(update={"entries": self.entries})

    def calibrated(self, unpruned: list[LayerShape], unpruned_p50_ms: float, cache: bool = True,
                   edges: bool = True) -> CalibratedTables:
        """This target's tables calibrated on ``unpruned``'s measured p50 (``cache``/``edges`` as in
        :meth:`predict_shapes`)."""
        return CalibratedTables(unpruned, self.table, unpruned_p50_ms, self.call_overhead_ms,
                                self.cache() if cache else None, self.boundary() if edges else None,
                                entries_hold_call=not self.own_time)

    def estimator(self, unpruned: list[LayerShape], unpruned_p50_ms: float) -> Estimator:
        """The predicted p50 of any model of layer shapes, calibrated on ``unpruned``'s measured p50: what the
        latency allocation searches on."""
        return self.calibrated(unpruned, unpruned_p50_ms).p50_ms

    def predict(self, model: nn.Module, unpruned: nn.Module, example: torch.Tensor) -> LatencyPrediction:
        """``model``'s p50 on the target predicted from the table, calibrated on ``unpruned``."""
        example = example[:1]
        calibration = self.unpruned_p50_ms(unpruned, example)
        prediction = self.predict_shapes(list(layer_shapes(model, example).values()),
                                         list(layer_shapes(unpruned, example).values()), calibration)
        self.save()
        log.info("latency model on %s/%s: predicted p50 %.4f ms (%d layers, %.1f MiB of weights, %.4f ms for them "
                 "beyond the layers' own caches, %.4f ms of one-layer models' edges left out; entries: %s, %d "
                 "measured now)", self.target, self.backend, prediction.p50_ms, prediction.layers,
                 prediction.weights_mib, prediction.cache_ms, prediction.boundary_ms, self.entries, self.measured)
        return prediction

    @property
    def measured(self) -> int:
        """Entries this model measured (the others were in its tables' files)."""
        return sum(table.measured for table in self._tables())

    def save(self) -> None:
        """Keep the tables' entries for the next prediction."""
        for table in self._tables():
            table.save()

    def _tables(self) -> list[LatencyTable]:
        return [self.walls, self.chains] if self.chains is not None else [self.table, self.walls]


#: the form of the model (and of its stored prediction): a workdir's predictions made by another form are made again
MODEL_FORM = 3


def prediction_path(workdir: Path, variant_id: str, target: str, backend: str) -> Path:
    """Where the sweep keeps a variant's prediction for one target and backend until its measurement is stored."""
    return workdir / "latency" / f"predictions-v{MODEL_FORM}" / f"{variant_id}--{target}--{backend}.json"


def read_prediction(path: Path) -> LatencyPrediction | None:
    """The prediction stored at ``path``, or None (logged) when the file cannot be read as one: a damaged file
    costs its measurement the prediction, never the measurement."""
    try:
        return LatencyPrediction.model_validate_json(path.read_text())
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning("latency prediction %s is unreadable (%s): its measurement is stored without a prediction",
                    path, str(exc).splitlines()[0])
        return None
