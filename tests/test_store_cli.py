"""The store CLI commands (report, compare, history, tag, runs, delete, export, import) through Typer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from store_fixtures import fill_run
from typer.testing import CliRunner

from edgebench.cli.common import friendly_errors
from edgebench.cli.store import register
from edgebench.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app, friendly_errors)
    return app


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "results.db"
    store = Store.open(path)
    fill_run(store, seed=1, tags=("v1",))
    fill_run(store, seed=2, tags=("v2",))
    fill_run(store, seed=3, tags=("v3",), slowdown={"baseline/int8": 1.2})
    store.close()
    return path


def test_compare_exit_codes_and_formats(app: typer.Typer, db: Path, tmp_path: Path) -> None:
    same = runner.invoke(app, ["compare", "v1", "v2", "--store", str(db)])
    assert same.exit_code == 0, same.output
    assert "no regression in 20 compared results" in same.output
    slower = runner.invoke(app, ["compare", "v2", "v3", "--store", str(db), "--format", "json", "-o", str(tmp_path / "c.json")])
    assert slower.exit_code == 1
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["regression_count"] == 1 and data["results"][0]["changes"][0]["metric"] == "latency"
    lenient = ["--min-effect", "latency=25", "--min-effect", "p99=50", "--min-effect", "throughput=25"]
    md = runner.invoke(app, ["compare", "v2", "v3", "--store", str(db), "--format", "markdown", *lenient])
    assert md.exit_code == 0 and "no regression" in md.output and "| verdict |" in md.output


def test_errors_are_one_line(app: typer.Typer, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = runner.invoke(app, ["compare", "v1", "nope", "--store", str(db)])
    assert missing.exit_code == 2 and "no run or tag 'nope'" in missing.output and "Traceback" not in missing.output
    assert f"(see `edgebench runs --store sqlite:///{db}`)" in missing.output  # the store it looked in, not the default one
    no_store = runner.invoke(app, ["runs", "--store", str(tmp_path / "absent.db")])
    assert no_store.exit_code == 2 and "no results store" in no_store.output
    for command in (["runs"], ["compare", "v1", "v2"], ["report"]):  # as a URL: it was created, empty, and read
        as_url = runner.invoke(app, [*command, "--store", f"sqlite:///{tmp_path / 'absent-url.db'}"])
        assert as_url.exit_code == 2 and "no results store at sqlite:///" in as_url.output, as_url.output
    assert not (tmp_path / "absent-url.db").exists()
    (tmp_path / "runs" / "mine").mkdir(parents=True)  # only another experiment's store where the default's would be
    Store.open(tmp_path / "runs" / "mine" / "results.db").close()
    monkeypatch.chdir(tmp_path)
    elsewhere = runner.invoke(app, ["runs"])
    assert elsewhere.exit_code == 2 and "\n" not in elsewhere.output.strip()
    assert "no results store at runs/default/results.db (the default experiment's); this directory has " \
           "runs/mine/results.db: pass one with --store" in elsewhere.output
    bad_effect = runner.invoke(app, ["compare", "v1", "v2", "--store", str(db), "--min-effect", "speed=3"])
    assert bad_effect.exit_code == 2 and "--min-effect 'speed=3': use METRIC=PERCENT" in bad_effect.output


def test_history_and_compare_leave_no_folder_where_they_write_nothing(app: typer.Typer, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`history --out DIR` with one tagged run wrote no page ("a page needs two runs or more") and left DIR empty;
    a compare refused for a run that is not there left its --output folder (or reports/compare) behind."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "one.db"
    with Store.open(db) as store:
        fill_run(store, seed=1, tags=("v1",))
    one = runner.invoke(app, ["history", "--store", str(db), "--out", str(tmp_path / "hist" / "page")])
    assert one.exit_code == 0 and "not written: a page needs two runs or more" in one.output, one.output
    assert not (tmp_path / "hist").exists()
    refused = runner.invoke(app, ["history", "--store", str(db), "--variant", "nope", "--out", str(tmp_path / "h2")])
    assert refused.exit_code == 2 and not (tmp_path / "h2").exists(), refused.output
    for extra in (["--format", "html"], ["--format", "json", "-o", str(tmp_path / "cmp" / "c.json")]):
        gone = runner.invoke(app, ["compare", "v1", "v9", "--store", str(db), *extra])
        assert gone.exit_code == 2 and "v9" in gone.output, gone.output
    assert not (tmp_path / "reports").exists() and not (tmp_path / "cmp").exists()
    (tmp_path / "keep").mkdir()  # a folder that was there stays, empty or not
    runner.invoke(app, ["history", "--store", str(db), "--out", str(tmp_path / "keep")])
    assert (tmp_path / "keep").is_dir()


def test_report_tag_runs_history(app: typer.Typer, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", "--store", str(db), "--run", "v3", "--out", str(out), "--objective", "size:accuracy"])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").exists() and (out / "accuracy_vs_size.png").exists() and (out / "history.html").exists()
    old = runner.invoke(app, ["report", "--store", str(db), "--run", "v1"])  # no --out: beside, not over, the latest's
    assert old.exit_code == 0, old.output
    assert [p.name.startswith("synthetic-") for p in (tmp_path / "reports").iterdir()] == [True]
    assert runner.invoke(app, ["tag", "v3", "release-1.0", "--store", str(db)]).exit_code == 0
    listing = runner.invoke(app, ["runs", "--store", str(db)], env={"COLUMNS": "200"})
    assert "release-1.0" in listing.output and listing.output.count("synthetic") == 3
    hist = runner.invoke(app, ["history", "--store", str(db), "--variant", "baseline/int8"], env={"COLUMNS": "200"})
    assert hist.exit_code == 0 and "1 change point(s) detected" in hist.output and "▲" in hist.output
    # a column per run squeezed the labels of 15 runs to "basel…": the last N are shown, change points over all
    last = runner.invoke(app, ["history", "--store", str(db), "--variant", "baseline/int8", "--last", "2"],
                         env={"COLUMNS": "200"})
    header = next(line for line in last.output.splitlines() if "variant" in line)
    assert "the last 2 of 3 runs (--last)" in " ".join(last.output.split()) and "v1" not in header
    assert "v2" in header and "release-1.0" in header and "1 change point(s) detected" in last.output  # v3, tagged anew
    # --out writes the page of the runs and variants the table shows (it wrote the tagged runs' page, or nothing)
    page = runner.invoke(app, ["history", "--store", str(db), "--all-runs", "--variant", "baseline/int8",
                               "--out", str(tmp_path / "h")], env={"COLUMNS": "200"})
    assert page.exit_code == 0 and f"history page: {tmp_path / 'h' / 'history.html'}" in page.output
    assert "baseline/int8" in (tmp_path / "h" / "history.html").read_text()


def test_history_figures_are_whole_and_narrow_consoles_show_fewer_runs(
        app: typer.Typer, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped into a CI log, throughput read "3.209e+0…": the exponent and the disturbed mark were cut off. Figures
    from 10,000 up have thousands separators; a column keeps its widest figure whole, and where the console cannot
    hold every run's column the newest runs that fit are shown, saying so."""
    import re

    from edgebench.cli.common import console

    wide = runner.invoke(app, ["history", "--store", str(db), "--metric", "throughput"])
    assert wide.exit_code == 0 and re.search(r"\b1\d,\d{3}\b", wide.output), wide.output  # l1-0.8's ~11,100/s
    assert "e+0" not in wide.output and "…" not in wide.output
    monkeypatch.setattr(console, "width", 60)  # 60 - 1 - 2 x (14 + 3) = 25 columns: two runs of 6-digit figures
    narrow = runner.invoke(app, ["history", "--store", str(db), "--metric", "throughput"])
    said = " ".join(narrow.output.split())
    assert "the last 2 of 3 runs (--last), as many as 60 columns hold (COLUMNS)" in said, narrow.output
    assert re.search(r"\b1\d,\d{3}\b", narrow.output) and "…" not in narrow.output
    assert max(map(len, narrow.output.splitlines())) <= 60


def test_latest_is_the_run_that_ended_last_so_report_renders_the_resumed_run(
        app: typer.Typer, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an older run was resumed and finished (its report in reports/<name>), `edgebench report` took 'latest' by
    start time and rendered another run over that report, saying nothing."""
    monkeypatch.chdir(tmp_path)
    with Store.open(db) as store:
        resumed, newest = store.resolve_run("v1"), store.resolve_run("v3")
        store.finish_run(resumed)  # resumed later: it ends after every other run
        assert store.resolve_run("latest") == resumed
    rendered = runner.invoke(app, ["report", "--store", str(db)])
    assert rendered.exit_code == 0, rendered.output
    assert resumed in (tmp_path / "reports" / "synthetic" / "index.html").read_text()
    other = runner.invoke(app, ["report", "--store", str(db), "--run", "v3"])  # beside the resumed run's, not over it
    assert other.exit_code == 0, other.output
    assert (tmp_path / "reports" / f"synthetic-{newest}" / "index.html").exists()
    assert newest not in (tmp_path / "reports" / "synthetic" / "index.html").read_text()


def test_report_renders_into_the_runs_own_report_dir(app: typer.Typer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose experiment set report.dir had its report there; `edgebench report` wrote the re-render to
    reports/<name> instead, a second copy the team's links never pointed at. An older run's goes beside it."""
    monkeypatch.chdir(tmp_path)
    with Store.open(tmp_path / "team.db") as store:
        older = fill_run(store, seed=1, experiment={"report": {"dir": "site/bench"}})
        latest = fill_run(store, seed=2, experiment={"report": {"dir": "site/bench"}})
    assert runner.invoke(app, ["report", "--store", str(tmp_path / "team.db")]).exit_code == 0
    assert latest in (tmp_path / "site" / "bench" / "index.html").read_text()
    assert runner.invoke(app, ["report", "--store", str(tmp_path / "team.db"), "--run", older]).exit_code == 0
    assert older in (tmp_path / "site" / f"bench-{older}" / "index.html").read_text()
    assert not (tmp_path / "reports").exists()


def test_an_empty_run_reference_is_refused_not_matched_as_every_ids_prefix(app: typer.Typer, tmp_path: Path) -> None:
    """'' is the prefix of every id: `delete "$RUN" --yes` with RUN unset deleted a store's only run."""
    with Store.open(tmp_path / "one.db") as store:
        only = fill_run(store, seed=1)
    for command in (["delete", "", "--yes"], ["delete", " ", "--yes"], ["tag", "", "x"], ["report", "--run", ""],
                    ["export", str(tmp_path / "x.csv"), "--run", ""]):
        result = runner.invoke(app, [*command, "--store", str(tmp_path / "one.db")])
        assert result.exit_code == 2 and "empty run reference" in result.output, (command, result.output)
    with Store.open(tmp_path / "one.db") as store:
        assert store.runs()["id"].tolist() == [only] and store.get_run(only)["tags"] == []


def test_export_and_import(app: typer.Typer, db: Path, tmp_path: Path) -> None:
    csv = tmp_path / "all.csv"
    assert runner.invoke(app, ["export", str(csv), "--store", str(db), "--run", "v1"]).exit_code == 0
    assert len(pd.read_csv(csv)) == 21
    text = runner.invoke(app, ["export", str(tmp_path / "all.txt"), "--store", str(db)])
    assert text.exit_code == 2 and "name it .csv or .parquet, or give --format" in text.output
    assert not (tmp_path / "all.txt").exists()
    lab = tmp_path / "lab.db"
    failed = runner.invoke(app, ["import", str(db), "--store", str(lab), "--run", "v9"])
    assert failed.exit_code == 2 and "'v9'" in failed.output
    assert not lab.exists(), "a failed import into a new file left an empty store behind"
    first = runner.invoke(app, ["import", str(db), "--store", str(lab)])
    assert first.exit_code == 0 and "imported 3 run(s)" in first.output
    again = runner.invoke(app, ["import", str(db), "--store", str(lab)])
    assert "imported 0 run(s) (all already present)" in again.output


def test_runs_counts_measured_and_failed_jobs_apart(app: typer.Typer, tmp_path: Path) -> None:
    """`runs` showed "measurements 54, failed 4" for 50 measured and 4 failed jobs, which read as 58."""
    with Store.open(tmp_path / "r.db") as store:
        run_id = fill_run(store, fail_one=True)
        rows = store.measurements(run_id)
    failed = int((rows["status"] != "ok").sum())
    assert failed >= 1
    shown = runner.invoke(app, ["runs", "--store", str(tmp_path / "r.db")], env={"COLUMNS": "250"})
    header, line = (next(x for x in shown.output.splitlines() if key in x) for key in ("measured", run_id))
    cells = [c.strip() for c in line.strip("│ ").split("│")]
    assert "measurements" not in header and cells[5:7] == [str(len(rows) - failed), str(failed)], shown.output


def test_runs_says_a_running_run_has_no_live_process_once_its_lock_is_free(
        app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a SIGKILL the run stayed 'running' in `edgebench runs` with nothing driving it."""
    from edgebench.cache_files import try_lock
    from edgebench.executor.host_lanes import LOCK_DIR_ENV
    from edgebench.store import Store

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    with Store.open(tmp_path / "r.db") as store:
        run_id = store.start_run("killed", {}, "h", {"hostname": "here"})
    held = try_lock(tmp_path / "locks" / f"run-{run_id}")  # as the driving process holds it
    runner = CliRunner()
    alive = runner.invoke(app, ["runs", "--store", str(tmp_path / "r.db")], env={"COLUMNS": "250"})
    assert "running" in alive.output and "no live process" not in alive.output
    held.close()  # the process died
    dead = runner.invoke(app, ["runs", "--store", str(tmp_path / "r.db")], env={"COLUMNS": "250"})
    assert "running (no live process here: the same command resumes it)" in " ".join(dead.output.split())


def test_delete_lists_first_then_removes_a_run_with_everything_of_its_own(
        app: typer.Typer, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab's store grew by every run with no way to drop one; `delete` lists, `--yes` deletes, the rest stays."""
    from sqlalchemy import func, select

    from edgebench.executor.host_lanes import LOCK_DIR_ENV
    from edgebench.store.schema import layer_profile_rows, measurements, run_tags, runs, samples, variants

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    with Store.open(db) as store:
        v2 = store.resolve_run("v2")
        before = {r: len(store.measurements(r)) for r in store.runs()["id"]}
        kept_samples = store.samples(int(store.measurements(store.resolve_run("v1"))["id"].iloc[0]))

    def count(table, where=None) -> int:
        with Store.open(db) as store, store.engine.connect() as conn:
            query = select(func.count()).select_from(table)
            return conn.execute(query if where is None else query.where(where)).scalar()

    n_variants, n_samples = count(variants), count(samples)
    listed = runner.invoke(app, ["delete", "v2", "--store", str(db)], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and v2 in listed.output and f"{before[v2]} measurement(s), tags v2" in listed.output
    assert "nothing deleted: add --yes" in listed.output and count(runs) == 3  # only listed

    gone = runner.invoke(app, ["delete", "v2", "--yes", "--store", str(db)])
    assert gone.exit_code == 0 and f"deleted 1 run(s) and their {before[v2]} measurement(s)" in gone.output
    assert count(runs) == 2 and count(measurements, measurements.c.run_id == v2) == 0
    assert count(run_tags, run_tags.c.run_id == v2) == 0 and count(variants) == n_variants
    assert 0 < count(samples) < n_samples  # its samples went with it (no orphans), the others' stayed
    assert count(samples) == count(measurements, measurements.c.status == "ok")
    with Store.open(db) as store:
        assert {r: len(store.measurements(r)) for r in store.runs()["id"]} == {r: n for r, n in before.items() if r != v2}
        assert (store.samples(int(store.measurements(store.resolve_run("v1"))["id"].iloc[0])) == kept_samples).all()
    assert count(layer_profile_rows) == 0
    missing = runner.invoke(app, ["delete", "v2", "--yes", "--store", str(db)])
    assert missing.exit_code == 2 and "no run or tag 'v2'" in missing.output


def test_delete_takes_a_profiled_run_with_its_layer_rows(app: typer.Typer, tmp_path: Path) -> None:
    from sqlalchemy import func, select

    from edgebench.store.schema import layer_profile_rows, layer_profiles

    profile = {"runtime": "onnxruntime", "status": "ok", "reason": None, "run_ms": 1.0, "runs": 3, "ops": [],
               "rows": [{"layer": "conv1", "op": "Conv", "time_ms": 0.5, "time_share": 0.5, "compute_ms": 0.5,
                         "macs": 10, "macs_share": 0.5, "c_in": 1, "c_out": 8, "ops": 1}]}
    with Store.open(tmp_path / "p.db") as store:
        kept, profiled = (fill_run(store, seed=s, profiles={"baseline/fp32": profile}) for s in (1, 2))
        with store.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(layer_profile_rows)).scalar() == 2
    assert runner.invoke(app, ["delete", profiled, "--yes", "--store", str(tmp_path / "p.db")]).exit_code == 0
    with Store.open(tmp_path / "p.db") as store, store.engine.connect() as conn:
        owners = set(conn.execute(select(layer_profiles.c.measurement_id)).scalars())
        assert conn.execute(select(func.count()).select_from(layer_profile_rows)).scalar() == 1
        assert owners <= set(store.measurements(kept)["id"]) and len(owners) == 1


def test_delete_refuses_a_run_a_live_process_drives_and_one_no_process_here_drove(
        app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.cache_files import lock_file, try_lock
    from edgebench.executor.host_lanes import LOCK_DIR_ENV

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "locks"))
    with Store.open(tmp_path / "r.db") as store:
        live, elsewhere = (store.start_run(name, {}, "h", {"hostname": "here"}) for name in ("live", "elsewhere"))
    held = try_lock(tmp_path / "locks" / f"run-{live}")  # as the driving process holds it
    busy = runner.invoke(app, ["delete", live, "--yes", "--store", str(tmp_path / "r.db")])
    assert busy.exit_code == 2 and "being measured by a live process on this host" in busy.output
    unknown = runner.invoke(app, ["delete", elsewhere, "--yes", "--store", str(tmp_path / "r.db")])
    assert unknown.exit_code == 2 and "--force deletes it anyway; nothing deleted" in " ".join(unknown.output.split())
    assert not lock_file(tmp_path / "locks" / f"run-{elsewhere}").exists()  # asking left no lock file behind
    with Store.open(tmp_path / "r.db") as store:
        assert set(store.runs()["id"]) == {live, elsewhere}
    assert runner.invoke(app, ["delete", elsewhere, "--yes", "--force", "--store", str(tmp_path / "r.db")]).exit_code == 0
    held.close()  # the process died: its run can go without --force
    assert runner.invoke(app, ["delete", live, "--yes", "--store", str(tmp_path / "r.db")]).exit_code == 0
    with Store.open(tmp_path / "r.db") as store:
        assert store.runs().empty


def test_compare_names_another_experiment_in_every_format(app: typer.Typer, tmp_path: Path) -> None:
    """The line that says the sides are two experiments is in the table, the Markdown and the JSON alike."""
    path = tmp_path / "results.db"
    store = Store.open(path)
    fill_run(store, "other", seed=1, tags=("otherbase",), experiment={"model": {"name": "resnet56_cifar"}})
    fill_run(store, "my", seed=2, tags=("cand",), experiment={"model": {"name": "digits_cnn"}})
    store.close()
    line = "different experiments: baseline 'other' (model resnet56_cifar) vs candidate 'my' (model digits_cnn)"
    for form in ("table", "markdown", "json"):
        out = runner.invoke(app, ["compare", "otherbase", "cand", "--store", str(path), "--format", form])
        assert line in " ".join(out.output.split()), (form, out.output)
