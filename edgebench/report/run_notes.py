"""What a stored run's results say the user should hear beside its figures: a baseline at chance level, float
artifacts that do not compute their model, windows other processes disturbed or that ended short of their rule,
more threads than cores, overflowing outputs, energy readings not kept, "pruned" variants that removed nothing,
quantized models slower than their float model, what allocations recorded, how far the latency model was off.
Read from the store alone, so the CLI's summary, the HTML report and ``Results.notes()`` say the same, for this run
or one stored long ago."""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd

from edgebench.store.compare_match import disturbance


class Note(NamedTuple):
    """One line: a short label (``timing``, ``overflow``...) and what it says."""

    label: str
    text: str

    def __str__(self) -> str:
        return f"{self.label}: {self.text}"


def run_notes(df: pd.DataFrame, fed: dict[str, Any] | None = None) -> list[Note]:
    """Every note of a run's measurements (``Store.measurements``), in the order the CLI prints them; ``fed`` is
    the run's input record (``Results.input_spec()``), which holds the test split's chance level."""
    if df.empty:
        return []
    majority = (fed or {}).get("majority_class_rate")
    return [*_at_chance(df, majority), *_lost_at_chance(df, majority), *_not_the_model(df), *_disturbed(df),
            *_oversubscribed(df), *_unfinished_windows(df), *_overflow(df), *_energy_not_kept(df), *_unpruned(df),
            *_slower_than_float(df), *_allocations(df), *_prediction_error(df)]


def _at_chance(df: pd.DataFrame, majority: float | None) -> list[Note]:
    """Baselines whose every measured accuracy is within two standard errors of answering the test split's most
    common class: the model never learned (too few epochs, a learning rate too high or low, labels that do not
    follow the images) or its weights are fed other inputs than they were trained on, and the variants' accuracy
    changes against it mean nothing. A run stored before the chance level was recorded gets no note."""
    best = _best_baseline(df, majority)
    if best is None or best["accuracy"] > _chance_bar(majority, best["n_eval"]):
        return []
    n = float(best["n_eval"])
    return [Note("chance", f"the baseline's best accuracy, {best['accuracy']:.3f} ({best['label']} on "
                           f"{best['target']}/{best['backend']}), is no better than always answering the test split's "
                           f"most common class ({majority:.3f} of {n:.0f} images): the baseline has not learned, so "
                           "the variants' accuracy changes against it mean nothing; train longer or at another rate "
                           "(training.epochs, training.lr), or check the labels, the weights and dataset.preprocess")]


def _chance_bar(majority: float, n: float) -> float:
    """The accuracy two standard errors above always answering the most common class, on ``n`` test images."""
    return majority + 2 * (majority * (1 - majority) / n) ** 0.5


def _finite(df: pd.DataFrame) -> pd.DataFrame:
    """The ok measurements whose every output was finite: an accuracy NaN or inf outputs pulled down says what the
    runtime computed (the overflow note), not what the model learned."""
    ok = _ok(df)
    if "details" not in ok:
        return ok
    overflowed = ok["details"].map(lambda d: isinstance(d, dict) and bool(d.get("non_finite_outputs")))
    return ok[~overflowed.astype(bool)]


def _best_baseline(df: pd.DataFrame, majority: float | None) -> pd.Series | None:
    """The baseline measurement of the highest accuracy; None without one or without the chance level."""
    ok = _finite(df)
    baselines = ok[(ok["kind"] == "baseline") & ok["accuracy"].notna()]
    if majority is None or baselines.empty:
        return None
    return baselines.loc[baselines["accuracy"].astype(float).idxmax()]


def _lost_at_chance(df: pd.DataFrame, majority: float | None) -> list[Note]:
    """Measurements at chance level where the baseline learned: the artifact no longer computes the model (a
    quantized type too narrow, a variant pruned past recovery, or a converter's error, as an hls4ml firmware that
    misread a reshape scored 0.275 of 4 classes where ONNX Runtime scored 0.755 and nothing failed). A float
    artifact's output difference from PyTorch also says which; a quantized one's was not judged at all."""
    best = _best_baseline(df, majority)
    if best is None or best["accuracy"] <= _chance_bar(majority, best["n_eval"]):
        return []  # the baseline itself at chance: _at_chance says so
    ok = _finite(df)
    ok = ok[ok["accuracy"].notna() & ok["n_eval"].notna()]
    lost = ok[ok["accuracy"] <= [_chance_bar(majority, n) for n in ok["n_eval"]]]
    if lost.empty:
        return []
    where = [f"{row['label']} on {row['target']}/{row['backend']} ({row['accuracy']:.3f})" for _, row in lost.iterrows()]
    return [Note("lost", f"{len(lost)} measurements score no better than always answering the test split's most common "
                         f"class ({majority:.3f}) where the baseline scored {best['accuracy']:.3f}: {_shown(where)}. These "
                         "artifacts do not compute the model any more (a type too narrow, pruned past recovery, or a "
                         "conversion error): their latency and size are not those of a working model")]


def _details(row: pd.Series) -> dict[str, Any]:
    return row["details"] if isinstance(row["details"], dict) else {}


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"]


#: the largest |logit difference| from the PyTorch model, as a fraction of its largest |logit| (at least 1), that a
#: float artifact's rounding explains: fp32 runtimes differ by 1e-7 to 1e-5 of it (TF32 on a GPU by ~1e-3), fp16
#: ones by ~1e-3
ROUNDING = {"fp32": 0.01, "fp16": 0.05}


def _not_the_model(df: pd.DataFrame) -> list[Note]:
    """Float artifacts whose outputs differ from their PyTorch model's by more than rounding explains: the runtime
    ran another function (a converter's error: a channels-last model's LiteRT file scored chance, logits 1.23 off,
    and nothing failed), so their accuracy and latency are not the model's. Measurements stored before the logits'
    scale was recorded are not judged."""
    ours, theirs = [], []
    for _, row in _finite(df).iterrows():  # NaN or inf outputs: the overflow note says so, with their count
        scale = _details(row).get("reference_max_abs")
        share = ROUNDING.get(row["precision"])
        diff = row["max_abs_diff"]
        if scale is not None and share is not None and pd.notna(diff) and diff > share * max(1.0, scale):
            where = f"{row['label']} on {row['target']}/{row['backend']}: {diff:.3g} off logits up to {scale:.3g}"
            (theirs if row.get("kind") == "external" else ours).append(where)
    notes = []
    if ours:
        notes.append(Note("not the model", f"{len(ours)} float measurements' outputs differ from their PyTorch "
                                           f"model's by more than rounding explains ({_shown(ours)}): the runtime ran "
                                           "another function (an export or conversion error), so their accuracy and "
                                           "latency are not the model's"))
    if theirs:  # its parent is this run's model, which training.epochs fine-tuned from the weights the file came from
        notes.append(Note("not the parent", f"{len(theirs)} float artifacts made by other tools compute other outputs "
                                            f"than their parent variant's PyTorch model ({_shown(theirs)}): expected "
                                            "where the file was made from other weights than the parent (before this "
                                            "run's fine-tuning, training.epochs, or another checkpoint); otherwise the "
                                            "other tool's conversion changed the function"))
    return notes


def _shown(where: list[str], sep: str = "; ") -> str:
    """Up to three of ``where``, and how many more."""
    return sep.join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")


def _disturbed(df: pd.DataFrame) -> list[Note]:
    """How many timed windows other processes or a change of the machine's speed disturbed (their figures are
    stored and shown, marked; `compare` never decides on them)."""
    ok = _ok(df)
    reasons = [why for why in (disturbance(d) for d in ok["details"]) if why is not None]
    if not reasons:
        return []
    return [Note("disturbed", f"{len(reasons)} of {len(ok)} measurements' timed windows (e.g. {reasons[0]}): their "
                              "p50s are marked, and `edgebench compare` leaves them undecided; measure again on a "
                              "quieter machine")]


def _oversubscribed(df: pd.DataFrame) -> list[Note]:
    """Measurements that asked for more runtime threads than the cores their worker could run on (its CPU
    affinity, recorded with the window's contention): the threads take turns on the cores, so the latency
    includes that waiting and is not what a device with that many cores would give."""
    where: dict[str, int] = {}
    for _, row in _ok(df).iterrows():
        cores = len((_details(row).get("contention") or {}).get("cores") or [])
        if cores and pd.notna(row["threads"]) and row["threads"] > cores:
            key = f"threads {row['threads']:.0f} on {cores} cores: {row['target']}/{row['backend']}"
            where[key] = where.get(key, 0) + 1
    if not where:
        return []
    shown = _shown([f"{key} ({count})" for key, count in where.items()])
    return [Note("threads", f"{sum(where.values())} measurements asked for more threads than the cores their worker "
                            f"could use ({shown}): the threads took turns on the cores, so their latency includes "
                            "the waiting; set the target's threads to at most its cores")]


def _unfinished_windows(df: pd.DataFrame) -> list[Note]:
    """Timed windows that ended before their rule was met: at ``max_time_s``/``max_iters`` short of the asked
    precision, with fewer samples than ``min_iters`` (their intervals are wider, or absent, and say so), or by
    ``max_iters`` before ``min_time_s`` (an energy or thermal window asked for is shorter than asked)."""
    ok = _ok(df)
    short_of_precision, short_of_count, short_of_time = [], [], []
    for _, row in ok.iterrows():
        details = _details(row)
        window = details.get("window") or {}
        met = window.get("precision_met")
        if met is None:  # a run stored before it was: the stop reason says
            met = window.get("stopped") not in ("max_time", "max_iters")
        if window.get("precision") and not met:
            short_of_precision.append(f"{row['label']} on {row['target']}/{row['backend']} ({window['stopped']})")
        measure = (details.get("job") or {}).get("measure") or {}
        min_iters, min_time_s, seconds = measure.get("min_iters"), measure.get("min_time_s"), details.get("timed_window_s")
        if min_iters and row["n_samples"] is not None and row["n_samples"] < min_iters:
            short_of_count.append(f"{row['label']} on {row['target']}/{row['backend']} ({row['n_samples']:.0f} samples)")
        if window.get("stopped") == "max_iters" and min_time_s and seconds is not None and seconds < min_time_s:
            short_of_time.append(f"{row['label']} on {row['target']}/{row['backend']} ({seconds:.3g} s of "
                                 f"{min_time_s:g} s)")
    notes = []
    for problem, where in (("ended before their interval reached measurement.precision", short_of_precision),
                           ("ended by measurement.max_time_s with fewer runs than min_iters", short_of_count),
                           ("ended by measurement.max_iters before min_time_s (raise max_iters for the whole "
                            "window)", short_of_time)):
        if where:
            notes.append(Note("timing", f"{len(where)} of {len(ok)} timed windows {problem}: {_shown(where, ', ')}"))
    return notes


def _overflow(df: pd.DataFrame) -> list[Note]:
    """Measurements whose outputs overflowed: images with NaN/inf logits (counted as wrong) and hls4ml fixed-point
    types the calibration images left (the C simulation wraps around or saturates there)."""
    notes = []
    for _, row in _ok(df).iterrows():
        details = _details(row)
        where = f"{row['label']} on {row['target']}/{row['backend']}"
        if details.get("non_finite_outputs"):
            why = ("fp16 holds at most 65504: scale the inputs down" if str(row["label"]).endswith("/fp16") else
                   "the model or runtime computes NaN or inf: check its weights and inputs")
            notes.append(Note("overflow", f"{where}: {details['non_finite_outputs']} of {row['n_eval']:.0f} images "
                                          f"gave NaN or inf outputs, counted as wrong ({why})"))
        tensors = (details.get("hls4ml") or {}).get("overflow") or []
        if tensors:
            notes.append(Note("overflow", f"{where}: {len(tensors)} tensors leave their fixed-point type "
                              f"({details['hls4ml'].get('precision', 'the fixed-point type')} where hls4ml did not "
                              f"widen it) on the calibration images (e.g. {tensors[0]}): give "
                              "quantization.fixed_point more integer bits"))
    return notes


def _energy_not_kept(df: pd.DataFrame) -> list[Note]:
    """Measurements whose energy meter failed or gave a reading that was not kept (unlabelled, NaN, negative, a
    counter that did not advance...): their energy is empty, and only the stored note said why."""
    ok = _ok(df)
    lost = ok[ok["energy_j_per_inference"].isna() & ok["energy_note"].apply(lambda n: isinstance(n, str) and bool(n))]
    if lost.empty:
        return []
    first = lost.iloc[0]
    others = f" ({len(lost) - 1} more alike or otherwise: Results.stored()'s energy_note)" if len(lost) > 1 else ""
    return [Note("energy", f"{len(lost)} of {len(ok)} measurements have no energy figure: {first['energy_note']} "
                           f"({first['label']} on {first['target']}/{first['backend']}){others}")]


def _unpruned(df: pd.DataFrame) -> list[Note]:
    """Structured variants that removed no filter (a small ratio, or ``round_to`` at least a layer's kept width,
    rounds every layer back to its width): a "pruned" point that is the baseline under another name."""
    macs = dict(zip(df["variant_id"], df["macs"], strict=True))
    pruned = df[(df["kind"] == "structured") & (df["ratio"].fillna(0) > 0)].drop_duplicates("variant_id")
    notes = []
    for _, row in pruned.iterrows():
        parent = macs.get(row["parent_id"])
        if parent is not None and row["macs"] == parent and row["precision"] == "fp32":
            notes.append(Note("pruned nothing", f"{row['label']} kept every filter of its parent ({parent:,.0f} "
                              f"MACs): ratio {row['ratio']:g} rounds back to each layer's width (see pruning.round_to)"))
    return notes


def _slower_than_float(df: pd.DataFrame) -> list[Note]:
    """Quantized measurements (int8, fp16...) slower than their fp32 model on the same target, runtime and settings,
    their p50 intervals apart: on a small model the quantize and dequantize work can outweigh the cheaper arithmetic
    (digits' int8 LiteRT files ran at twice their fp32 files' p50), which a user choosing a precision should hear."""
    ok = _ok(df)
    keys = ["target", "backend", "threads", "batch_size", "scenario"]
    floats = ok[ok["precision"] == "fp32"].set_index(["variant_id", *keys])
    notes = []
    for precision, part in ok[~ok["precision"].isin(["fp32", "fixed"])].groupby("precision"):
        slower, compared = [], 0
        for _, row in part.iterrows():
            key = (row["parent_id"], *(row[k] for k in keys))
            if key not in floats.index:
                continue
            parent = floats.loc[[key]].iloc[-1]
            compared += 1
            if pd.notna(row["p50_low_ms"]) and pd.notna(parent["p50_high_ms"]) and row["p50_low_ms"] > parent["p50_high_ms"]:
                slower.append((row["p50_ms"] / parent["p50_ms"], row, parent))
        if slower:
            _, row, parent = max(slower, key=lambda s: s[0])
            notes.append(Note("precision", f"{len(slower)} of {compared} {precision} measurements were slower than "
                              f"their fp32 model on the same target and runtime, their p50 intervals apart (e.g. "
                              f"{row['label']} on {row['target']}/{row['backend']}: {row['p50_ms']:.3g} ms against "
                              f"{parent['p50_ms']:.3g} ms): quantizing cost time there, not saved it"))
    return notes


def _allocations(df: pd.DataFrame) -> list[Note]:
    """What per-layer allocations recorded that the user should hear (a latency budget missed, and why), once each."""
    from edgebench.prune.allocation import record_summary

    lines = dict.fromkeys(line for facts in df["facts"]
                          if (line := record_summary((facts or {}).get("allocation"))) is not None)
    return [Note("allocation", line) for line in lines]


def _prediction_error(df: pd.DataFrame) -> list[Note]:
    """How far the latency tables' predictions were from the measured p50s (``measurement.predict_latency``):
    mean absolute percentage error and the worst variant, per target and backend."""
    notes = []
    for (target, backend), part in _ok(df).dropna(subset=["prediction_error_pct"]).groupby(["target", "backend"]):
        errors = part["prediction_error_pct"].astype(float)
        worst = part.loc[errors.abs().idxmax()]
        notes.append(Note("latency model", f"on {target}/{backend}: MAPE {errors.abs().mean():.1f} % over "
                          f"{len(part)} variants (worst {worst['label']}: predicted {worst['predicted_p50_ms']:.4f} "
                          f"ms, measured {worst['p50_ms']:.4f} ms, {worst['prediction_error_pct']:+.1f} %)"))
    return notes
