"""The CI gate: warn and fail thresholds per metric, unstable measurements named and not blamed, exit codes —
on comparisons of real synthetic runs in a SQLite store, through the CLI as a CI job calls it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from store_fixtures import MACHINE, synthetic_result, variant_specs
from typer.testing import CliRunner

from edgebench.cli.common import friendly_errors
from edgebench.cli.store import register
from edgebench.errors import ExitCode
from edgebench.job import JobResult
from edgebench.store import Store, StoreError
from edgebench.store.compare import Comparison, MatchedResult, MetricChange
from edgebench.store.gate import Thresholds, evaluate, gate_markdown, min_effects, parse_thresholds
from edgebench.store.record import MeasurementRecord
from edgebench.variants import QuantSpec, VariantSpec

runner = CliRunner()
SMALL, LARGE, SAME = "l1-0.5-while_training/fp32", "l1-0.5-while_training/int8", "baseline/fp32"


def _runs(store: Store, tag: str, n: int, sigma: float, seed: int, slowdown: dict[str, float] | None = None) -> None:
    """``n`` runs tagged ``tag``; each result moves by its own run-to-run factor (sd ``sigma`` in log)."""
    rng = np.random.default_rng(seed)
    specs = [s for s in variant_specs() if s.label in (SMALL, LARGE, SAME)]
    for _ in range(n):
        run_id = store.start_run("gate", {}, "h-gate", MACHINE, (tag,))
        for spec in specs:
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
            factor = (slowdown or {}).get(spec.label, 1.0) * float(np.exp(rng.normal(0, sigma)))
            result = synthetic_result(spec.id, spec, rng, factor)
            store.add_measurement(MeasurementRecord(run_id, spec.id, spec.id, "local-cpu", "onnxruntime", result,
                                                    {"threads": 1}, 1000))
        store.finish_run(run_id)


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app, friendly_errors)
    return app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three runs a side, quiet (0.3 % run-to-run): the candidate is 3 % slower on SMALL, 8 % on LARGE."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        _runs(store, "base", 3, 0.003, seed=1)
        _runs(store, "cand", 3, 0.003, seed=2, slowdown={SMALL: 1.03, LARGE: 1.08})
    return path


def _compare(app: typer.Typer, db: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["compare", "base", "cand", "--store", str(db), "--repeats", "--lookback", "0",
                                 "--format", "markdown", *args])
    return result.exit_code, result.output


def test_warn_and_fail_levels_give_their_exit_codes(app: typer.Typer, db: Path) -> None:
    both = ["--warn", "latency=2", "--fail", "latency=5", "--warn", "throughput=2", "--fail", "throughput=5"]
    code, out = _compare(app, db, *both)
    assert code == ExitCode.REGRESSION == 1, out
    assert "### edgebench deployment-cost gate ❌ fails" in out
    rows = [line for line in out.splitlines() if line.startswith(("| warn |", "| fail |"))]
    assert any(r.startswith(f"| fail | {LARGE} |") and "| latency |" in r for r in rows)
    assert any(r.startswith(f"| warn | {SMALL} |") and "| latency |" in r for r in rows)
    assert not any(SAME in r for r in rows)

    code, out = _compare(app, db, "--warn", "latency=2", "--warn", "throughput=2")  # warn levels only: advisory
    assert code == ExitCode.WARNING == 5, out
    assert "gate ⚠️ warns" in out and f"| warn | {LARGE} |" in out

    code, out = _compare(app, db, "--fail", "latency=10", "--fail", "throughput=10")  # 8 % is below both
    assert code == ExitCode.OK == 0, out
    assert "gate ✅ passes" in out


def test_compare_and_the_gate_judge_a_throughput_drop_on_the_same_figure(app: typer.Typer, tmp_path: Path) -> None:
    """50 % more time is 33 % less throughput. Compare judged throughput as the time it stands for (+50 %, a
    regression past --fail throughput=40) while the gate read the -33 % it shows (below 40: passes): one report
    said both. Both now read the figure shown, in both directions."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        _runs(store, "base", 3, 0.003, seed=1)
        _runs(store, "cand", 3, 0.003, seed=2, slowdown={LARGE: 1.5})
    report = tmp_path / "c.json"
    levels = ["--fail", "latency=60", "--fail", "p99=60", "--format", "json", "-o", str(report)]
    code, out = _compare(app, path, "--fail", "throughput=40", *levels)
    data = json.loads(report.read_text())
    changes = {(r["label"], c["metric"]): c for r in data["results"] for c in r["changes"]}
    drop = changes[(LARGE, "throughput")]
    assert drop["change"] == pytest.approx(100 * (1 / 1.5 - 1), abs=1.5)  # about -33 %
    assert drop["verdict"] == "unchanged" and code == ExitCode.OK and data["gate"]["level"] == "ok", out
    code, out = _compare(app, path, "--fail", "throughput=30", *levels)
    data = json.loads(report.read_text())
    drop = {(r["label"], c["metric"]): c for r in data["results"] for c in r["changes"]}[(LARGE, "throughput")]
    assert drop["verdict"] == "regression" and code == ExitCode.REGRESSION, out
    assert {(f["label"], f["metric"]) for f in data["gate"]["findings"] if f["level"] == "fail"} == {
        (LARGE, "throughput")}


def test_without_thresholds_any_regression_fails_as_before(app: typer.Typer, db: Path) -> None:
    code, out = _compare(app, db, "--min-effect", "latency=2", "--min-effect", "throughput=2")
    assert code == ExitCode.REGRESSION, out
    assert "a regression (no --warn or --fail level set for this metric)" in out


def test_json_carries_the_gate(app: typer.Typer, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    code, _ = _compare(app, db, "--warn", "latency=2", "--fail", "latency=5", "--fail", "throughput=5",
                       "--format", "json", "-o", str(out))
    gate = json.loads(out.read_text())["gate"]
    assert code == 1 and gate["level"] == "fail" and gate["exit_code"] == 1
    levels = {(f["label"], f["metric"]): f["level"] for f in gate["findings"]}
    assert levels[(LARGE, "latency")] == "fail" and levels[(SMALL, "latency")] == "warn"


def test_unstable_measurements_are_named_not_blamed(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "noisy.db"
    with Store.open(path) as store:  # 15 % run-to-run spread; the candidate is 2x slower on LARGE
        _runs(store, "base", 3, 0.15, seed=3)
        _runs(store, "cand", 3, 0.15, seed=4, slowdown={LARGE: 2.0})
    code, out = _compare(app, path, "--fail", "latency=5", "--fail", "throughput=5")
    assert code == ExitCode.WARNING, out
    assert f"| warn | {LARGE} |" in out and "unstable: run-to-run spread" in out and "not blamed" in out
    unstable = out[out.index("**Unstable measurements**"):]
    assert f"- {LARGE} on local-cpu · onnxruntime · 1 threads, 3+3 runs: latency spread" in unstable
    code, out = _compare(app, path, "--fail", "latency=5", "--fail", "throughput=5", "--unstable", "50")
    assert code == ExitCode.REGRESSION, out  # the user says 15 % spread is stable enough here: it fails


def _change(metric: str, change: float, noise: float | None = None, verdict: str = "regression") -> MetricChange:
    return MetricChange(metric, 1.0, 1.0 + change / 100, change, None, None, None, verdict, 1.0, "runs",  # type: ignore[arg-type]
                        runs=(3, 3), noise_pct=noise)


def _gate(changes: list[MetricChange], thresholds: Thresholds) -> list[tuple[str, str]]:
    cmp = Comparison("b", "c", [MatchedResult("v", "t", "ctx", changes)], [], [], {}, 0.01)
    return [(f.change.metric, f.level) for f in evaluate(cmp, thresholds).findings]


def test_levels_by_hand() -> None:
    t = parse_thresholds(["latency=2", "accuracy=0.5"], ["latency=5", "memory=10"])
    assert _gate([_change("latency", 2.0), _change("latency", 4.99), _change("latency", 5.0)], t) == [
        ("latency", "warn"), ("latency", "warn"), ("latency", "fail")]
    assert _gate([_change("latency", 1.5)], t) == [("latency", "ok")]  # called by compare, below --warn
    assert _gate([_change("memory", 9.0), _change("memory", 12.0)], t) == [("memory", "ok"), ("memory", "fail")]
    assert _gate([_change("accuracy", -0.6)], t) == [("accuracy", "warn")]  # points, either sign of change
    assert _gate([_change("p99", 16.0)], t) == [("p99", "fail")]  # no threshold: compare's meaning
    assert _gate([_change("latency", 9.0, noise=12.0)], t) == [("latency", "warn")]  # unstable
    assert _gate([_change("latency", 9.0, noise=9.9)], t) == [("latency", "fail")]
    # undecided (disturbed): never failed; a busy runner passed a +791 % p50 without a word, so one past the
    # metric's smallest threshold (none: compare's minimum effect) warns
    assert _gate([_change("latency", 9.0, verdict="undecided")], t) == [("latency", "warn")]
    assert _gate([_change("latency", 1.9, verdict="undecided"), _change("latency", -9.0, verdict="undecided"),
                  _change("p99", 0.5, verdict="undecided")], t) == []
    assert _gate([_change("p99", 1.0, verdict="undecided"), _change("throughput", -3.0, verdict="undecided")],
                 t) == [("p99", "warn"), ("throughput", "warn")]  # min_effect 1 %; throughput: lower is worse
    cmp = Comparison("b", "c", [MatchedResult("v", "t", "ctx", [_change("latency", 1.5, verdict="undecided")])], [],
                     [], {}, 0.01)
    gate = evaluate(cmp, t)
    assert gate.level == "ok" and gate.exit_code == ExitCode.OK and len(gate.undecided) == 1
    assert "**Not judged**" in gate_markdown(gate, t) and "latency +1.5" in gate_markdown(gate, t)


def test_an_undecided_change_past_a_threshold_says_what_would_decide_it() -> None:
    """Every undecided change past its threshold had said "measure again on a quieter machine", where a 50-run window's
    p99 needs a longer window, memory under two executors one executor, and a change the runs' spread could not
    confirm more runs: a quieter machine decides none of them."""
    from dataclasses import replace

    t = parse_thresholds(["latency=2", "p99=2", "memory=2"], None)

    def advice(metric: str, basis: str) -> str:
        change = replace(_change(metric, 30.0, verdict="undecided"), basis=basis, note="not decided: why")
        (finding,) = evaluate(Comparison("b", "c", [MatchedResult("v", "t", "ctx", [change])], [], [], {}, 0.01),
                              t).findings
        return finding.reason.split("not failed without a decision; ")[1]

    assert advice("latency", "contended") == "measure again on a quieter machine"
    assert advice("p99", "short window").startswith("measure longer windows (a larger measurement.min_iters")
    assert advice("memory", "executors") == "measure both sides under one executor (executor.type)"
    for basis in ("runs", "lookback", "allowance", "rounds"):
        assert advice("latency", basis).startswith("measure each side more often (runs of one tag with --repeats")


def test_an_unbounded_interval_is_shown_capped() -> None:
    """A t on 1 df gave a throughput of -33.5 % the interval [-100.0, +51331157151517590830619401240290627944448.0]
    in the gate's table and its lists: bounds past 1000 % read ">+1000" (or "<-1000"), those within keep one decimal."""
    from dataclasses import replace

    from edgebench.store.compare_markdown import fmt_change

    wide = replace(_change("throughput", -33.5, verdict="undecided"), ci_low=-100.0, ci_high=5.1331157151517590e40)
    assert fmt_change(wide) == "-33.5% [-100.0, >+1000]"
    assert fmt_change(replace(wide, ci_low=-1000.5, ci_high=1000.0)) == "-33.5% [<-1000, +1000.0]"
    t = parse_thresholds(None, None)
    text = gate_markdown(evaluate(Comparison("b", "c", [MatchedResult("v", "t", "ctx", [wide])], [], [], {}, 0.01), t),
                         t)
    assert "throughput -33.5% [-100.0, >+1000]" in text and "513311" not in text


def test_an_estimated_energy_regression_warns_and_never_fails_on_its_own() -> None:
    """TDP x utilisation x time: the time is gated as latency; the estimate failed the gate as if a meter read it."""
    from dataclasses import replace

    t = parse_thresholds([], ["energy=10"])
    measured = _change("energy", 50.0)
    estimated = replace(measured, note="estimated:tdp-x-cpu-util")
    assert _gate([measured], t) == [("energy", "fail")] and _gate([estimated], t) == [("energy", "warn")]
    cmp = Comparison("b", "c", [MatchedResult("v", "t", "ctx", [estimated])], [], [], {}, 0.01)
    assert "| energy (estimated) |" in gate_markdown(evaluate(cmp, t), t)
    # not judged, or unstable: the lists under the table had named it plain "energy", as if a meter read it
    from edgebench.report.compare_page import _gate_html

    for shaky in (replace(estimated, verdict="undecided", note="estimated:tdp-x-cpu-util; not decided: disturbed"),
                  replace(estimated, noise_pct=60.0)):
        gate = evaluate(Comparison("b", "c", [MatchedResult("v", "t", "ctx", [shaky])], [], [], {}, 0.01), t)
        assert len(gate.undecided) + len(gate.unstable) == 1
        for text in (gate_markdown(gate, t), _gate_html(gate, t)):
            lists = text.split("Not judged" if gate.undecided else "Unstable", 1)[1]
            assert "v on ctx" in lists and "energy (estimated)" in lists and "energy +50" not in lists


def test_thresholds_set_compares_minimum_effects() -> None:
    t = parse_thresholds(["latency=2"], ["latency=5", "size=0"])
    assert min_effects(t)["latency"] == 2 and min_effects(t)["size"] == 0
    assert min_effects(t, ["latency=3"])["latency"] == 3  # an explicit --min-effect wins
    assert min_effects(Thresholds())["latency"] == 5.0  # compare's default


@pytest.mark.parametrize(("warn", "fail", "message"), [
    (["speed=2"], [], "--warn 'speed=2': use METRIC=PERCENT"),
    (["latency"], [], "--warn 'latency': use METRIC=PERCENT"),
    ([], ["latency=-1"], "--fail 'latency=-1': use METRIC=PERCENT"),
    ([], ["output_error=1"], "with METRIC one of accuracy"),
    (["latency=6"], ["latency=5"], "--warn latency=6 is above --fail latency=5"),
])  # fmt: skip
def test_bad_thresholds_are_one_line_errors(warn: list[str], fail: list[str], message: str) -> None:
    with pytest.raises(StoreError, match=message.replace("[", r"\[")):
        parse_thresholds(warn, fail)


def test_bad_threshold_on_the_command_line_exits_2(app: typer.Typer, db: Path) -> None:
    code, out = _compare(app, db, "--warn", "latency=6", "--fail", "latency=5")
    assert code == ExitCode.BAD_INPUT and "is above --fail" in out and "Traceback" not in out


def test_a_rebuilt_variant_is_compared_by_label_and_failed_lost_or_absent_results_are_gated(
        app: typer.Typer, tmp_path: Path) -> None:
    """The candidate changed the model (every variant id changed, labels kept), its SMALL job failed, LARGE was not
    measured and SAME lost its accuracy: SAME is still compared (by label, the new id named), the failure and the
    lost accuracy fail the gate, the absent result warns. Runs with no label in common fail: nothing was checked."""
    path = tmp_path / "results.db"
    rng = np.random.default_rng(0)
    specs = {s.label: s for s in variant_specs() if s.label in (SMALL, LARGE, SAME)}
    with Store.open(path) as store:
        base = store.start_run("gate", {}, "h-gate", MACHINE, ("base",))
        for spec in specs.values():
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
            store.add_measurement(MeasurementRecord(base, spec.id, spec.id, "local-cpu", "onnxruntime",
                                                    synthetic_result(spec.id, spec, rng), {"threads": 1}, 1000))
        store.finish_run(base)
        cand = store.start_run("gate", {}, "h-gate2", MACHINE, ("cand",))
        rebuilt = {label: spec.model_copy(update={"model_kwargs": {"width": 2.0}}) for label, spec in specs.items()}
        assert all(rebuilt[label].id != specs[label].id and rebuilt[label].label == label for label in specs)
        for label in (SAME, SMALL):
            spec = rebuilt[label]
            store.upsert_variant(spec.id, spec.model_dump(mode="json"), label, None, {"params": 2})
        same = synthetic_result(rebuilt[SAME].id, rebuilt[SAME], rng).model_copy(update={"accuracy": None})
        failed = JobResult(job_id=rebuilt[SMALL].id, status="failed", error="onnxruntime: session crashed")
        for spec, result in ((rebuilt[SAME], same), (rebuilt[SMALL], failed)):
            store.add_measurement(MeasurementRecord(cand, spec.id, spec.id, "local-cpu", "onnxruntime", result,
                                                    {"threads": 1}, 1000))
        store.finish_run(cand)
        other = store.start_run("other", {}, "h-other", MACHINE, ("other",))
        spec = VariantSpec(model="digits_cnn", dataset="digits", quant=QuantSpec(precision="fp16"))
        store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {"params": 1})
        store.add_measurement(MeasurementRecord(other, spec.id, spec.id, "local-cpu", "onnxruntime",
                                                synthetic_result(spec.id, spec, rng), {"threads": 1}, 1000))
        store.finish_run(other)
    result = runner.invoke(app, ["compare", "base", "cand", "--store", str(path), "--format", "json"])
    assert result.exit_code == ExitCode.REGRESSION, result.output
    out = json.loads(result.output)
    assert [r["label"] for r in out["results"]] == [SAME]
    assert any(f"{SAME}: rebuilt from changed inputs" in w and rebuilt[SAME].id in w
               for w in out["results"][0]["warnings"])
    gate = out["gate"]
    assert [(f["label"], f["metric"], f["level"], f["reason"]) for f in gate["findings"]] == [
        (SAME, "accuracy", "fail", "measured in the baseline, not in the candidate")]
    assert sorted((m["label"], m["level"], m["reason"]) for m in gate["missing"]) == sorted([
        (SMALL, "fail", "failed in the candidate run: onnxruntime: session crashed"),
        (LARGE, "warn", "not measured by the candidate run")])
    assert gate["nothing_compared"] is False
    result = runner.invoke(app, ["compare", "base", "other", "--store", str(path), "--format", "markdown"])
    assert result.exit_code == ExitCode.REGRESSION, result.output
    assert "gate ❌ fails" in result.output and "Nothing was compared" in result.output
    assert "### edgebench compare: ⚠ nothing compared" in result.output and "no regression" not in result.output
    result = runner.invoke(app, ["compare", "base", "other", "--store", str(path)])
    assert result.exit_code == ExitCode.REGRESSION and "nothing compared" in result.output
    assert "no regression" not in result.output
