"""How often does ``edgebench compare`` cry wolf, and how often does it catch a real 10 % slowdown?

Three arms (``python scripts/bench_regression_detection.py [interleaved] [recipe] [remeasure]``, default: all):

interleaved  A tiny CNN exported to ONNX, measured in separate fresh processes by edgebench's harness and
             stored as runs; arms A and A2 (the same model: A/A pairs) and B (a busy-wait of 10 % of A's
             median after every inference: A/B pairs) interleaved in random order, so slow drift hits all
             alike. ``--pairs``, ``--repeats`` (runs a side), ``--min-time``.
recipe       README's CI recipe followed literally: separate ``edgebench run EXPERIMENT --tag ...``
             invocations ``--gap`` seconds apart, A/A pairs of identical code and artifacts, in ``--workdir``
             (resumable: pairs already stored are kept). Each pair is compared with compare's rule (with the
             lookback of the earlier pairs' runs, and without it: the allowance alone) and with the
             sample-level rule edgebench used before; prints false alarms per result compared, the runs'
             machine-speed index and the peak RSS of one artifact across the runs. ``--experiment`` tiny (a
             2-epoch digits run with one pruned variant, fp32 and int8 on local-cpu; a few minutes a pair) or
             a path (``edgebench/experiments/default.yaml`` for the issue's figure).
remeasure    ``compare --remeasure`` between two copies of the latest run of the recipe arm's store whose ONNX
             Runtime artifacts carry busy work, the candidate's ``--slowdown`` slower than the baseline's
             (``tests/slow_onnx.py``: detections), and between that run and a copy with the same artifacts
             (A/A), ``--trials`` times. ``--ignore-contention`` counts rounds
             other processes disturbed instead of leaving them out (a shared machine flags most of them).

Every figure line starts with the machine (``lscpu`` model) and the load average.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def build_model(path: Path) -> None:
    """A small digits-sized CNN exported with the legacy (TorchScript) ONNX exporter."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip
    torch.onnx.export(model, (torch.randn(1, 1, 32, 32),), str(path), dynamo=False, input_names=["x"])


def measure(args: tuple[str, int, float]) -> list[int]:
    """One run in this (fresh) process: load a session, time it, return raw samples in ns."""
    import onnxruntime as ort

    from edgebench.job import MeasureSettings
    from edgebench.measure.harness import time_session
    from edgebench.runtimes.base import Session

    model_path, delay_ns, min_time_s = args

    class DelayedSession(Session):
        """ORT session with an optional busy-wait after every inference (the injected slowdown)."""

        def __init__(self) -> None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])

        def run(self, inputs: np.ndarray) -> np.ndarray:
            out = self.sess.run(None, {"x": inputs})[0]
            if delay_ns:
                end = time.perf_counter_ns() + delay_ns
                while time.perf_counter_ns() < end:
                    pass
            return out

    batch = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    settings = MeasureSettings(warmup_iters=50, min_iters=300, min_time_s=min_time_s, max_time_s=30.0)
    return time_session(DelayedSession(), batch, settings).samples_ns


def sample_rule_regressed(a: np.ndarray, b: np.ndarray, min_effect: float = 0.05, alpha: float = 0.01) -> bool:
    """The sample-level rule compare used before the run-level one (for contrast): the p2 floor's ratio with
    an order-statistic bootstrap interval and a Mann-Whitney U test on the two runs' samples."""
    from scipy import stats

    a, b = np.sort(a.astype(np.float64)), np.sort(b.astype(np.float64))
    q = min(0.5, max(0.02, 20 / min(len(a), len(b))))
    rng = np.random.default_rng(0)

    def draws(x: np.ndarray) -> np.ndarray:
        k = min(len(x), max(1, int(np.ceil(q * len(x)))))
        return x[np.clip(np.ceil(rng.beta(k, len(x) - k + 1, 4000) * len(x)).astype(int) - 1, 0, len(x) - 1)]

    ratio = np.quantile(b, q, method="inverted_cdf") / np.quantile(a, q, method="inverted_cdf")
    low = np.quantile(draws(b) / draws(a), alpha / 2)
    p = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    return bool(p < alpha and low > 1 and ratio - 1 >= min_effect)


def machine() -> str:
    """``lscpu`` model and the load average, for every figure line."""
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    return f"[{model}; load {Path('/proc/loadavg').read_text().split()[0]}]"


def interleaved(args: argparse.Namespace) -> None:
    """The interleaved arm (module docstring)."""
    from edgebench.job import JobResult
    from edgebench.store import Store
    from edgebench.store.compare import compare_runs
    from edgebench.store.metrics import DEFAULT_ALLOWANCE, DEFAULT_MIN_EFFECT
    from edgebench.store.record import MeasurementRecord

    tmp = Path(tempfile.mkdtemp(prefix="edgebench-regress-"))
    model = tmp / "cnn.onnx"
    build_model(model)
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # every run in a fresh process
        calib = np.median(pool.apply(measure, ((str(model), 0, args.min_time),)))
        delay = int(args.slowdown * calib)
        print(f"model p50 {calib / 1e3:.1f} us; injected delay for B {delay / 1e3:.1f} us ({args.slowdown:.0%})")
        order = [(arm, i, r) for i in range(args.pairs) for arm in ("A", "A2", "B") for r in range(args.repeats)]
        random.Random(args.seed).shuffle(order)
        store = Store.open(tmp / "results.db")
        t0 = time.time()
        for n, (arm, i, _) in enumerate(order):
            samples = pool.apply(measure, ((str(model), delay if arm == "B" else 0, args.min_time),))
            run_id = store.start_run(f"{arm}-{i}", {}, f"{arm}-{i}", {"cpu_model": "this machine"}, tags=(f"{arm}-{i}",))
            result = JobResult(job_id="cnn", status="ok", samples_ns=samples,
                               latency_ms={"p50": float(np.median(samples)) / 1e6})
            settings = {"threads": 1, "batch_size": 1, "scenario": "single_stream"}
            store.add_measurement(MeasurementRecord(run_id, "cnn", "cnn", "local-cpu", "onnxruntime", result, settings))
            store.finish_run(run_id)
            if (n + 1) % 30 == 0:
                print(f"  {n + 1}/{len(order)} runs, {time.time() - t0:.0f} s")

    latency_metrics = ("latency", "p99", "throughput")
    alarms = {(kind, m): 0 for kind in ("A/A", "A/B") for m in latency_metrics}

    def flagged(kind: str, baseline: str, candidate: str) -> tuple[bool, bool, float, bool]:
        # every arm's runs are one result key: the other arms' runs are no lookback for this pair
        result = compare_runs(store, baseline, candidate, repeats=args.repeats > 1, lookback=0).results[0]
        by_metric = {c.metric: c for c in result.changes}
        for m in latency_metrics:
            alarms[(kind, m)] += by_metric[m].verdict == "regression"
        p50 = by_metric["latency"]
        old = sample_rule_regressed(store.samples(_measurement_id(store, baseline)),
                                    store.samples(_measurement_id(store, candidate)))
        return (p50.verdict == "regression", any(by_metric[m].verdict == "regression" for m in latency_metrics),
                p50.change, old)

    aa = [flagged("A/A", f"A-{i}", f"A2-{i}") for i in range(args.pairs)]
    ab = [flagged("A/B", f"A-{i}", f"B-{i}") for i in range(args.pairs)]
    aa_changes = np.array([c for _, _, c, _ in aa])
    ab_changes = np.array([c for _, _, c, _ in ab])
    n = args.pairs
    print(f"{machine()} {n} A/A and {n} A/B comparisons, {args.repeats} run(s) of {args.min_time:g} s per side, interleaved")
    print(f"min effect (default): latency {DEFAULT_MIN_EFFECT['latency']}%, p99 {DEFAULT_MIN_EFFECT['p99']}%, "
          f"throughput {DEFAULT_MIN_EFFECT['throughput']}%; noise allowance {DEFAULT_ALLOWANCE:g}%")  # fmt: skip
    print(f"A/A p50 change across runs: mean {aa_changes.mean():+.2f}%, sd {aa_changes.std(ddof=1):.2f}%, "
          f"range [{aa_changes.min():+.2f}, {aa_changes.max():+.2f}]%")  # fmt: skip
    print(f"A/B p50 change across runs: mean {ab_changes.mean():+.2f}%, sd {ab_changes.std(ddof=1):.2f}%, "
          f"range [{ab_changes.min():+.2f}, {ab_changes.max():+.2f}]%")  # fmt: skip
    for name, column in (("run-level rule", 0), ("sample-level rule (before)", 3)):
        false_alarms, detections = sum(r[column] for r in aa), sum(r[column] for r in ab)
        print(f"{name}: false alarms (A/A, p50 regression) {false_alarms}/{n} = {false_alarms / n:.1%}; "
              f"detections (A/B {args.slowdown:.0%}) {detections}/{n} = {detections / n:.1%}")
    print(f"run-level rule, any latency metric: false alarms {sum(f for _, f, _, _ in aa)}/{n}")
    print("run-level regression verdicts per metric: " + ", ".join(f"{k} {m}: {c}/{n}" for (k, m), c in alarms.items()))
    store.close()




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arms", nargs="*", choices=[[], "interleaved", "recipe", "remeasure"], default=[])
    parser.add_argument("--pairs", type=int, default=20, help="interleaved: A/A and A/B comparisons each")
    parser.add_argument("--min-time", type=float, default=1.0, help="interleaved: timed seconds per run")
    parser.add_argument("--slowdown", type=float, default=0.10, help="injected slowdown as a fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved: runs per side of each comparison")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-regression"),
                        help="recipe/remeasure: where runs, artifacts and the store live (resumable)")
    parser.add_argument("--experiment", default="tiny", help="recipe: 'tiny' or an experiment file")
    parser.add_argument("--recipe-pairs", type=int, default=3, help="recipe: A/A pairs of separate runs in all")
    parser.add_argument("--gap", type=float, default=60, help="recipe: seconds between the two runs of a pair")
    parser.add_argument("--trials", type=int, default=3, help="remeasure: slowed and identical copies compared")
    parser.add_argument("--rounds", type=int, default=5, help="remeasure: rounds per result and side")
    parser.add_argument("--round-time", type=float, default=0.5, help="remeasure: timed seconds per round")
    parser.add_argument("--max-rounds", type=int, default=None,
                        help="remeasure: rounds at most, disturbed ones measured again (default 3 x --rounds)")
    parser.add_argument("--ignore-contention", action="store_true",
                        help="remeasure: decide on rounds other processes disturbed too")
    args = parser.parse_args()
    from bench_regression_recipe import recipe, remeasure

    for arm in args.arms or ["interleaved", "recipe", "remeasure"]:
        {"interleaved": interleaved, "recipe": recipe, "remeasure": remeasure}[arm](args)


def _measurement_id(store: object, tag: str) -> int:
    """The one measurement of the latest run tagged ``tag``."""
    return int(store.measurements(store.resolve_run(tag))["id"].iloc[0])


if __name__ == "__main__":
    main()
