"""CSV/Parquet export and store-to-store import on real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from store_fixtures import fill_run

from edgebench.store import Store, StoreError
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
