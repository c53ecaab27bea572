"""CSV/Parquet export and store-to-store import on real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update
from store_fixtures import fill_run

from edgebench.store import Store, StoreError
from edgebench.store.schema import runs
from edgebench.store.transfer import export_runs, import_runs


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(filled_store: tuple[Store, str], tmp_path: Path, suffix: str) -> None:
    store, run_id = filled_store
    store.tag_run(run_id, "release-1.2")
    files = export_runs(store, tmp_path / f"out{suffix}", ["release-1.2"], with_samples=True)
    assert [f.name for f in files] == [f"out{suffix}", f"out.samples{suffix}"]
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    table, long = read(files[0]), read(files[1])
    original = store.measurements(run_id)
    assert len(table) == len(original)
    assert set(table["run_tags"]) == {"release-1.2"} and set(table["run_id"]) == {run_id}
    assert np.allclose(table["p50_ms"].fillna(-1), original["p50_ms"].fillna(-1))
    assert json.loads(table["settings"].iloc[0]) == original["settings"].iloc[0]
    assert len(long) == original["n_samples"].sum()
    first = int(original["id"].iloc[0])
    got = long[long["measurement_id"] == first].sort_values("iteration")["latency_ns"].to_numpy()
    assert np.array_equal(got, store.samples(first))


def test_export_says_whether_each_run_had_finished(tmp_path: Path) -> None:
    """`edgebench export` during a run wrote its rows as if the run were finished: the run's status and end are
    columns, so a half-measured run is told from a finished one."""
    with Store.open(tmp_path / "r.db") as store:
        done, measuring = fill_run(store, seed=1), fill_run(store, seed=2)
        with store.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == measuring).values(status="running", finished_at=None))
        table = pd.read_csv(export_runs(store, tmp_path / "out.csv")[0])
    by_run = table.groupby("run_id")
    assert set(by_run.get_group(done)["run_status"]) == {"finished"}
    assert by_run.get_group(done)["run_finished_at"].notna().all()
    assert set(by_run.get_group(measuring)["run_status"]) == {"running"}
    assert by_run.get_group(measuring)["run_finished_at"].isna().all()


def test_export_rejects_unknown_format(filled_store: tuple[Store, str], tmp_path: Path) -> None:
    store, _ = filled_store
    with pytest.raises(StoreError, match="unknown export format"):
        export_runs(store, tmp_path / "x.xlsx", fmt="xlsx")  # type: ignore[arg-type]


def test_import_copies_runs_once(tmp_path: Path) -> None:
    src = Store.open(tmp_path / "host1.db")
    first = fill_run(src, seed=1, tags=("nightly",))
    second = fill_run(src, seed=2)
    src.close()
    dest = Store.open(tmp_path / "lab.db")
    assert import_runs(dest, tmp_path / "host1.db", ["nightly"]) == [first]
    assert import_runs(dest, str(tmp_path / "host1.db")) == [second]  # the first is already there
    assert import_runs(dest, tmp_path / "host1.db") == []
    src = Store.open(tmp_path / "host1.db")
    for run_id in (first, second):
        a, b = src.measurements(run_id), dest.measurements(run_id)
        assert len(a) == len(b) and list(a["job_key"]) == list(b["job_key"])
        assert np.array_equal(src.samples(int(a["id"].iloc[3])), dest.samples(int(b["id"].iloc[3])))
        assert list(b["macs"].fillna(-1)) == list(a["macs"].fillna(-1))
    assert dest.get_run("nightly")["id"] == first
    src.close()
    dest.close()


def test_importing_again_completes_a_run_and_keeps_layer_profiles(tmp_path: Path) -> None:
    """A host's store imported while its run was unfinished gained nothing when imported again (the run stayed
    'running' with half its results), and per-layer profiles never crossed."""
    from edgebench.job import JobResult
    from edgebench.profile.table import LayerProfile
    from edgebench.store.record import MeasurementRecord

    profile = LayerProfile("onnxruntime", "not available", reason="no profiler here").to_dict()
    src = Store.open(tmp_path / "host1.db")
    run_id = fill_run(src, seed=1, profiles={"baseline/fp32": profile})
    with src.engine.begin() as conn:  # as the run stood mid-way: unfinished, before its last result and tag
        conn.exec_driver_sql("update runs set finished_at = null, status = 'running'")
    src.close()
    dest = Store.open(tmp_path / "lab.db")
    assert import_runs(dest, tmp_path / "host1.db") == [run_id]
    halfway = len(dest.measurements(run_id))
    src = Store.open(tmp_path / "host1.db")  # the host's run goes on: one more result, a tag, and its end
    spec_id = src.measurements(run_id).iloc[0]["variant_id"]
    src.add_measurement(MeasurementRecord(run_id, "late-job", spec_id, "local-cpu", "torch",
                                          JobResult(job_id="late-job", status="failed", error="boom"), {"threads": 1}))
    src.tag_run(run_id, "nightly")
    src.finish_run(run_id)
    src.close()
    assert import_runs(dest, tmp_path / "host1.db") == [run_id]
    assert len(dest.measurements(run_id)) == halfway + 1 and dest.get_run("nightly")["status"] == "finished"
    assert import_runs(dest, tmp_path / "host1.db") == []  # nothing left to add
    with_profile = dest.measurements(run_id).query("label == 'baseline/fp32'")["id"]
    stored = dest.layer_profiles([int(i) for i in with_profile])
    assert [p.reason for p in stored.values()] == ["no profiler here"]
    dest.close()


def test_a_tag_names_every_run_that_carries_it_in_import_and_export(tmp_path: Path) -> None:
    """A CI job's repeats share a tag: `import --run main` copied the latest one only, and `export --run main`
    wrote one run, while compare --repeats reads them all."""
    src = Store.open(tmp_path / "ci.db")
    repeats = [fill_run(src, seed=i, tags=("main",)) for i in range(2)]
    other = fill_run(src, seed=5, tags=("pr",))
    csv = export_runs(src, tmp_path / "main.csv", ["main"])[0]
    assert sorted(set(pd.read_csv(csv)["run_id"])) == sorted(repeats)
    src.close()
    dest = Store.open(tmp_path / "lab.db")
    assert sorted(import_runs(dest, tmp_path / "ci.db", ["main"])) == sorted(repeats)
    assert other not in set(dest.runs()["id"])
    dest.close()


def test_an_imported_tag_that_starts_another_runs_id_is_left_out_saying_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Tagging refuses a tag that is the start of another run's id (the tag would capture `--run <prefix>`); import
    inserted such tags unchecked, so a prefix that named a run of the store named the imported one after it."""
    dest = Store.open(tmp_path / "lab.db")
    own = fill_run(dest, seed=1)
    src = Store.open(tmp_path / "host.db")
    prefix = own[:-2]
    imported = fill_run(src, seed=2, tags=(prefix, "nightly"))
    src.close()
    with caplog.at_level("WARNING", logger="edgebench.store.transfer"):
        assert import_runs(dest, tmp_path / "host.db") == [imported]
    assert dest.resolve_run(prefix) == own and dest.get_run(imported)["tags"] == ["nightly"]
    assert f"run {imported} imported without its tag: tag '{prefix}' is the start of run {own}'s id" in caplog.text
    dest.close()
