"""What ``edgebench compare`` compares: the results of two sides' runs paired by (variant label, target, backend,
settings), each pair's runs as a :class:`Side` (a side's runs of the variant id its newest run measured; the
lookback's earlier runs keyed by variant id), the baseline's results the candidate failed or lacks, and machine,
library, experiment and settings differences as warnings; whether a stored timed window was disturbed
(``disturbance``) and the runs left at one machine speed. Deciding whether a metric changed is
``store.compare``'s."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from edgebench.job import SpeedProbe
from edgebench.store.metrics import DEFAULT_LOOKBACK, RUN_METRICS, TIMING_METRICS, context_label, get_metric
from edgebench.store.schema import StoreError
from edgebench.store.store import Store
from edgebench.variants import comparable_settings

_MACHINE_KEYS = ("cpu_model", "cpu_cores_logical", "cpu_cores_physical", "hostname", "os", "governor", "power_mode")
#: what makes two runs "the same machine" for the lookback
_SAME_MACHINE = ("hostname", "cpu_model")
#: what makes two runs' timings comparable at all: the hardware they ran on (the hostname differs between CI runners
#: of one kind, and the OS, governor and libraries are context lines)
_HARDWARE = ("cpu_model", "cpu_cores_logical", "cpu_cores_physical")
#: the same for the device a measurement ran on (``measure.machine.device_context``)
_DEVICE_HARDWARE = ("cpu_model", "board", "nvpmodel", "jetson_clocks")


@dataclass
class MissingResult:
    """A result the baseline measured and the candidate did not: failed there (with its error), or not in the run."""

    label: str
    context: str
    reason: str
    failed: bool


def _settings_key(row: pd.Series) -> str:
    """A row's settings as text, those a later release added left out at their earlier value."""
    return json.dumps(comparable_settings(row["settings"] or {}), sort_keys=True, default=str)


def _key(row: pd.Series) -> tuple:
    """What pairs results across runs: the variant's label, so a variant rebuilt from changed inputs is compared
    with the one it replaces (``_keys`` adds the id where one run gives two variants one label)."""
    settings = _settings_key(row)
    return (row["label"], row["target"], row["backend"], settings)


def _keys(df: pd.DataFrame) -> list[tuple]:
    """``_key`` of each row, with the variant id added where one run measured two variants under one key."""
    keys = [_key(row) for _, row in df.iterrows()]
    ids: dict[tuple, set[str]] = {}
    for key, (_, row) in zip(keys, df.iterrows()):
        ids.setdefault((row["run_id"], *key), set()).add(row["variant_id"])
    return [(*key, row["variant_id"]) if len(ids[(row["run_id"], *key)]) > 1 else key
            for key, (_, row) in zip(keys, df.iterrows())]


def _history_key(row: pd.Series) -> tuple:
    """What makes an earlier run's figure part of a result's run-to-run spread: the same variant id (a changed
    model's earlier figures are another population)."""
    settings = _settings_key(row)
    return (row["variant_id"], row["target"], row["backend"], settings)


def _value(row: pd.Series, column: str) -> float | None:
    """The row's figure, None where it has none or a non-finite one (an inf p50 from an imported store is no
    measurement to compare)."""
    value = row.get(column)
    return None if value is None or pd.isna(value) or not math.isfinite(float(value)) else float(value)


def _column(metric: str) -> str:
    return get_metric(metric).column


@dataclass
class Side:
    """The runs of one side of a comparison for one result: their rows and raw samples, oldest first."""

    rows: list[pd.Series]
    samples: list[np.ndarray]

    def values(self, metric: str) -> list[float]:
        """The metric's value in each run that has one."""
        column = _column(metric)
        return [v for row in self.rows if (v := _value(row, column)) is not None]

    def undisturbed(self) -> Side:
        """The runs whose timed window nothing disturbed (``disturbance``)."""
        return self._kept([disturbance(row.get("details")) is None for row in self.rows])

    def _kept(self, keep: list[bool]) -> Side:
        return Side([r for r, k in zip(self.rows, keep) if k], [s for s, k in zip(self.samples, keep) if k])


def disturbance(details: Any, whose: str = "its") -> str | None:
    """Why a stored measurement's timed window cannot be decided on, or None: other processes' CPU use in it
    (``measure.contention``), or the machine's speed changing across it (``measure.speed_probe``); ``whose``
    names the window's owner in the sentence ("the baseline's")."""
    found = details.get("contention") if isinstance(details, dict) else None
    if found and found.get("flagged"):
        return f"other processes kept {found['other_cores']:.2f} cores busy during {whose} timed window"
    probe = _speed_probe(details)
    if probe is not None and probe.changed is not None:
        return f"the machine's speed changed during {whose} timed window ({probe.seen_by} {probe.changed:+.0%})"
    return None


def _speed_probe(details: Any) -> SpeedProbe | None:
    found = details.get("speed_probe") if isinstance(details, dict) else None
    return SpeedProbe.model_validate(found) if found else None


def at_one_speed(base: Side, cand: Side) -> tuple[Side, Side, str | None]:
    """Both sides without the runs the machine ran slower in than in the fastest of them (by their speed
    probes, beyond the tolerance; runs stored without a probe stay), and why a side was left with none."""
    probes = {id(row): p for row in base.rows + cand.rows if (p := _speed_probe(row.get("details")))}
    if not probes:
        return base, cand, None
    fastest = min(p.level_us for p in probes.values())

    def same(row: pd.Series) -> bool:
        return id(row) not in probes or not probes[id(row)].slower_than(fastest)

    kept = base._kept([same(r) for r in base.rows]), cand._kept([same(r) for r in cand.rows])
    for (name, side), left in zip((("baseline", base), ("candidate", cand)), kept):
        if not left.rows:
            slower = min(probes[id(r)].level_us for r in side.rows) / fastest - 1
            return base, cand, (f"the machine ran {slower:.0%} slower during the {name}'s timed window than during "
                                "the other side's (speed probe)")
    return kept[0], kept[1], None


def _dict_diff(what: str, a: Mapping[str, Any], b: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    keys = keys or tuple(sorted(set(a) | set(b)))
    return [f"{what} {k} differs: {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _flat_versions(machine: Mapping[str, Any]) -> dict[str, Any]:
    libs = machine.get("packages") or {}
    return dict(libs) if isinstance(libs, Mapping) else {}


@dataclass
class Matching:
    """Two sides' results paired by (variant label, target, backend, settings), and what could not be paired."""

    baseline_run: dict[str, Any]
    candidate_run: dict[str, Any]
    pairs: list[tuple[tuple, Side, Side]]
    unmatched: list[str]
    warnings: list[str]
    missing: list[MissingResult] = field(default_factory=list)
    #: how the hardware of the two sides' runs differs ("cpu_model 'A' vs 'B'"), "" where it is one kind
    other_hardware: str = ""


def refuse_shared_runs(base_ids: list[str], cand_ids: list[str], baseline: str, candidate: str) -> None:
    """StoreError when the two sides share a run: a gate that compares a run with itself passes whatever the run
    measured (one run tagged with both names, e.g. an open run the other side's command resumed and tagged)."""
    if shared := sorted(set(base_ids) & set(cand_ids)):
        raise StoreError(f"baseline {baseline!r} and candidate {candidate!r} share run {', '.join(shared)}: compare "
                         "two different runs (see `edgebench runs`)")


def tag_of_several_runs(store: Store, name: str, picked: str, hint: str) -> list[str]:
    """A warning where ``name`` is a tag of several runs and only its latest, ``picked``, is compared: a CI job that
    tags each of its repeats with one name would otherwise be decided on one of them without a word."""
    tagged = store.resolve_runs(name)
    if len(tagged) < 2:
        return []
    return [f"tag {name!r} names {len(tagged)} runs: only its latest, {picked}, is compared; {hint}"]


def match_runs(store: Store, base_ids: list[str], cand_ids: list[str]) -> Matching:
    """Pair the ok results of the runs ``base_ids`` and ``cand_ids``; machine and library differences as warnings,
    and the baseline's results the candidate failed or lacks as ``missing``."""
    base_run, base_df, base_by_key, base_left = _side(store, base_ids, "baseline")
    cand_run, cand_df, cand_by_key, cand_left = _side(store, cand_ids, "candidate")
    cand_failed = pd.concat([_failed(store.measurements(r)) for r in cand_ids], ignore_index=True)
    warnings = _dict_diff("machine", base_run["machine"], cand_run["machine"], _MACHINE_KEYS)
    warnings += _dict_diff("library", _flat_versions(base_run["machine"]), _flat_versions(cand_run["machine"]))
    if base_run.get("edgebench_version") != cand_run.get("edgebench_version"):
        warnings.append(f"edgebench differs: {base_run.get('edgebench_version')} vs {cand_run.get('edgebench_version')} "
                        "(a change in how edgebench measures shows as a change in the figures)")
    executors = [sorted({str(where).split()[0] for where in df["ran_on"].dropna()}) for df in (base_df, cand_df)]
    if executors[0] and executors[1] and executors[0] != executors[1]:
        warnings.append(f"executors differ: {', '.join(executors[0])} vs {', '.join(executors[1])} (under Ray a "
                        "measurement is forked from the Ray worker, whose imports count in its peak RSS: +40-70 % "
                        "measured for ONNX Runtime and torch jobs; compare memory within one executor)")
    warnings += experiments_differ(base_run, cand_run)
    warnings += base_left + cand_left
    warnings += [f"run {run['id']} is not finished ({run['status']}): only the results it has stored so far are "
                 "compared" for run in (base_run, cand_run) if run.get("finished_at") is None]
    pairs, unmatched, missing = [], [], []
    for key, cand in cand_by_key.items():
        if key in base_by_key:
            pairs.append((key, base_by_key[key], cand))
        else:
            unmatched.append(_unmatched_reason(cand.rows[-1], base_df))
    for key, base in base_by_key.items():
        row = base.rows[-1]
        if key in cand_by_key:
            continue
        other = _same_job(row, cand_df)
        if not other.empty:  # measured with other settings (listed above): not compared, so not judged either
            missing.append(MissingResult(str(row["label"]), context_label(row["target"], row["backend"], row["threads"]),
                                         f"measured with other settings ({_settings_diff(row, other.iloc[-1])})", False))
            continue
        failed = _same_job(row, cand_failed)
        reason = (f"failed in the candidate run: {failed.iloc[-1]['error'] or failed.iloc[-1]['status']}"
                  if not failed.empty else "not measured by the candidate run")
        missing.append(MissingResult(str(row["label"]), context_label(row["target"], row["backend"], row["threads"]),
                                     reason, not failed.empty))
        unmatched.append(f"{row['label']} on {row['target']}/{row['backend']}: only in the baseline run ({reason})")
    hardware = other_hardware([store.get_run(r)["machine"] for r in base_ids + cand_ids])
    return Matching(base_run, cand_run, pairs, unmatched, warnings, missing, hardware)


def experiments_differ(base_run: Mapping[str, Any], cand_run: Mapping[str, Any]) -> list[str]:
    """A warning where the sides' newest runs are of other experiments or models (experiment and model name, as
    stored with each run): results paired by label then compare two models, not a change to one, which a team may
    mean to do but should not be left to infer from the figures."""
    base, cand = _experiment_of(base_run), _experiment_of(cand_run)
    if base == cand:
        return []
    return [f"different experiments: baseline {base[0]!r} (model {base[1]}) vs candidate {cand[0]!r} (model "
            f"{cand[1]}); results are paired by label across them, so a change shows how the two differ, not what the "
            "candidate changed"]


def _experiment_of(run: Mapping[str, Any]) -> tuple[str, str]:
    """A run's experiment name and its model's name (``file:factory`` for a model built by a function in a file, the
    file by its name: a CI job's base and candidate checkouts hold it at other absolute paths)."""
    experiment = run.get("experiment") if isinstance(run.get("experiment"), Mapping) else {}
    model = experiment.get("model") if isinstance(experiment.get("model"), Mapping) else {}
    name = (f"{PurePath(str(model['file'])).name}:{model.get('factory')}" if model.get("file") else
            model.get("name") or "not recorded")
    return str(run.get("name")), str(name)


def other_hardware(machines: list[Mapping[str, Any]], keys: tuple[str, ...] = _HARDWARE) -> str:
    """How the hardware of runs' machines differs (``cpu_model 'A' vs 'B'``), "" where every run ran on one kind: a
    timing of one machine is no baseline for another's. A key a machine did not record does not count."""
    parts = []
    for key in keys:
        seen = list(dict.fromkeys(m.get(key) for m in machines if m.get(key) is not None))
        if len(seen) > 1:
            parts.append(f"{key} {' vs '.join(repr(v) for v in seen)}")
    return "; ".join(parts)


def devices_differ(base: Side, cand: Side) -> str:
    """How the devices the two sides' measurements ran on differ (each worker's own record: an SSH board's, which
    the run's machine, the driver's, does not show), "" where they are one kind or did not say. A Jetson's power
    mode and clock lock set its speed as much as its model does."""
    devices = [device for side in (base, cand) for row in side.rows  # a row stored without details has NaN there
               if isinstance(details := row.get("details"), Mapping) and isinstance(device := details.get("device"), Mapping)]
    return other_hardware(devices, _DEVICE_HARDWARE)


def _side(store: Store, run_ids: list[str], whose: str) -> tuple[dict[str, Any], pd.DataFrame, dict[tuple, Side],
                                                               list[str]]:
    """The latest run of one side (all its ids joined), its ok results, per result key its runs, and a note per
    run left out of some results (``_newest_variant``); ``run_ids`` oldest first, as a tag orders its runs."""
    df = pd.concat([_ok(store.measurements(r)) for r in run_ids], ignore_index=True)
    grouped: dict[tuple, list[pd.Series]] = {}
    for key, (_, row) in zip(_keys(df), df.iterrows()):
        grouped.setdefault(key, []).append(row)
    sides: dict[tuple, Side] = {}
    left_out: dict[str, list[tuple[pd.Series, pd.Series]]] = {}  # run id -> (its row, the kept newest) per result
    for key, rows in grouped.items():
        kept, others = _newest_variant(rows)
        sides[key] = Side(kept, [store.samples(int(row["id"])) for row in kept])
        for row in others:
            left_out.setdefault(row["run_id"], []).append((row, kept[-1]))
    kept_ids = {int(row["id"]) for side in sides.values() for row in side.rows}
    run = store.get_run(run_ids[-1])
    if len(run_ids) > 1:
        run = {**run, "id": ", ".join(run_ids)}
    notes = [_left_out_note(whose, len(results), *results[0]) for results in left_out.values()]
    return run, df[df["id"].isin(kept_ids)], sides, notes


def _newest_variant(rows: list[pd.Series]) -> tuple[list[pd.Series], list[pd.Series]]:
    """A result's rows of one side (oldest run first) split into those of the variant its newest run measured and
    the others: a run of a changed model is another population, and pooling it gave the timing a mean over two
    models while size and accuracy read one run."""
    newest = rows[-1]["variant_id"]
    return [r for r in rows if r["variant_id"] == newest], [r for r in rows if r["variant_id"] != newest]


def _left_out_note(whose: str, count: int, row: pd.Series, newest: pd.Series) -> str:
    """Why a run of a side is not among the runs of ``count`` results (``row``, one of them, against ``newest``)."""
    where = f"{row['label']} on {context_label(row['target'], row['backend'], row['threads'])}"
    return (f"{whose} run {row['run_id']} left out of {count} result(s): it measured other variants than the "
            f"{whose}'s newest run of each (e.g. {where}: {row['variant_id']}, run {newest['run_id']}: "
            f"{newest['variant_id']}); a result reads only the runs of its newest run's variant")


def lookback_values(
    store: Store, run: Mapping[str, Any], exclude: set[str], limit: int = DEFAULT_LOOKBACK
) -> dict[tuple, dict[str, list[float]]]:
    """Per result key and measured metric, its values in up to ``limit`` earlier runs on ``run``'s machine.

    Earlier: started before ``run``; same machine: the same hostname and CPU model; runs in ``exclude``
    (the candidate side) left out, and so are contended timing figures. Oldest first.
    """
    if limit <= 0:
        return {}
    runs = store.runs()
    runs = runs[(runs["started_at"] < run["started_at"]) & ~runs["id"].isin(exclude)]
    same = [rid for rid in reversed(runs["id"].tolist()) if _same_machine(store.get_run(rid)["machine"], run["machine"])]
    values: dict[tuple, dict[str, list[float]]] = {}
    for rid in reversed(same[:limit]):
        for _, row in _ok(store.measurements(rid)).iterrows():
            per_metric = values.setdefault(_history_key(row), {})
            contended = disturbance(row.get("details")) is not None
            for metric in RUN_METRICS:
                if contended and metric in TIMING_METRICS:
                    continue
                if (v := _value(row, _column(metric))) is not None:
                    per_metric.setdefault(metric, []).append(v)
    return values


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


def _failed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] != "ok"]


def _same_machine(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _SAME_MACHINE)


def _same_job(row: pd.Series, other: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``other`` with the same variant label, target and backend (any settings)."""
    return other[(other["label"] == row["label"]) & (other["target"] == row["target"])
                 & (other["backend"] == row["backend"])]


def _unmatched_reason(cand: pd.Series, base_df: pd.DataFrame) -> str:
    """Why a candidate result has no baseline counterpart: a settings difference (flagged) or none measured."""
    where = f"{cand['label']} on {cand['target']}/{cand['backend']}"
    same = _same_job(cand, base_df)
    if same.empty:
        return f"{where}: only in the candidate run"
    return f"{where}: settings mismatch, not compared ({_settings_diff(same.iloc[0], cand)})"


def _settings_diff(base: pd.Series, cand: pd.Series) -> str:
    """Each setting that differs between two results, ``name old -> new`` (absent: ``-``)."""
    a, b = comparable_settings(base["settings"] or {}), comparable_settings(cand["settings"] or {})
    raw_a, raw_b = base["settings"] or {}, cand["settings"] or {}  # shown as recorded ('-': not recorded)
    diffs = [f"{k} {raw_a.get(k, '-')} -> {raw_b.get(k, '-')}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return "; ".join(diffs) or "other settings differ"
