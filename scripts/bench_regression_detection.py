"""How often does ``edgebench compare`` cry wolf, and how often does it catch a real 10 % slowdown?

Builds a tiny CNN, exports it to ONNX, and measures it in separate processes
(a fresh ONNX Runtime session per run, timed by edgebench's harness), storing
every run in a temporary edgebench store. Three arms are interleaved in random
order so slow machine drift hits all of them alike:

* A and A2: the same model (A/A pairs: any latency regression is a false alarm);
* B: the same model with a busy-wait of 10 % of A's calibrated median added to
  every inference (A/B pairs: a latency regression is a detection).

Prints the false-alarm rate and the detection rate of the p50 latency decision
under the default minimum effect (and of any latency metric: p50, p99, throughput),
with compare's run-level rule (each run one piece of evidence; with one run a side
and no history only changes beyond the noise allowance count) and, for contrast,
the sample-level rule edgebench used before (a test on the thousands of samples of
the two runs, decided on their p2 floor).

    python scripts/bench_regression_detection.py --pairs 100            # one run per side
    python scripts/bench_regression_detection.py --pairs 100 --repeats 3  # three runs per side
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="A/A and A/B comparisons each (>= 20)")
    parser.add_argument("--min-time", type=float, default=1.0, help="timed seconds per run")
    parser.add_argument("--slowdown", type=float, default=0.10, help="injected slowdown of B as a fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="runs per side of each comparison (compare --repeats: the runs are the evidence)",
    )  # fmt: skip
    args = parser.parse_args()

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
    print(f"{n} A/A and {n} A/B comparisons, {args.repeats} run(s) of {args.min_time:g} s per side, interleaved")
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


def _measurement_id(store: object, tag: str) -> int:
    """The one measurement of the latest run tagged ``tag``."""
    return int(store.measurements(store.resolve_run(tag))["id"].iloc[0])


if __name__ == "__main__":
    main()
