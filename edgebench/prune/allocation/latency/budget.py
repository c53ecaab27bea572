"""The ``latency`` allocation: every layer's width chosen to meet a latency budget on a target's runtime.

The search itself (per-layer latency tables, the NetAdapt-style greedy corrected by measurements) lives in
``table.py`` and ``search.py`` beside this module; this module makes it a registered per-layer allocation of
the pipeline: options checked when the experiment loads, tables and decisions cached under the run's workdir,
a ramp for the schedules that prune in steps, and a record of what was measured kept with the variant.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgebench.cache_files import replacing
from edgebench.errors import ConfigError
from edgebench.prune.allocation.base import ALLOCATIONS, Allocation, AllocationRecord
from edgebench.prune.allocation.latency.predict import MODEL_FORM, TargetLatencyModel, onnx_backend
from edgebench.prune.allocation.latency.search import (
    Estimator,
    ModelLayer,
    allocate_for_latency,
    estimate_ms,
    macs_at,
    model_layers,
    original_widths,
    prune_to_keep,
    width_units,
)
from edgebench.prune.allocation.latency.table import (
    MODEL_TIMING,
    LatencyTable,
    channel_multiple,
    default_table_path,
    onnx_p50_ms,
    table_context,
)
from edgebench.prune.criteria import ScoringData
from edgebench.prune.criteria.magnitude import L1Norm
from edgebench.prune.groups import GroupScores
from edgebench.runtimes.base import BackendSettings
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.variants import PruneSpec, spec_hash

log = logging.getLogger(__name__)

class PairedTimer:
    """Times pruned copies of a model on a backend, each right after the unpruned model.

    On a shared machine the load moves between one minute and the next, so a p50 alone drifts; a candidate's p50
    divided by the unpruned model's measured alongside it does not, and is what the budget is checked with.
    """

    def __init__(self, model: nn.Module, example: torch.Tensor, backend: str, settings: BackendSettings,
                 tmp: Path) -> None:
        self.model, self.example, self.backend, self.settings, self.tmp = model, example, backend, settings, tmp
        self.unpruned = tmp / "unpruned.onnx"
        export_fp32_onnx(model.eval(), example, self.unpruned)

    def _p50(self, path: Path) -> float:
        return onnx_p50_ms(path, self.backend, self.settings, self.example.numpy(), MODEL_TIMING)

    def unpruned_ms(self) -> float:
        """p50 of the unpruned model now."""
        return self._p50(self.unpruned)

    def pairs(self, keep: dict[str, int], n: int) -> list[tuple[float, float]]:
        """``n`` times (candidate p50, unpruned p50 right after it) for the model pruned to ``keep``."""
        pruned = copy.deepcopy(self.model)
        prune_to_keep(pruned, L1Norm(), keep, self.example)  # which filters go does not change the time
        path = self.tmp / "candidate.onnx"
        export_fp32_onnx(pruned, self.example, path)
        return [(self._p50(path), self.unpruned_ms()) for _ in range(n)]


class LatencyRecord(AllocationRecord):
    """What the latency allocation decided and measured: kept with the variant (and as a decision file under
    ``<workdir>/latency``), and read back by ``edgebench run`` to list the budgets that were missed."""

    target: str
    backend: str
    context: dict[str, Any]
    budget_ms: float
    budget_from: str
    unpruned_p50_ms: float
    #: median over the final pairs of (pruned p50 / unpruned p50 measured right after it)
    latency_ratio: float
    p50_ms: float
    met: bool
    final_pairs_ms: list[tuple[float, float]]
    estimated_ms: float
    #: what the latency model's table entries held (``job.OWN_TIME`` / ``ONE_LAYER_P50``; None in records made
    #: before the allocation searched on the latency model)
    entries: str | None = None
    channel_multiple: int
    keep: dict[str, int]
    original: dict[str, int]
    conv_linear_macs_kept: float
    rounds: list[dict[str, float]]
    why_not: str | None = None
    table_entries_measured: int = 0

    def summary(self) -> str | None:
        """A line when the budget was missed: what was measured against what was asked, and why."""
        if self.met:
            return None
        return (f"latency budget missed: {self.p50_ms:.4f} ms > {self.budget_ms:.4f} ms on {self.target}/"
                f"{self.backend} (widths {self.keep}): {self.why_not}")


@ALLOCATIONS.register("latency")
class LatencyBudget(Allocation):
    """Per-layer widths that meet a latency budget on a target while keeping the most MACs (NetAdapt-style).

    The budget is ``budget_ms`` when given; otherwise ``(1 - ratio)`` times the measured p50 of the unpruned
    model, so for this allocation the experiment's ``pruning.ratios`` are *fractions of latency removed* (0.5:
    the pruned model should run in half the time), not fractions of filters. Everything is measured on
    ``target``'s runtime on this machine: the target's latency model (``TargetLatencyModel``, the one that
    predicts a variant's p50 in a run: per-layer tables, the call counted once, calibrated on the unpruned
    model), the unpruned model, and the pruned candidates whose measured/estimated ratio corrects the search.
    Each candidate is timed right after the unpruned model and scaled to the unpruned p50 measured first
    (median of 3), so a change of load during the search (the machine may be shared) does not move the answer.
    The tables and the decision are kept under ``<workdir>/latency`` keyed by target, backend, runtime version,
    settings and CPU, so a re-run reuses them. The decision depends only on the architecture: every criterion and
    schedule with the same allocation and ratio gets the same per-layer widths, and the criterion chooses only
    which filters go.

    Ramped schedules (while_training, iterative): the final widths are decided before the first step, on the
    unpruned model; the step at ratio ``r`` (``r = ratio * k / n`` for step ``k`` of ``n``) takes every group the
    fraction ``r / ratio`` of the way from its original width to its final one, linearly in channels. Only the
    last step's model is held to the budget.

    Widths move in the channel multiple the table shows the runtime rewards on the widest conv (e.g. ONNX
    Runtime's blocks of 8 or 16 channels, depending on the CPU's vector width; 1 when no multiple pays), and in
    ``pruning.round_to`` when set.

    Args:
        target: local target file name to measure on; a remote (SSH) target is refused, as its tables would
            have to be measured on the device.
        backend: one of the target's backends that loads ONNX (default: its first).
        budget_ms: p50 budget in ms (then every ratio builds the same widths); default ``(1 - ratio)`` times
            the unpruned model's measured p50.
        rounds: pruned candidates measured to correct the latency model's estimate.
        min_channels: fewest channels a group keeps.
    """

    timed = True
    ratio_of = "latency"
    record_type = LatencyRecord

    def __init__(self, target: str = "local-cpu", backend: str | None = None, budget_ms: float | None = None,
                 rounds: int = 3, min_channels: int = 4) -> None:
        if budget_ms is not None and not budget_ms > 0:
            raise ConfigError(f"budget_ms must be a positive number of milliseconds, got {budget_ms}")
        if rounds < 1 or min_channels < 1:
            raise ConfigError(f"rounds and min_channels must be at least 1, got {rounds} and {min_channels}")
        self.spec, self.backend = onnx_backend(target, backend)
        spec, self.target = self.spec, self.spec.name
        self.settings = BackendSettings(threads=spec.threads, device=spec.device,
                                        options=spec.backend_options.get(self.backend, {}))
        self.budget_ms, self.rounds, self.min_channels = budget_ms, rounds, min_channels
        self.final_ratio: float | None = None
        self.round_to: int | None = None
        self.directory = default_table_path(self.target, self.backend).parent  # the tables' and decisions' folder
        self.keep: dict[str, int] | None = None
        self._record: LatencyRecord | None = None
        self._model: nn.Module | None = None
        self._example: torch.Tensor | None = None

    def begin(self, spec: PruneSpec, workdir: Path | None = None) -> None:
        self.final_ratio, self.round_to = spec.ratio, spec.round_to
        if workdir is not None:
            self.directory = workdir / "latency"

    def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
        self._model, self._example = model, example_input[:1]
        if self.final_ratio is not None:  # in a schedule: decide on the model as it is before the first step
            self._decide()

    def release(self) -> None:
        self._model, self._example = None, None

    def record(self) -> LatencyRecord | None:
        return self._record

    def ratios(self, groups: Sequence[GroupScores], ratio: float) -> dict[str, float]:
        if self.final_ratio is None:  # prune_model called outside a schedule: this ratio is the final one
            self.final_ratio = ratio
        keep = self._decide()
        fraction = min(1.0, ratio / self.final_ratio)
        ratios = {}
        for g in groups:
            final = keep.get(g.root, g.original)
            ratios[g.root] = 1 - round(g.original - (g.original - final) * fraction) / g.original
        return ratios

    # ---- the decision ------------------------------------------------------------------------------------------
    def _decide(self) -> dict[str, int]:
        """Final widths per group, read from the decision file or measured and written there."""
        if self.keep is not None:
            return self.keep
        if self._model is None or self._example is None:
            raise RuntimeError("latency allocation: prepare() must run before the ratios are asked for")
        layers = model_layers(self._model, self._example)
        context = table_context(self.backend, self.settings)
        budget = {"budget_ms": self.budget_ms} if self.budget_ms is not None else {"ratio": self.final_ratio}
        key = spec_hash([[(la.name, la.shape.key, la.out_group, la.in_group, la.in_per_channel) for la in layers],
                         list(self._example.shape), self.target, self.backend, context, budget,
                         self.rounds, self.min_channels, self.round_to, MODEL_FORM])
        path = self.directory / f"allocation-{key}.json"
        if path.is_file():
            self._record = LatencyRecord.model_validate_json(path.read_text())
            log.info("latency allocation: widths decided earlier (%s)", path)
        else:
            self._record = self._measure_and_allocate(self._model, self._example, layers, context)
            with replacing(path) as tmp:
                tmp.write_text(self._record.model_dump_json(indent=1))
        self.keep = self._record.keep
        return self.keep

    def _measure_and_allocate(self, model: nn.Module, example: torch.Tensor, layers: list[ModelLayer],
                              context: dict[str, Any]) -> LatencyRecord:
        ratio = self.final_ratio or 0.0  # set by begin() or the first ratios() call before anything is decided
        latency_model = TargetLatencyModel(self.spec, self.backend, self.directory)
        with tempfile.TemporaryDirectory() as tmp:
            timer = PairedTimer(model, example, self.backend, self.settings, Path(tmp))
            unpruned_ms = float(np.median([timer.unpruned_ms() for _ in range(3)]))
            budget_ms = self.budget_ms if self.budget_ms is not None else (1 - ratio) * unpruned_ms
            estimate = latency_model.estimator([layer.shape for layer in layers], unpruned_ms)

            def measure(keep: dict[str, int]) -> float:
                """The candidate's p50 at the load ``unpruned_ms`` was measured under."""
                ((candidate, alongside),) = timer.pairs(keep, 1)
                return candidate / alongside * unpruned_ms

            original = original_widths(layers)
            step, floor = self._step(layers, latency_model.table), max(self.min_channels, self.round_to or 1)
            result = allocate_for_latency(layers, estimate, budget_ms, step=step, floor=floor, measure=measure,
                                          rounds=self.rounds)
            final = timer.pairs(result.keep, 3)  # the chosen widths again, as the figures kept with the variant
        latency_ratio = float(np.median([c / u for c, u in final]))
        p50_ms = latency_ratio * unpruned_ms
        met = p50_ms <= budget_ms
        why_not = None if met else self._why_not(layers, estimate, original, floor, budget_ms, p50_ms)
        record = LatencyRecord(
            allocation="latency", target=self.target, backend=self.backend, context=context, budget_ms=budget_ms,
            budget_from="budget_ms" if self.budget_ms is not None else f"(1 - {ratio}) x unpruned p50",
            unpruned_p50_ms=unpruned_ms, latency_ratio=latency_ratio, p50_ms=p50_ms, met=met, final_pairs_ms=final,
            estimated_ms=result.estimated_ms, entries=latency_model.entries, channel_multiple=step, keep=result.keep,
            original=original, conv_linear_macs_kept=result.macs / macs_at(layers, original), rounds=result.rounds,
            why_not=why_not, table_entries_measured=latency_model.measured)
        if not met:
            log.warning("latency allocation on %s/%s: budget %.4f ms not met (%.4f ms measured): %s", self.target,
                        self.backend, budget_ms, p50_ms, why_not)
        latency_model.save()
        log.info("latency allocation on %s/%s: budget %.4f ms, unpruned %.4f ms, pruned %.4f ms (x%.3f), widths %s",
                 self.target, self.backend, budget_ms, unpruned_ms, p50_ms, latency_ratio, result.keep)
        return record

    def _step(self, layers: list[ModelLayer], table: LatencyTable) -> int:
        """The channel multiple widths move in: the runtime's (read on the widest prunable conv) and round_to."""
        # a grouped conv takes only widths its groups divide: the blocking is read on ungrouped ones
        convs = [la for la in layers if la.shape.op == "Conv" and la.out_group is not None and la.shape.groups == 1]
        step = 1
        if convs:  # the widest conv shows the runtime's channel blocking best (narrow ones leave few widths)
            widest = max(convs, key=lambda la: (la.shape.c_out, la.shape.macs))
            step = channel_multiple(table, widest.shape, span=min(32, widest.shape.c_out))
        return math.lcm(step, self.round_to or 1)

    def _why_not(self, layers: list[ModelLayer], estimate: Estimator, original: dict[str, int], floor: int,
                 budget_ms: float, measured_ms: float) -> str:
        """One line: the budget is beyond what pruning can reach, or the search's measurements missed it."""
        units = width_units(layers)  # a grouped conv's group keeps a multiple of its groups
        narrowest = estimate_ms(layers, {g: min(-(-floor // units[g]) * units[g], w) for g, w in original.items()},
                                estimate)
        if narrowest > budget_ms:
            return (f"out of reach: with every group at {floor} channels the latency model estimates "
                    f"{narrowest:.4f} ms, the rest is fixed cost (unpruned layers, per-operator overhead); lower the "
                    f"ratio or raise budget_ms")
        return (f"{self.rounds} measured rounds ended at {measured_ms:.4f} ms: the latency model misjudges this "
                f"model on {self.backend}, or the machine's load changed while measuring; raise rounds or measure "
                f"on a quieter machine")
