"""``edgebench compare BASE CAND --remeasure``: both sides' stored artifacts timed again, interleaved.

Two runs measured minutes or days apart differ by more than most regressions worth catching on a shared
machine, and slow drift (another tenant, the machine's thermal state) moves whole runs. So, as asv's
``continuous`` does, the stored jobs of both sides are measured again in one session, alternately: each
round measures every matched result's baseline and candidate back to back (which goes first alternates),
each in a fresh process forked from a clean worker. The decision is a paired test on the per-round
differences (``significance.decide_rounds``), so drift shared by a pair cancels; a round in which another
process disturbed either side (``measure.contention``) or the machine's speed changed (``measure.speed_probe``) is
left out of the timing decisions. Size and accuracy come from the stored runs. A result is re-measured when both
sides stored the job they ran and its files are still there; any other is compared on its stored runs, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import ConfigError
from edgebench.executor.base import Task
from edgebench.executor.local import LocalExecutor
from edgebench.executor.runners import Runner, runner_for
from edgebench.executor.tasks import job_result, measure_task
from edgebench.job import Job, JobResult
from edgebench.store import Store
from edgebench.store.compare import (
    Comparison,
    MatchedResult,
    MetricChange,
    as_metered,
    compare_runs,
    fixed_changes,
    matched_result,
    metric_change,
    one_sided,
)
from edgebench.store.compare_match import Side, match_runs, refuse_shared_runs, tag_of_several_runs
from edgebench.store.metrics import (
    DEFAULT_ROUNDS,
    RUN_METRICS,
    TIMING_METRICS,
    context_label,
    get_metric,
    with_default_min_effects,
)
from edgebench.store.significance import Decision, decide_rounds, p50_se_floor
from edgebench.targets import get_target

#: per-round value of each metric decided on the rounds
_FROM_RESULT: dict[str, Callable[[JobResult], float | None]] = {
    "latency": lambda r: r.latency_ms.get("p50"),
    "p99": lambda r: r.latency_ms.get("p99"),
    "throughput": lambda r: r.throughput_ips,
    "energy": lambda r: r.energy_j_per_inference,
    "memory": lambda r: r.peak_rss_mb,
}

#: a disturbed round is measured again until a result has its rounds undisturbed or this many times its rounds
MAX_ROUNDS_FACTOR = 3

#: progress callback: (done, total, what)
RoundsProgress = Callable[[int, int, str], None]


@dataclass
class _Pair:
    """One matched result: the jobs both sides ran, and what their rounds measured."""

    base: Side
    cand: Side
    jobs: tuple[Job, Job]
    #: the runner of each side's target (its file found as the run found it)
    runners: tuple[Runner, Runner]
    #: per side, each round's result (None: that round's measurement failed)
    measured: dict[str, list[JobResult | None]] = field(default_factory=dict)
    #: why rounds failed, "side: error", in the order they did
    errors: list[str] = field(default_factory=list)


def stored_job(side: Side) -> tuple[Job | None, str]:
    """The job the side's latest run stored for this result, or why it cannot run again here."""
    row = side.rows[-1]
    raw = (row.get("details") or {}).get("job")
    if raw is None:
        return None, "its run stored no job (measured before edgebench kept them)"
    job = Job.model_validate(raw)
    missing = [p for p in (job.artifact, job.eval_data, job.reference) if p and not Path(p).exists()]
    if missing:
        return None, f"{missing[0]} is gone (re-measuring needs the run directory of both sides)"
    return job, ""


def _target_files(store: Store, run_id: str) -> dict[str, str]:
    """Target name -> the path the run's experiment named it by, for targets given as a YAML file's path (a name
    alone is looked up in the target directories again)."""
    selections = (store.get_run(run_id).get("experiment") or {}).get("targets") or []
    names = [s.get("name", "") if isinstance(s, dict) else str(s) for s in selections]
    return {Path(n).stem: n for n in names if n.endswith((".yaml", ".yml"))}


def _runner(job: Job, files: Mapping[str, str], found: dict[str, tuple[Runner | None, str]]) -> tuple[Runner | None, str]:
    """The runner of ``job``'s target, or why its target cannot be found or measured here (a board's Ray resource:
    this machine would be measured under the board's name). ``found`` keeps each target's answer for the other
    results: whether a board is reachable is an SSH connection, up to its connect timeout for a dead one."""
    name = files.get(job.target, job.target)
    if name not in found:
        found[name] = _find_runner(job.target, name)
    return found[name]


def _find_runner(target: str, name: str) -> tuple[Runner | None, str]:
    try:
        runner = runner_for(get_target(name))
    except ConfigError:
        return None, (f"its target {target} is not found here: pass the directory of its YAML file with "
                      "--targets-dir (or set EDGEBENCH_TARGETS_DIR)")
    if reason := runner.available():
        return None, f"its target {target} cannot be measured here: {reason}"
    return runner, ""


def remeasure_runs(
    store: Store,
    baseline: str,
    candidate: str,
    rounds: int = DEFAULT_ROUNDS,
    min_time_s: float | None = None,
    min_effect: Mapping[str, float] | None = None,
    alpha: float = 0.01,
    progress: RoundsProgress | None = None,
    stored_rule: Mapping[str, Any] | None = None,
    max_rounds: int | None = None,
) -> Comparison:
    """Measure the stored jobs of ``baseline`` and ``candidate`` (run ids or tags) again, ``rounds`` times each,
    interleaved, and compare them on the paired rounds (``min_time_s`` overrides each job's timed window). A
    disturbed round is measured again, up to ``max_rounds`` rounds in all (default: ``MAX_ROUNDS_FACTOR`` x rounds).

    A result that cannot be measured again here (no stored job, its files gone) is compared on the stored runs
    instead, with ``compare_runs`` and ``stored_rule`` (its ``repeats``, ``allowance``, ``lookback``), and says so.
    """
    if min_time_s is not None and not 0 <= min_time_s < math.inf:  # else every round fails
        raise ConfigError(f"remeasure: min_time_s={min_time_s}: give a finite number of seconds >= 0")
    effects = with_default_min_effects(min_effect)
    base_id, cand_id = store.resolve_run(baseline), store.resolve_run(candidate)
    refuse_shared_runs([base_id], [cand_id], baseline, candidate)  # before any round is measured
    matching = match_runs(store, [base_id], [cand_id])
    hint = "its stored files are the ones measured again"
    matching.warnings += [*tag_of_several_runs(store, baseline, base_id, hint),
                          *tag_of_several_runs(store, candidate, cand_id, hint)]
    pairs: list[_Pair] = []
    stored_only: dict[tuple[str, str], str] = {}
    files = (_target_files(store, base_id), _target_files(store, cand_id))
    found: dict[str, tuple[Runner | None, str]] = {}
    for _, base, cand in matching.pairs:
        (base_job, why_base), (cand_job, why_cand) = stored_job(base), stored_job(cand)
        (base_runner, no_base), (cand_runner, no_cand) = ((_runner(job, f, found) if job else (None, ""))
                                                          for job, f in zip((base_job, cand_job), files, strict=True))
        if base_runner is None or cand_runner is None:
            row = cand.rows[-1]
            context = context_label(row["target"], row["backend"], row["threads"])
            stored_only[(str(row["variant_id"]), context)] = (
                f"{'baseline' if base_runner is None else 'candidate'} {why_base or no_base or why_cand or no_cand}")
            continue
        assert base_job is not None and cand_job is not None  # a runner only for a stored job
        if min_time_s is not None:
            base_job, cand_job = (j.model_copy(update={"measure": j.measure.model_copy(
                update={"min_time_s": min_time_s})}) for j in (base_job, cand_job))
        pairs.append(_Pair(base, cand, (base_job, cand_job), (base_runner, cand_runner)))
    max_rounds = max(rounds, max_rounds or MAX_ROUNDS_FACTOR * rounds)
    _run_rounds(pairs, rounds, max_rounds, progress)
    # nothing to decide on: say why, and decide on the stored runs (left as "missing" evidence, the gate passed
    # without a word)
    failed = [p for p in pairs if len(_complete(p)) < 2 and p.errors]
    pairs = [p for p in pairs if all(p is not f for f in failed)]  # by identity: a pair's rows are Series
    for pair in failed:
        row = pair.cand.rows[-1]
        stored_only[(str(row["variant_id"]), context_label(row["target"], row["backend"], row["threads"]))] = (
            f"{len(pair.errors)} of its re-measurements failed here: {pair.errors[0]}")
    results = [_with_failures(matched_result(p.base, p.cand, _changes(p, effects, alpha)), p) for p in pairs]
    method = (f"{len(pairs)} result(s) re-measured here from both sides' stored artifacts in {rounds} interleaved "
              f"rounds (each a fresh process, the order alternating; a round disturbed by other processes or a change "
              f"of the machine's speed measured again, up to {max_rounds} rounds); measured metrics decided by a "
              f"paired t-test on the per-round log ratios at alpha={alpha:g} plus a minimum effect; size and accuracy "
              f"from the stored runs")
    if stored_only:
        stored = compare_runs(store, baseline, candidate, effects, alpha, **(stored_rule or {}))
        for result in stored.results:
            why = stored_only.get((result.variant_id, result.context))
            if why is not None:
                result.warnings.append(f"not re-measured ({why}): decided on the stored runs")
                results.append(result)
        method = (f"{method}; " if pairs else "") + (f"{len(stored_only)} result(s) that could not be re-measured: "
                                                      f"{stored.method}")
    return Comparison(matching.baseline_run["id"], matching.candidate_run["id"], results, matching.unmatched,
                      matching.warnings, effects, alpha, method=method, missing=matching.missing)


def _with_failures(result: MatchedResult, pair: _Pair) -> MatchedResult:
    """``result``, saying how many of its re-measurements failed (left out of the paired rounds) and the first
    error."""
    if pair.errors:
        result.warnings.append(f"{len(pair.errors)} of its re-measurements failed here and their rounds are left out: "
                               f"{pair.errors[0]}")
    return result


def _task(job: Job, runner: Runner, key: str) -> Task:
    """A measurement of ``job`` on its target (locally, or on its board through the target's runner)."""
    job = job.model_copy(update={"job_id": key})
    files = [Path(p) for p in (job.artifact, job.eval_data, job.reference) if p]
    return measure_task(job, runner.task_timeout(), lane=runner.lane(), resources=runner.resources(),
                        fn=runner.run, args=(job, files))


def _run_rounds(pairs: list[_Pair], rounds: int, max_rounds: int, progress: RoundsProgress | None) -> None:
    """Every round measures each pair's two sides back to back, the first of them alternating; a round that other
    processes or a change of the machine's speed disturbed is measured again, up to ``max_rounds`` in all. How
    many rounds a pair gets depends on disturbances only, never on what its rounds measured, so the paired test
    keeps its error rate."""
    for pair in pairs:
        pair.measured = {"base": [], "cand": []}
    done = 0
    with LocalExecutor() as executor:
        while True:
            tasks: list[Task] = []
            owner: dict[str, tuple[_Pair, str, int]] = {}
            for i, pair in enumerate(pairs):
                start = len(pair.measured["base"])
                missing = max(0, min(_disturbed_rounds(pair) + rounds - start, max_rounds - start))
                for r in range(start, start + missing):
                    for side in (("base", "cand") if (r + i) % 2 == 0 else ("cand", "base")):
                        key = f"round{r}:{i}:{side}"
                        tasks.append(_task(pair.jobs[0 if side == "base" else 1], pair.runners[0 if side == "base" else 1], key))
                        owner[key] = (pair, side, r)
                for side in ("base", "cand"):
                    pair.measured[side] += [None] * missing
            if not tasks:
                return
            total = done + len(tasks)
            for result in executor.run(tasks):
                pair, side, r = owner[result.key]
                measured = job_result(result)
                pair.measured[side][r] = measured if measured.status == "ok" else None
                if measured.status != "ok":
                    pair.errors.append(f"{'baseline' if side == 'base' else 'candidate'}: {measured.error}")
                done += 1
                if progress is not None:
                    progress(done, total, f"{pair.cand.rows[-1]['label']} ({side})")


def _disturbed_rounds(pair: _Pair) -> int:
    """How many of ``pair``'s complete rounds were disturbed (a failed round is not measured again)."""
    return len(_complete(pair)) - len(_calm(pair))


def _complete(pair: _Pair) -> list[tuple[JobResult, JobResult]]:
    """The rounds of ``pair`` both of whose measurements succeeded."""
    return [(b, c) for b, c in zip(pair.measured["base"], pair.measured["cand"]) if b is not None and c is not None]


def _calm(pair: _Pair) -> list[tuple[JobResult, JobResult]]:
    """The complete rounds of ``pair`` that nothing disturbed (timing metrics are decided on these only)."""
    return [(b, c) for b, c in _complete(pair) if not _disturbed(b, c)]


def _changes(pair: _Pair, effects: Mapping[str, float], alpha: float) -> list[MetricChange]:
    """Per-metric decisions on the complete rounds of one pair, then size and accuracy from the stored runs."""
    complete, calm = _complete(pair), _calm(pair)
    changes = []
    for metric in RUN_METRICS:
        rounds = calm if metric in TIMING_METRICS else complete
        measured = any(_FROM_RESULT[metric](b) is not None and _FROM_RESULT[metric](c) is not None for b, c in complete)
        if len(rounds) < 2 <= len(complete) and measured:  # a figure never measured (energy here) is not "contended"
            # its size is kept: the gate warns where it is past a threshold, so a busy runner cannot pass a 4x
            # slowdown without a word. It is the paired estimate decide_rounds makes on calm rounds, the mean
            # per-round log ratio, which equals the candidate's geometric mean over the baseline's on these
            # rounds, the two figures shown beside it. The median round's ratio is not: a preemption inside one
            # round's 0.1 s window moved that side's p99 17x, and a p99 shown going 0.796 -> 1.709 ms read -31.8 %
            both = [(float(x), float(y)) for x, y in ((_FROM_RESULT[metric](b), _FROM_RESULT[metric](c))
                                                      for b, c in complete) if x and y]
            ratio = float(np.exp(np.mean([np.log(y / x) for x, y in both]))) if both else None
            decision = Decision("undecided", ratio, None, None, None, "contended",
                                f"not decided: other processes or a change of the machine's speed disturbed "
                                f"{len(complete) - len(calm)} of {len(complete)} rounds")
            changes.append(metric_change(metric, [x for x, _ in both], [y for _, y in both], decision, effects[metric]))
            continue
        base = [_FROM_RESULT[metric](b) for b, _ in rounds]
        cand = [_FROM_RESULT[metric](c) for _, c in rounds]
        both = [(b, c) for b, c in zip(base, cand) if b is not None and c is not None]
        a, b = [float(x) for x, _ in both], [float(y) for _, y in both]
        # rounds never agree better than their own p50 intervals allow
        floor = p50_se_floor(np.asarray(r.samples_ns) for pair_ in rounds for r in pair_) if metric == "latency" else 0.0
        decision = decide_rounds(a, b, higher_is_better=get_metric(metric).direction == "max",
                                 min_effect=effects[metric] / 100, alpha=alpha, sigma_floor=floor)
        change = metric_change(metric, a, b, decision, effects[metric], _round_spread_pct(a, b))
        changes.append(as_metered(change, pair.base, pair.cand, effects["energy"]) if metric == "energy" else change)
    return one_sided(changes + fixed_changes(pair.base, pair.cand, effects), pair.base, pair.cand)


def _disturbed(base: JobResult, cand: JobResult) -> bool:
    """Whether another process took either side's cores, or the machine's speed changed within the round
    (across either window, or between the two: ``measure.speed_probe``)."""
    if any(r.contention is not None and r.contention.flagged for r in (base, cand)):
        return True
    probes = [r.speed_probe for r in (base, cand) if r.speed_probe is not None]
    if any(p.changed is not None for p in probes):
        return True
    return len(probes) == 2 and any(p.slower_than(min(q.level_us for q in probes)) for p in probes)


def _round_spread_pct(base: list[float], cand: list[float]) -> float | None:
    """The spread of one round's value (percent): the per-round log ratios' sd over sqrt(2)."""
    if len(base) < 2 or min(base + cand) <= 0:
        return None
    return 100 * float(np.expm1(np.std(np.log(np.divide(cand, base)), ddof=1) / np.sqrt(2)))
