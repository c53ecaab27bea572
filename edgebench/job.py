"""The job/result contract between the planner, a measurement worker and the store (a leaf: it imports no other
edgebench module but the leaf ``order_statistics``, so ``measure/``, ``executor/`` and ``store/`` all read it without
reaching into each other).

Jobs and results are plain JSON so the same worker runs locally in a subprocess or on a remote device over
SSH, where an older or newer edgebench may run: see :class:`JobResult` for how its JSON keeps its shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from edgebench.order_statistics import CONFIDENCE, runs_for_an_interval


class MeasureSettings(BaseModel):
    """How long and how to time (MLPerf LoadGen / trtexec style rules)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    scenario: Literal["single_stream", "offline"] = Field("single_stream", description="single_stream: one image a call "
        "(latency); offline: batches of batch_size (throughput)")
    batch_size: int = Field(1, ge=1, description="offline scenario batch size (single_stream times one image a "
                            "call: a batch over 1 needs scenario: offline)")
    warmup_iters: int = Field(10, ge=0, description="untimed calls before the window")
    min_iters: int = Field(50, ge=1, description="the floor's count: no window has fewer samples "
                           "unless a cap (max_time_s, max_iters) ends it first, which the run then says")
    min_time_s: float = Field(0.1, ge=0, le=1e6, description="the floor's duration: no window is shorter "
                              "unless a cap (max_iters, max_time_s) ends it first")
    max_iters: int = Field(100_000, ge=1, description="the cap's count")
    # at most 10^6 s (11 days): 1e300 s had passed the file's checks and failed every job converting it to ns
    max_time_s: float = Field(10.0, gt=0, le=1e6, description="the cap: a window that never reaches the precision "
                              "ends here")
    precision: float | None = Field(
        0.01, gt=0, lt=1, description="after the floor, time until the 95 % confidence interval of each of "
        "precision_percentiles lies within this fraction of it; null: a fixed window (the floor alone)")
    precision_percentiles: list[Literal["p50", "p90", "p99"]] = Field(
        default_factory=lambda: ["p50"], min_length=1, description="the percentiles the precision rule bounds")
    confidence: float = Field(CONFIDENCE, gt=0, lt=1, description="confidence level of the reported percentile intervals")
    accuracy_samples: int | None = Field(None, ge=1, description="test images used for accuracy, drawn at random (seed 0) with "
                                              "each class in its share (None = all)")
    reference_samples: int = Field(16, ge=1, description="inputs compared against the fp32 PyTorch outputs")
    profile_layers: bool = Field(False, description="record a per-layer profile in its own window after timing")
    profile_runs: int = Field(50, ge=1, description="inferences in the per-layer profiling window")
    parallel_lanes: bool = Field(
        False, description="single-thread measurements of a local target on every core at once, one pinned lane "
        "per core, after an interference check (refused, with the reason, when a busy neighbour moves the p50 by "
        "more than the precision)")
    predict_latency: bool = Field(
        False, description="predict each pruned fp32 variant's p50 from per-layer latency tables before it is "
        "measured, and store the prediction beside the measurement (local targets, runtimes that load ONNX)")

    @model_validator(mode="after")
    def _floor_under_cap(self) -> MeasureSettings:
        """A floor above its cap: an error when both were given; a floor given alone lengthens the cap (a 30 s
        energy window asks for no other field), a cap given alone wins."""
        for floor, cap in (("min_time_s", "max_time_s"), ("min_iters", "max_iters")):
            low, high = getattr(self, floor), getattr(self, cap)
            if low <= high:
                continue
            if {floor, cap} <= self.model_fields_set:
                raise ValueError(f"{floor} ({low:g}) exceeds {cap} ({high:g}): the window's floor must fit under its cap")
            if floor in self.model_fields_set:
                object.__setattr__(self, cap, low)
        if self.predict_latency and self.effective_batch_size != 1:  # the tables time one image a call
            raise ValueError(f"predict_latency predicts one image's p50 (the single_stream scenario), and this "
                             f"offline measurement times batches of {self.batch_size}: measure single_stream for the "
                             "prediction, or leave predict_latency off")
        if self.precision is not None:
            for name in self.precision_percentiles:
                needed = runs_for_an_interval(int(name[1:]) / 100, self.confidence)
                if self.max_iters < needed:
                    raise ValueError(f"max_iters ({self.max_iters}) is under the {needed} runs a {name} interval at "
                                     f"{self.confidence:.0%} confidence needs: raise max_iters or leave {name} out "
                                     "of precision_percentiles")
        return self

    @model_serializer(mode="wrap")
    def _omit_profiling_when_off(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # workers on devices may run an older edgebench whose MeasureSettings forbids unknown fields, and
        # experiment hashes must not change for runs that never asked for profiles: the profiling fields
        # exist in the JSON only when profiling is on
        data = handler(self)
        if not self.profile_layers:
            data.pop("profile_layers", None)
            data.pop("profile_runs", None)
        for flag in ("predict_latency", "parallel_lanes"):  # the same for the controller's own switches
            if not data.get(flag):
                data.pop(flag, None)
        return data

    @property
    def effective_batch_size(self) -> int:
        """The batch each timed inference runs: ``batch_size`` offline, always 1 single-stream."""
        return self.batch_size if self.scenario == "offline" else 1


def thread_env(threads: int) -> dict[str, str]:
    """Environment that caps the OpenMP/MKL pools of a worker at ``threads`` (set before the runtime loads)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class Job(BaseModel):
    """One (variant, target, settings) measurement."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    variant_id: str
    target: str
    backend: str
    artifact: str
    threads: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    backend_options: dict[str, Any] = Field(default_factory=dict)
    eval_data: str = Field(description="npz with float32 'x' (NCHW) and int 'y' of the test split")
    reference: str | None = Field(None, description="npz with 'logits' of the fp32 PyTorch model on x[:n]")
    measure: MeasureSettings = MeasureSettings()
    energy: dict[str, Any] | None = Field(None, description="energy meter spec; None = no meter")


class Placement(BaseModel):
    """Where a task ran: the executor, the machine (a Ray node's address, or the lane it waited for) and process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    executor: str = Field(description="local or ray")
    host: str
    node: str | None = Field(None, description="the Ray node id (short)")
    pid: int | None = None

    @property
    def machine(self) -> str:
        """Where, without the process: what jobs of one target share."""
        return " ".join([self.executor, self.host, *([f"node {self.node}"] if self.node else [])])

    def __str__(self) -> str:
        return self.machine + (f" pid {self.pid}" if self.pid is not None else "")


class EnergyWindow(BaseModel):
    """The window an energy reading covers (longer than the timed one when the meter updates slowly)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float
    inferences: int


class TimedWindow(BaseModel):
    """Why the timed window ended, and the precision it was asked for (``measurement.precision``)."""

    model_config = ConfigDict(extra="forbid")

    stopped: Literal["precision", "fixed_window", "max_time", "max_iters"]
    precision: float | None = Field(None, description="relative half-width asked of the percentiles' intervals")
    precision_met: bool | None = Field(None, description="whether the intervals were within the precision when the "
                                       "window ended (a max_time_s cap may end a window that met it); None: no rule")
    percentiles: list[str] = Field(default_factory=lambda: ["p50"])
    confidence: float = CONFIDENCE


class HostLane(BaseModel):
    """What the host-wide lane lock did for a measurement: how long it waited for another edgebench process's
    timed window, or why there was no lock (then other processes' windows may have overlapped this one)."""

    model_config = ConfigDict(extra="forbid")

    lock: Literal["held", "none"]
    waited_s: float | None = None
    why: str | None = None


class Contention(BaseModel):
    """CPU time other processes took on the measurement's cores during its timed window (``measure.contention``)."""

    model_config = ConfigDict(extra="forbid")

    other_cores: float = Field(description="others' CPU time over the window's length: cores they kept busy")
    other_cpu_s: float
    window_s: float
    cores: list[int] = Field(description="the cores counted: those the measuring process could run on")
    spare_cores: int = Field(0, description="cores of those the measurement left free (cores - its threads)")
    threshold: float = Field(description="other_cores beyond the spare cores above this flags the window")
    stalled_s: float | None = Field(None, description="time the window's calls took beyond twice their median "
                                    "(preemptions, to the nanosecond); None: stored before it was kept")
    flagged: bool = Field(description="contended: compare and history never call a change on it")


class SpeedProbe(BaseModel):
    """The machine's speed just before and just after the timed window: a fixed kernel's median time
    (``measure.speed_probe``), the slower the machine, the larger; and the window's own samples' drift."""

    model_config = ConfigDict(extra="forbid")

    before_us: float
    after_us: float
    tolerance: float = Field(description="probes further apart than this (relative) are different speeds")
    within: float | None = Field(
        None, description="the later over the earlier of the slowest and fastest medians of the window's own "
                          "consecutive segments of samples, less 1 (negative when the fastest came later): a change "
                          "of speed inside the window that the probes at its ends miss; None for too few samples")

    @property
    def level_us(self) -> float:
        """The machine's speed over the window (the mean of both probes)."""
        return (self.before_us + self.after_us) / 2

    @property
    def changed(self) -> float | None:
        """How much slower (or, negative, faster) the machine ran late in the window than early in it, when that
        is beyond the tolerance: by the probes around the window or, where they agree, by its own samples; None
        while it ran at one speed."""
        change = self.after_us / self.before_us - 1
        if self._apart(change):
            return change
        return self.within if self.within is not None and self._apart(self.within) else None

    @property
    def seen_by(self) -> str:
        """What showed the change: the probes around the window, or its own samples."""
        return "speed probe" if self._apart(self.after_us / self.before_us - 1) else "its own samples"

    def _apart(self, change: float) -> bool:
        """Whether two speeds ``change`` apart (later over earlier, less 1) differ beyond the tolerance either
        way: a window 20 % slower later and one 20 % slower earlier are both flagged."""
        ratio = 1 + change
        return ratio > 0 and max(ratio, 1 / ratio) - 1 > self.tolerance

    def slower_than(self, fastest_us: float) -> bool:
        """Whether the machine ran beyond the tolerance slower in this window than at the level ``fastest_us``."""
        return self.level_us > fastest_us * (1 + self.tolerance)


#: what a latency table entry times: a one-layer model's p50 (call and edges in it), or the layer's own time
ONE_LAYER_P50, OWN_TIME = "one-layer model's p50", "layer's own time"


class LatencyPrediction(BaseModel):
    """A variant's p50 predicted from per-layer latency tables before it was measured (set by the controller):
    the unpruned model's measured p50 times the ratio of the two models' table sums (NetAdapt's estimate), with
    the runtime's call overhead (where entries hold one) counted once per inference rather than once per table
    entry, and each sum holding what its layers pay when the model's weights outgrow the caches."""

    model_config = ConfigDict(extra="forbid")

    p50_ms: float = Field(description="the prediction: call_overhead_ms + (unpruned_p50_ms - call_overhead_ms) "
                                      "* table_ms / unpruned_table_ms")
    table_ms: float = Field(description="sum of the variant's conv/linear layers' table entries (one-layer p50s "
                                        "each less the call overhead and its edges; own times as they are), plus "
                                        "cache_ms")
    unpruned_table_ms: float = Field(description="the same sum for the unpruned model")
    unpruned_p50_ms: float = Field(description="the unpruned model's p50 measured on the target (calibration)")
    layers: int = Field(description="conv/linear layers summed")
    call_overhead_ms: float = Field(0.0, description="the runtime's cost of one call, counted once per inference: "
                                                     "the smallest one-layer model's p50, less its own time with "
                                                     "own-time entries (predictions stored before it was measured: 0)")
    weights_mib: float = Field(0.0, description="MiB of the variant's fp32 conv/linear weights (0: stored before)")
    cache_ms: float = Field(0.0, description="what its layers pay beyond their entries to read their weights from "
                                             "the cache level holding the whole model (in table_ms)")
    unpruned_cache_ms: float = Field(0.0, description="the same for the unpruned model")
    boundary_ms: float = Field(0.0, description="what the variant's one-layer models pay at their edges (layout "
                                                "conversions in and out), taken off its entries (0: stored before)")
    entries: str = Field(ONE_LAYER_P50, description="what a table entry times: a one-layer model's p50, "
                                                              "or the layer's own time by the runtime's counters")


#: typed fields of JobResult that travel, and are stored, inside ``details`` (the JSON shape of every version)
_IN_DETAILS = ("device", "timed_window_s", "timed_window", "window", "latency_ci_ms", "energy_window", "ran_on",
               "host_lane", "latency_prediction", "contention", "speed_probe", "unreachable")


class JobResult(BaseModel):
    """What a worker reports back; ``status='failed'`` carries the error text.

    ``details`` holds what the runtime's session says about itself (engine build time, FPGA synthesis);
    what edgebench itself records has typed fields. In JSON those typed fields sit inside ``details``, as
    they always have, so a controller and a device worker of different versions read each other's results
    and stored rows keep one shape.
    """

    # an output error of inf (logits that overflowed) crosses JSON (SSH workers) as Infinity, not as null
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    job_id: str
    status: Literal["ok", "failed"]
    error: str | None = None
    error_detail: str | None = Field(None, description="a failure's traceback or the worker's stderr tail")
    accuracy: float | None = None
    n_eval: int | None = None
    max_abs_diff: float | None = None
    load_ms: float | None = None
    first_inference_ms: float | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)
    latency_ci_ms: dict[str, tuple[float, float]] | None = Field(
        None, description="each percentile's order-statistic confidence interval (low, high) in ms at "
        "window.confidence; a percentile with too few samples for one is absent")
    throughput_ips: float | None = None
    samples_ns: list[int] = Field(default_factory=list)
    batch_size: int = 1
    peak_rss_mb: float | None = None
    energy_j_per_inference: float | None = None
    energy_source: str | None = None
    energy_note: str | None = None
    idle_power_w: float | None = None
    runtime: dict[str, str] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict, description="the session's target-specific facts")
    layer_profile: dict[str, Any] | None = Field(None, description="per-layer profile (LayerProfile.to_dict)")
    device: dict[str, Any] | None = Field(None, description="what sets the device's speed: CPU, governor, power mode")
    timed_window_s: float | None = Field(None, description="wall time of the timed loop")
    timed_window: tuple[float, float] | None = Field(None, description="the timed loop's span in UNIX seconds")
    window: TimedWindow | None = Field(None, description="why the timed loop ended, and the precision asked of it")
    energy_window: EnergyWindow | None = None
    ran_on: Placement | None = Field(None, description="where the executor ran the job (set by the controller)")
    host_lane: HostLane | None = Field(None, description="the host-wide lane lock (set by the controller)")
    contention: Contention | None = Field(None, description="other processes' CPU use during the timed window")
    speed_probe: SpeedProbe | None = Field(None, description="the machine's speed just before and after the window")
    unreachable: bool | None = Field(None, description="the device could not be reached or the connection dropped past "
                              "its retries (set by the controller): no result of the job, which a resumed run measures")
    latency_prediction: LatencyPrediction | None = Field(
        None, description="the p50 the latency tables predicted (set by the controller; measurement.predict_latency)")

    @model_validator(mode="before")
    @classmethod
    def _typed_fields_from_details(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("details"), dict):
            details = dict(data["details"])
            lifted = {key: details.pop(key) for key in _IN_DETAILS if key in details and data.get(key) is None}
            data = {**data, **lifted, "details": details}
        return data

    @model_serializer(mode="wrap")
    def _typed_fields_into_details(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # a controller running an older edgebench reads this JSON with extra="forbid": the typed fields go where
        # it reads them (details), and only a result that carries a profile has the field
        data = handler(self)
        for key in _IN_DETAILS:
            value = data.pop(key, None)
            if value is not None:
                data["details"] = {**data["details"], key: value}
        if self.layer_profile is None:
            data.pop("layer_profile", None)
        return data
