"""The recipe and remeasure arms of ``scripts/bench_regression_detection.py`` (see its docstring)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

SCRIPTS = Path(__file__).resolve().parent
sys.path[:0] = [str(SCRIPTS), str(SCRIPTS.parent / "tests")]

from bench_regression_detection import machine, sample_rule_regressed  # noqa: E402
from slow_onnx import copy_run, slowed_pair  # noqa: E402

from edgebench.config import DEFAULT_EXPERIMENT  # noqa: E402
from edgebench.job import Job  # noqa: E402
from edgebench.store import Store  # noqa: E402

EDGEBENCH = str(Path(sys.executable).parent / "edgebench")


def _experiment(args: argparse.Namespace) -> Path:
    """The experiment file the recipe runs: the tiny one written into the workdir, or the given file."""
    if args.experiment != "tiny":
        return Path(args.experiment).resolve()
    data = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    data.update(
        name="recipe",
        training={**data["training"], "epochs": 2},
        pruning={**data["pruning"], "criteria": ["l1"], "ratios": [0.5], "prune_epochs": [1]},
        quantization={**data["quantization"], "precisions": ["fp32", "int8"], "calibration_samples": 64},
        targets=["local-cpu"],
    )
    path = args.workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _store(args: argparse.Namespace, experiment: Path) -> Path:
    name = yaml.safe_load(experiment.read_text())["name"]
    return args.workdir / "runs" / name / "results.db"


def _tags(db: Path) -> set[str]:
    if not db.is_file():
        return set()
    with Store.open(db) as store:
        return {t for tags in store.runs()["tags"] for t in tags.split(", ") if t}


def recipe(args: argparse.Namespace) -> None:
    """Separate ``edgebench run`` invocations ``--gap`` apart, A/A pairs, then compare (resumable)."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    experiment = _experiment(args)
    db = _store(args, experiment)
    for i in range(args.recipe_pairs):
        for side in ("a", "b"):
            tag = f"pair{i}-{side}"
            if tag in _tags(db):
                continue
            if side == "b":
                time.sleep(args.gap)
            started = time.time()
            subprocess.run([EDGEBENCH, "run", str(experiment), "--tag", tag], cwd=args.workdir, check=True,
                           stdout=subprocess.DEVNULL)
            print(f"  {tag}: edgebench run took {time.time() - started:.0f} s {machine()}", flush=True)
    _report_recipe(db, args.recipe_pairs, experiment)


def _report_recipe(db: Path, pairs: int, experiment: Path) -> None:
    from edgebench.store.compare import compare_runs, machine_speed

    counts = {rule: [0, 0, 0] for rule in ("lookback", "allowance only", "sample-level (before)")}
    changes = []
    with Store.open(db) as store:
        for i in range(pairs):
            base, cand = f"pair{i}-a", f"pair{i}-b"
            for rule, lookback in (("lookback", 20), ("allowance only", 0)):
                cmp = compare_runs(store, base, cand, lookback=lookback)
                latency = [c for r in cmp.results for c in r.changes if c.metric == "latency"]
                counts[rule][0] += sum(c.verdict == "regression" for c in latency)
                counts[rule][1] += len(latency)
                counts[rule][2] += sum(c.verdict == "undecided" for c in latency)
                changes += [c.change for c in latency if c.change is not None] if rule == "lookback" else []
            for result in cmp.results:  # the rule edgebench used before, on the same runs' raw samples
                a, b = (store.samples(ids[-1]) for ids in result.measurement_ids)
                counts["sample-level (before)"][0] += sample_rule_regressed(a, b)
                counts["sample-level (before)"][1] += 1
        runs = store.runs()
        speeds = [machine_speed(store, [rid]) for rid in runs["id"]]
        rss = _one_artifact_rss(store, runs["id"].tolist())
    print(f"{machine()} recipe arm: {pairs} A/A pairs of separate `edgebench run {experiment.name}` invocations")
    print(f"  A/A p50 change per result across runs: sd {np.std(changes, ddof=1):.1f}%, range "
          f"[{min(changes):+.1f}, {max(changes):+.1f}]%")
    for rule, (alarms, total, undecided) in counts.items():
        print(f"  {rule}: false alarms (p50 regression) {alarms}/{total} = {alarms / max(total, 1):.1%}"
              + (f"; undecided (contended, speed changed, or not significant) {undecided}"
                 if rule != "sample-level (before)" else ""))
    known = [s for s in speeds if s]
    if known:
        print(f"  machine-speed index over {len(known)} runs: median {np.median(known):.0f}/s, spread (max-min)/median "
              f"{(max(known) - min(known)) / np.median(known):.1%}, sd {np.std(known, ddof=1) / np.mean(known):.1%}")
    if rss:
        label, values = rss
        print(f"  peak RSS of {label} over {len(values)} runs: median {np.median(values):.1f} MiB, spread "
              f"(max-min)/median {(max(values) - min(values)) / np.median(values):.2%} (goal <= 2 %)")


def _one_artifact_rss(store: Store, run_ids: list[str]) -> tuple[str, list[float]] | None:
    """The peak RSS of the first ONNX Runtime fp32 result in every run that measured it."""
    values, label = [], None
    for run_id in run_ids:
        df = store.measurements(run_id)
        ort = df[(df["backend"] == "onnxruntime") & (df["precision"] == "fp32") & (df["status"] == "ok")]
        if label is None and not ort.empty:
            label = str(ort.iloc[0]["label"])
        values += ort[ort["label"] == label]["peak_rss_mb"].dropna().tolist() if label else []
    return (f"{label} (ONNX Runtime)", values) if values else None


def remeasure(args: argparse.Namespace) -> None:
    """``compare --remeasure`` between busy and slowed copies of the recipe arm's latest run, and A/A."""
    from edgebench.measure.contention import THRESHOLD_ENV
    from edgebench.remeasure import MAX_ROUNDS_FACTOR, remeasure_runs

    if args.ignore_contention:
        os.environ[THRESHOLD_ENV] = "1000"
    db = _store(args, _experiment(args))
    if not db.is_file():
        raise SystemExit(f"no store at {db}: run the recipe arm first")
    slow_dir = args.workdir / "slowed"
    shutil.rmtree(slow_dir, ignore_errors=True)
    slow_dir.mkdir(parents=True)
    tally = {"detected": 0, "slowed": 0, "undecided": 0, "aa_alarms": 0, "aa_total": 0, "aa_undecided": 0}
    achieved = []
    with Store.open(db) as store:
        runs = store.runs()
        base = runs[~runs["experiment_hash"].str.startswith("copy-")]["id"].iloc[-1]  # not a copy made below
        rows = store.measurements(base)
        ort = rows[(rows["backend"] == "onnxruntime") & (rows["status"] == "ok")]
        for trial in range(args.trials):
            busy, slowed = {}, {}  # base side: the busy work's fixed part; candidate: ``--slowdown`` more
            for _, row in ort.iterrows():
                job = Job.model_validate(row["details"]["job"])
                x = np.load(job.eval_data)["x"][:1].astype(np.float32)
                key = row["job_key"]
                busy[key], slowed[key] = slow_dir / f"{trial}-{key}-base.onnx", slow_dir / f"{trial}-{key}-slow.onnx"
                achieved.append(slowed_pair(Path(job.artifact), busy[key], slowed[key], args.slowdown, x))
            pairs = ((copy_run(store, base, f"busy{trial}", busy), copy_run(store, base, f"slow{trial}", slowed),
                      "slow"), (base, copy_run(store, base, f"same{trial}", {}), "same"))
            for baseline, candidate, kind in pairs:
                cmp = remeasure_runs(store, baseline, candidate, args.rounds, args.round_time,
                                     max_rounds=args.max_rounds)
                for result in cmp.results:
                    latency = next(c for c in result.changes if c.metric == "latency")
                    if kind == "slow" and "onnxruntime" in result.context:
                        tally["slowed"] += 1
                        tally["detected"] += latency.verdict == "regression"
                        tally["undecided"] += latency.verdict == "undecided"
                    elif kind == "same":
                        tally["aa_total"] += 1
                        tally["aa_alarms"] += latency.verdict == "regression"
                        tally["aa_undecided"] += latency.verdict == "undecided"
                    if (kind == "slow") != (latency.verdict == "regression") and "onnxruntime" in result.context:
                        change = "n/a" if latency.change is None else f"{latency.change:+.1f}%"
                        print(f"    {kind}: {result.label} called {latency.verdict} ({change}; {latency.note})",
                              flush=True)
            print(f"  trial {trial + 1}/{args.trials} done {machine()}", flush=True)
    t = tally
    print(f"{machine()} remeasure arm: {args.trials} trials, {args.rounds} rounds of {args.round_time:g} s per result "
          f"and side, contention {'ignored' if args.ignore_contention else 'flagged rounds left out'}; disturbed "
          f"rounds measured again up to {args.max_rounds or MAX_ROUNDS_FACTOR * args.rounds} rounds")
    print(f"  constructed slowdown of the ONNX Runtime artifacts (candidate over a baseline with the busy work's fixed "
          f"part): asked {args.slowdown:.0%}, measured in calibration "
          f"median {np.median(achieved):.1%} (range {min(achieved):.1%}..{max(achieved):.1%})")
    print(f"  detections (p50 regression): {t['detected']}/{t['slowed']} = {t['detected'] / max(t['slowed'], 1):.1%} "
          f"(goal >= 95 %); undecided (contended or not significant) {t['undecided']}")
    print(f"  A/A false alarms: {t['aa_alarms']}/{t['aa_total']}; undecided {t['aa_undecided']}")
