"""A/A and a constructed slowdown on the real pipeline: compare on separate runs, and compare --remeasure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from experiment_files import default_with
from slow_onnx import copy_run, slowed

from edgebench.config import load_experiment
from edgebench.errors import ConfigError
from edgebench.job import Job
from edgebench.measure.contention import THRESHOLD_ENV
from edgebench.measure.speed_probe import TOLERANCE_ENV
from edgebench.pipeline import run_experiment
from edgebench.remeasure import remeasure_runs
from edgebench.store import Store
from edgebench.store.metrics import DEFAULT_ALLOWANCE, TIMING_METRICS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The same tiny experiment run twice, as two separate runs: identical artifacts on both sides. ONNX Runtime
    only: the comparison is under test, not the backend, and each re-measured round is a fresh process (torch's
    import alone is ~1.6 s of each)."""
    tmp = tmp_path_factory.mktemp("remeasure")
    target = tmp / "ort-cpu.yaml"
    target.write_text("kind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    path = default_with(
        tmp, "aa.yaml",
        training={"epochs": 2, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "seed": 0},
        pruning={"criteria": ["l1"], "ratios": [0.5], "schedules": ["while_training"], "prune_epochs": [1]},
        quantization={"precisions": ["fp32"]},
        targets=[str(target)],
        measurement={"min_iters": 50, "min_time_s": 0.3, "warmup_iters": 10},
        run={"workdir": str(tmp / "runs")},
        report={"dir": str(tmp / "report")},
    )  # fmt: skip
    exp = load_experiment(path)
    first = run_experiment(exp, tags=("a1",), render=False)
    second = run_experiment(exp, tags=("a2",), render=False)
    assert first.run_id != second.run_id and not first.failed and not second.failed
    return Path(exp.store_url()), first.run_id, second.run_id


def test_aa_single_runs_decide_only_beyond_the_allowance(two_runs: tuple[Path, str, str]) -> None:
    from edgebench.store.compare import compare_runs

    db, base, cand = two_runs
    with Store.open(db) as store:
        cmp = compare_runs(store, base, cand)
    latency = [c for r in cmp.results for c in r.changes if c.metric == "latency"]
    assert len(latency) == 2 and {c.basis for c in latency} <= {"allowance", "contended"}
    assert all(c.confidence is None for c in latency)  # one run a side: unknowable here, not "100.0%"
    assert all(c.verdict != "regression" or c.change >= DEFAULT_ALLOWANCE for c in latency)
    # every run timed the reference workload: the comparison says how fast the machine itself was
    assert cmp.machine_speed[0] and cmp.machine_speed[1] and "reference workload" in cmp.speed_note


def test_remeasure_identical_artifacts_is_no_regression(two_runs: tuple[Path, str, str]) -> None:
    db, base, cand = two_runs
    with Store.open(db) as store:
        cmp = remeasure_runs(store, base, cand, rounds=4, min_time_s=0.2)
    assert len(cmp.results) == 2 and cmp.unmatched == []
    latency = [c for r in cmp.results for c in r.changes if c.metric == "latency"]
    assert {c.basis for c in latency} <= {"rounds", "contended"}
    # every round is counted but those at two machine speeds (tests/test_speed_probe.py), both sides alike
    assert all(c.runs[0] == c.runs[1] and 2 <= c.runs[0] <= 4 for c in latency if c.basis == "rounds")
    # size, accuracy and memory of identical artifacts never regress. A timing figure may pass the gate by chance:
    # 2 results x 3-4 timing metrics are each tested at alpha 0.01, so a few A/A runs in a hundred on a guest whose
    # speed drifts between the two sides of a round show one just past its minimum effect (5 % for latency; seen on
    # the sibling test in CI). None may move by the noise allowance of a single run: a bias between the sides that
    # large (one measured with another window or thread count) fails here
    alarms = [c for r in cmp.results for c in r.changes if c.verdict == "regression"]
    assert all(c.metric in TIMING_METRICS and c.change is not None and c.change < DEFAULT_ALLOWANCE
               for c in alarms), alarms


def test_a_targets_availability_is_asked_once_per_remeasure(two_runs: tuple[Path, str, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a board can be measured is an SSH connection (up to its connect timeout when it is dead): it was asked
    for each side of each result, 4 times here for one target."""
    from edgebench import remeasure

    asked: list[str] = []
    real = remeasure.runner_for

    def counting(spec):  # the runner, with its answer counted
        runner = real(spec)
        answer = runner.available
        monkeypatch.setattr(runner, "available", lambda: asked.append(spec.name) or answer())
        return runner

    monkeypatch.setattr(remeasure, "runner_for", counting)
    db, base, cand = two_runs
    with Store.open(db) as store:
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05)
    assert len(cmp.results) == 2 and asked == ["ort-cpu"]


def test_a_tag_of_several_runs_says_which_runs_files_were_measured_again(two_runs: tuple[Path, str, str]) -> None:
    """A tag on both runs named its latest without a word: the comparison says which run's files it timed."""
    db, base, cand = two_runs
    with Store.open(db) as store:
        for run_id in (base, cand):
            store.tag_run(run_id, "both")
        cmp = remeasure_runs(store, "both", "a1", rounds=2, min_time_s=0.05)
    assert (cmp.baseline_run, cmp.candidate_run) == (cand, base)  # the second run is the tag's latest
    assert f"tag 'both' names 2 runs: only its latest, {cand}, is compared; its stored files are the ones measured " \
           "again" in cmp.warnings
    assert not [w for w in cmp.warnings if w.startswith("tag 'a1'")]


def test_remeasure_finds_a_constructed_slowdown(two_runs: tuple[Path, str, str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the paired decision is under test, not contention (tests/test_contention.py) nor the speed probe (the test
    # below): rounds other processes disturbed, or the machine's speed changed in, still count here. On a CI host
    # whose speed flipped in 22 of 24 rounds, only 2 calm rounds were left, and a paired t-test on 1 df needs t > 12.7
    # at alpha 0.05: that slowdown was rightly undecided, not found. Both sides of a round run back to back, so a
    # slow change of speed cancels in the pair; 8 rounds of a +50 % slowdown with a 15 % round spread give t ~ 5 on 7 df.
    monkeypatch.setenv(THRESHOLD_ENV, "1000")
    monkeypatch.setenv(TOLERANCE_ENV, "1000")
    db, base, cand = two_runs
    with Store.open(db) as store:
        rows = store.measurements(cand)
        row = rows[(rows["backend"] == "onnxruntime") & (rows["precision"] == "fp32") & rows["criterion"].isna()].iloc[0]
        job = Job.model_validate(row["details"]["job"])
        x = np.load(job.eval_data)["x"][:1].astype(np.float32)
        slow, measured = slowed(Path(job.artifact), tmp_path / "slow.onnx", 0.5, x)  # a busy-wait op, ~50 %
        slower = copy_run(store, cand, "slow", {row["job_key"]: slow})
        cmp = remeasure_runs(store, base, slower, rounds=8, min_time_s=0.2, alpha=0.05)
    [hit] = [r for r in cmp.results if r.label == row["label"] and "onnxruntime" in r.context]
    latency = next(c for c in hit.changes if c.metric == "latency")
    assert latency.verdict == "regression", (latency, measured)
    # the one slowed stands out: on a guest whose speed moved in most rounds, another result passed the gate by a
    # few percent once (a false alarm at alpha 0.05 among the compared results), never by the slowdown's size
    others = [next(c for c in r.changes if c.metric == "latency").change for r in cmp.regressions if r is not hit]
    assert hit in cmp.regressions and all(change < latency.change / 2 for change in others), (others, latency)


@pytest.mark.parametrize("pruned", [False, True], ids=["baseline-broken", "pruned-broken"])
def test_a_result_whose_every_round_failed_is_decided_on_the_stored_runs_and_says_why(
        two_runs: tuple[Path, str, str], tmp_path: Path, pruned: bool) -> None:
    """Every round of a result failed (here its candidate artifact is not a model): it was left with "missing"
    evidence, and the gate passed without a word. It is decided on the stored runs instead, naming the error,
    whichever of the two results it is (setting aside one after another raised a pandas ValueError)."""
    db, base, cand = two_runs
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00 not an onnx model")
    with Store.open(db) as store:
        rows = store.measurements(cand)
        row = rows[rows["criterion"].notna() == pruned].iloc[0]
        garbled = copy_run(store, cand, "garbled", {row["job_key"]: broken})
        cmp = remeasure_runs(store, base, garbled, rounds=2, min_time_s=0.05, max_rounds=2)
        with pytest.raises(ConfigError, match=r"min_time_s=inf: give a finite number of seconds"):
            remeasure_runs(store, base, garbled, min_time_s=float("inf"))
    [hit] = [r for r in cmp.results if r.label == row["label"]]
    [why] = [w for w in hit.warnings if w.startswith("not re-measured")]
    assert why.startswith("not re-measured (2 of its re-measurements failed here: candidate: ") and "broken.onnx" in why
    assert why.endswith("): decided on the stored runs")
    assert {c.basis for c in hit.changes if c.metric == "latency"} != {"rounds"}
    other = [r for r in cmp.results if r is not hit]
    assert other and not any(w.startswith("not re-measured") or "failed here" in w for r in other for w in r.warnings)


def test_remeasure_measures_disturbed_rounds_again_up_to_max_rounds(two_runs: tuple[Path, str, str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db, base, cand = two_runs
    monkeypatch.setenv(TOLERANCE_ENV, "-1")  # every window counts as one the machine changed speed in
    with Store.open(db) as store:
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05, max_rounds=3)
    latency = [c for r in cmp.results for c in r.changes if c.metric == "latency"]
    assert len(latency) == 2 and all(c.verdict == "undecided" and "disturbed 3 of 3 rounds" in c.note for c in latency)
    assert "up to 3 rounds" in cmp.method
    monkeypatch.setenv(TOLERANCE_ENV, "1000")  # nothing disturbed: exactly the rounds asked for
    monkeypatch.setenv(THRESHOLD_ENV, "1000")
    with Store.open(db) as store:
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05, max_rounds=3)
    latency = [c for r in cmp.results for c in r.changes if c.metric == "latency"]
    assert len(latency) == 2 and all(c.basis == "rounds" and c.runs == (2, 2) for c in latency)


def test_a_figure_no_round_measured_is_missing_not_undecided_for_contention(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round disturbed: the timing figures are undecided (contended); energy, which no round measured (a CPU
    without counters), is 'n/a' as on an undisturbed pair, not listed as undecided for contention."""
    from types import SimpleNamespace

    import edgebench.remeasure as remeasure
    from edgebench.store.compare import Side
    from edgebench.store.metrics import DEFAULT_MIN_EFFECT

    monkeypatch.setattr(remeasure, "fixed_changes", lambda *_args: [])  # size and accuracy: from stored runs

    def disturbed(p50: float) -> SimpleNamespace:
        return SimpleNamespace(latency_ms={"p50": p50, "p99": 1.2 * p50}, throughput_ips=1e3 / p50, peak_rss_mb=100.0,
                               energy_j_per_inference=None, contention=SimpleNamespace(flagged=True), speed_probe=None)

    pair = remeasure._Pair(base=Side([], []), cand=Side([], []), jobs=(None, None),  # type: ignore[arg-type]
                           runners=(None, None),  # type: ignore[arg-type]
                           measured={"base": [disturbed(1.0)] * 3, "cand": [disturbed(1.0)] * 3})
    verdicts = {c.metric: (c.verdict, c.basis) for c in remeasure._changes(pair, DEFAULT_MIN_EFFECT, 0.05)}
    assert verdicts["latency"] == verdicts["throughput"] == ("undecided", "contended")
    assert verdicts["energy"] == ("n/a", "missing") and verdicts["memory"] == ("unchanged", "rounds")


def test_an_undecided_remeasured_slowdown_keeps_its_size_and_the_gate_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round disturbed and the candidate 4x slower in each (p50 0.1 -> 0.4 ms): `compare --remeasure` passed it
    (exit 0), the undecided latency carrying no size for the gate to hold against --warn/--fail."""
    from types import SimpleNamespace

    import edgebench.remeasure as remeasure
    from edgebench.store.compare import Side
    from edgebench.store.gate import Thresholds, _undecided_past
    from edgebench.store.metrics import DEFAULT_MIN_EFFECT

    monkeypatch.setattr(remeasure, "fixed_changes", lambda *_args: [])

    def disturbed(p50: float) -> SimpleNamespace:
        return SimpleNamespace(latency_ms={"p50": p50, "p99": 1.2 * p50}, throughput_ips=1e3 / p50, peak_rss_mb=100.0,
                               energy_j_per_inference=None, contention=SimpleNamespace(flagged=True), speed_probe=None)

    pair = remeasure._Pair(base=Side([], []), cand=Side([], []), jobs=(None, None),  # type: ignore[arg-type]
                           runners=(None, None),  # type: ignore[arg-type]
                           measured={"base": [disturbed(0.1), disturbed(0.2), disturbed(0.1)],
                                     "cand": [disturbed(0.4), disturbed(0.8), disturbed(0.4)]})
    latency = next(c for c in remeasure._changes(pair, DEFAULT_MIN_EFFECT, 0.05) if c.metric == "latency")
    assert latency.verdict == "undecided" and latency.change == pytest.approx(300.0)
    why = _undecided_past(latency, Thresholds(warn={"latency": 2.0}, fail={"latency": 5.0}))
    assert why is not None and "+300" in why


def test_an_undecided_remeasured_change_agrees_with_the_figures_shown_beside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round disturbed: the change was the median round's ratio, the figures beside it the geometric means,
    so a p99 shown going 0.796 -> 1.709 ms read -31.8 % (and did not warn). Here the rounds' p99 ratios are 0.5, 0.5
    and 32: geometric means 0.5^(1/3) = 0.7937 and 4^(1/3) = 1.5874 ms, a doubling, which the median read -50 %."""
    from types import SimpleNamespace

    import edgebench.remeasure as remeasure
    from edgebench.store.compare import Side
    from edgebench.store.gate import Thresholds, _undecided_past
    from edgebench.store.metrics import DEFAULT_MIN_EFFECT

    monkeypatch.setattr(remeasure, "fixed_changes", lambda *_args: [])

    def disturbed(p99: float) -> SimpleNamespace:
        return SimpleNamespace(latency_ms={"p50": 0.1, "p99": p99}, throughput_ips=1e4, peak_rss_mb=100.0,
                               energy_j_per_inference=None, contention=SimpleNamespace(flagged=True), speed_probe=None)

    pair = remeasure._Pair(base=Side([], []), cand=Side([], []), jobs=(None, None),  # type: ignore[arg-type]
                           runners=(None, None),  # type: ignore[arg-type]
                           measured={"base": [disturbed(2.0), disturbed(2.0), disturbed(0.125)],
                                     "cand": [disturbed(1.0), disturbed(1.0), disturbed(4.0)]})
    p99 = next(c for c in remeasure._changes(pair, DEFAULT_MIN_EFFECT, 0.05) if c.metric == "p99")
    assert (p99.verdict, p99.basis) == ("undecided", "contended")
    assert p99.baseline == pytest.approx(0.5 ** (1 / 3)) and p99.candidate == pytest.approx(4 ** (1 / 3))
    assert p99.change == pytest.approx(100.0)
    why = _undecided_past(p99, Thresholds(warn={}, fail={}))  # no threshold: its minimum effect, 15 %
    assert why is not None and "+100" in why


def test_a_remeasured_estimated_energy_is_named_so_and_a_second_meter_is_not_one_series(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """compare --remeasure gated an estimated energy (tdp 15 -> 60 W) as a measured regression (exit 1); the stored
    compare called it 'energy (estimated)', which warns at most."""
    from types import SimpleNamespace

    import pandas as pd

    import edgebench.remeasure as remeasure
    from edgebench.store.compare import Side, shown_name
    from edgebench.store.metrics import DEFAULT_MIN_EFFECT, get_metric

    monkeypatch.setattr(remeasure, "fixed_changes", lambda *_args: [])
    column = get_metric("energy").column

    def side(source: str, joules: float) -> Side:
        return Side([pd.Series({"energy_source": source, column: joules})], [])

    def round_(joules: float, p50: float = 1.0) -> SimpleNamespace:
        return SimpleNamespace(latency_ms={"p50": p50, "p99": 1.2 * p50}, throughput_ips=1e3 / p50, peak_rss_mb=100.0,
                               energy_j_per_inference=joules, contention=None, speed_probe=None,
                               samples_ns=[1_000_000 + 1000 * i for i in range(400)])

    def energy(base: Side, cand: Side):
        pair = remeasure._Pair(base=base, cand=cand, jobs=(None, None),  # type: ignore[arg-type]
                               runners=(None, None),  # type: ignore[arg-type]
                               measured={"base": [round_(1e-4), round_(1.01e-4)] * 2,
                                         "cand": [round_(4e-4), round_(4.02e-4)] * 2})
        return next(c for c in remeasure._changes(pair, DEFAULT_MIN_EFFECT, 0.05) if c.metric == "energy")

    estimated = energy(side("estimated:tdp-x-cpu-util", 1e-4), side("estimated:tdp-x-cpu-util", 4e-4))
    assert estimated.verdict == "regression" and shown_name(estimated) == "energy (estimated)", estimated
    two_meters = energy(side("measured:rapl", 1e-4), side("estimated:tdp-x-cpu-util", 4e-4))
    assert two_meters.verdict == "n/a" and "energy sources differ" in two_meters.note, two_meters


def test_remeasure_finds_a_target_the_runs_named_by_its_file_and_says_what_to_pass_when_gone(tmp_path: Path) -> None:
    """A target named by its YAML file's path was looked up again by its name alone: `compare --remeasure` failed
    with "unknown target" while plain compare worked. The run's experiment says where the file was; where it is
    gone, the results are decided on the stored runs, saying to pass --targets-dir."""
    own = tmp_path / "own targets" / "mycpu.yaml"
    own.parent.mkdir()
    own.write_text("kind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    path = default_with(
        tmp_path, "own.yaml", training={"epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "seed": 0},
        pruning={"criteria": []}, quantization={"precisions": ["fp32"]}, targets=[str(own)],
        measurement={"min_iters": 20, "min_time_s": 0.05, "warmup_iters": 5},
        run={"workdir": str(tmp_path / "runs")}, report={"dir": str(tmp_path / "report")},
    )  # fmt: skip
    exp = load_experiment(path)
    base, cand = (run_experiment(exp, render=False).run_id for _ in range(2))
    with Store.open(exp.store_url()) as store:
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05)
        assert [r.context for r in cmp.results] == ["mycpu · onnxruntime · 1 threads"] and not cmp.results[0].warnings
        own.rename(own.with_name("moved.yaml"))
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05)
    assert cmp.results[0].warnings == [
        "not re-measured (baseline its target mycpu is not found here: pass the directory of its YAML file with "
        "--targets-dir (or set EDGEBENCH_TARGETS_DIR)): decided on the stored runs"]
    # a board's target (its Ray resource) is not this machine: re-measuring here would store the host's figures
    own.write_text("kind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n"
                   "ray: {resources: {'board:mycpu': 1}}\n")
    with Store.open(exp.store_url()) as store:
        cmp = remeasure_runs(store, base, cand, rounds=2, min_time_s=0.05)
    assert cmp.results[0].warnings[0].startswith(
        "not re-measured (baseline its target mycpu cannot be measured here: its ray.resources {'board:mycpu': 1.0} "
        "name a board of a Ray cluster"), cmp.results[0].warnings
