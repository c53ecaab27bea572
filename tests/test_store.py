"""Store API on a real SQLite file: runs, variants, measurements, samples, resume, migrations."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event
from store_fixtures import MACHINE, fill_run, make_foundation_store, variant_specs

import edgebench
from edgebench.job import JobResult
from edgebench.measure.stats import latency_intervals, order_statistic_ranks
from edgebench.store import SCHEMA_VERSION, Store, StoreError, sample_codec
from edgebench.store.record import MeasurementRecord


def _ok_result(job_id: str, samples: list[int]) -> JobResult:
    return JobResult(
        job_id=job_id,
        status="ok",
        accuracy=0.9,
        latency_ms={"p50": 1.0, "p90": 1.1, "p99": 1.2, "mean": 1.0, "std": 0.1, "min": 0.9, "max": 1.3},
        throughput_ips=1000.0,
        samples_ns=samples,
        runtime={"onnxruntime": "1.20.0"},
    )


def test_open_creates_parent_dir_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "results.db"
    Store.open(path).close()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        version = conn.execute("select max(version) from schema_version").fetchone()[0]
    assert {"runs", "run_tags", "variants", "measurements", "samples", "schema_version"} <= tables
    assert version == SCHEMA_VERSION
    Store.open(f"sqlite:///{path}").close()  # a URL to the same file reopens it


def test_sqlite_uri_filename_opens_the_file_and_makes_no_stray_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.db"
    Store.open(path).close()
    monkeypatch.chdir(tmp_path)
    with Store.open(f"sqlite:///file:{path}?mode=ro&uri=true") as store:
        assert store.runs().empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]  # no ./file:/... directories


def test_run_lifecycle_and_resume(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {"epochs": 1}, "h1", MACHINE, tags=("nightly",))
    assert sqlite_store.find_resumable_run("h1") == run_id
    assert sqlite_store.find_resumable_run("other") is None
    # only its own host and edgebench resume it: another host may still be driving it (its lock is not visible
    # here), and another edgebench would mix two versions' figures under the first one's commit
    here = {**MACHINE, "edgebench_version": edgebench.__version__}  # what machine_info records
    assert sqlite_store.find_resumable_run("h1", machine=here) == run_id
    assert sqlite_store.find_resumable_run("h1", machine={**here, "hostname": "lab-host-b"}) is None
    assert sqlite_store.find_resumable_run("h1", machine={**here, "edgebench_commit": "0ldc0mm1t"}) is None
    result = _ok_result("job-a", [5, 6, 7])
    sqlite_store.add_measurement(MeasurementRecord(run_id, "job-a", "v1", "local-cpu", "onnxruntime", result, {"threads": 1}, 10))
    assert sqlite_store.done_job_keys(run_id) == {"job-a"}
    sqlite_store.finish_run(run_id)
    assert sqlite_store.find_resumable_run("h1") is None
    run = sqlite_store.get_run(run_id)
    assert run["status"] == "finished" and run["finished_at"] >= run["started_at"]
    assert run["machine"]["cpu_model"] == MACHINE["cpu_model"]
    assert run["edgebench_commit"] == "abc1234"
    assert run["tags"] == ["nightly"]
    with pytest.raises(StoreError, match="no run"):
        sqlite_store.finish_run("does-not-exist")


def test_add_measurement_is_idempotent_and_keeps_samples(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    raw = [1_000_000 + i * 17 for i in range(1000)]
    args = (run_id, "job-a", "v1", "local-cpu", "onnxruntime", {"threads": 2, "batch_size": 1, "scenario": "single_stream"})
    sqlite_store.add_measurement(MeasurementRecord(*args[:5], _ok_result("job-a", raw), args[5], 123))
    sqlite_store.add_measurement(MeasurementRecord(*args[:5], _ok_result("job-a", raw[:10]), args[5], 456))  # a retry replaces, never duplicates
    df = sqlite_store.measurements(run_id)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["size_bytes"] == 456 and row["threads"] == 2 and row["scenario"] == "single_stream"
    assert row["p50_ms"] == 1.0 and row["runtime"] == {"onnxruntime": "1.20.0"}
    got = sqlite_store.samples(int(row["id"]))
    assert got.dtype == np.int64 and got.tolist() == raw[:10]
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from samples").scalar() == 1


def test_samples_are_stored_compactly(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    raw = np.random.default_rng(0).integers(900_000, 1_100_000, 20_000).tolist()
    sqlite_store.add_measurement(MeasurementRecord(run_id, "j", "v", "t", "b", _ok_result("j", raw)))
    mid = int(sqlite_store.measurements(run_id)["id"].iloc[0])
    assert np.array_equal(sqlite_store.samples(mid), raw)
    with sqlite_store.engine.connect() as conn:
        blob_len = conn.exec_driver_sql("select length(data) from samples").scalar()
    assert blob_len < 8 * len(raw)


def test_samples_read_back_exactly_in_order_and_smaller_than_before(sqlite_store: Store) -> None:
    rng = np.random.default_rng(3)
    # a 20 us model's samples: a few hundred ns of jitter and rare 10x spikes (a preempted iteration)
    raw = (20_000 + rng.integers(-300, 300, 5000) + (rng.random(5000) < 0.01) * 200_000).tolist()
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    sqlite_store.add_measurement(MeasurementRecord(run_id, "j", "v", "t", "b", _ok_result("j", raw)))
    mid = int(sqlite_store.measurements(run_id)["id"].iloc[0])
    assert sqlite_store.samples(mid).tolist() == raw
    with sqlite_store.engine.connect() as conn:
        encoding, blob = conn.exec_driver_sql("select encoding, data from samples").one()
    assert encoding == sample_codec.ENCODING
    assert len(blob) < 0.8 * len(zlib.compress(np.asarray(raw, dtype="<i8").tobytes(), 6))  # the legacy encoding


def test_legacy_sample_blobs_still_decode() -> None:
    raw = np.array([5, -3, 2**40, 0], dtype=np.int64)
    legacy = zlib.compress(raw.astype("<i8").tobytes(), 6)
    assert sample_codec.decode_samples(legacy, "i8le-zlib").tolist() == raw.tolist()
    extremes = np.array([0, 2**62, -(2**63) + 1, 127, 128, 16384, -1], dtype=np.int64)
    assert sample_codec.decode_samples(sample_codec.encode_samples(extremes), sample_codec.ENCODING).tolist() == \
        extremes.tolist()
    with pytest.raises(StoreError, match="unknown samples encoding"):
        sample_codec.decode_samples(legacy, "f8-gzip")


def test_percentile_intervals_are_stored_with_the_measurement(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    raw = [1_000_000 + i * 1000 for i in range(100)]  # 1.000 .. 1.099 ms
    result = _ok_result("j", raw).model_copy(update={"latency_ci_ms": latency_intervals(raw)})
    sqlite_store.add_measurement(MeasurementRecord(run_id, "j", "v", "t", "b", result))
    sqlite_store.add_measurement(MeasurementRecord(run_id, "old", "v", "t", "b", _ok_result("old", raw)))
    df = sqlite_store.measurements(run_id).set_index("job_key")
    lower, upper = order_statistic_ranks(100, 0.5)
    assert df.loc["j", "p50_low_ms"] == pytest.approx(1 + (lower - 1) * 0.001)
    assert df.loc["j", "p50_high_ms"] == pytest.approx(1 + (upper - 1) * 0.001)
    assert df.loc["j", "ci_confidence"] == 0.95
    assert pd.isna(df.loc["j", "p99_low_ms"])  # 100 samples are too few for a p99 interval
    assert pd.isna(df.loc["old", "p50_low_ms"])  # a result without intervals (an older worker's) stores none


def test_nodes_a_gpu_runtime_left_to_the_cpu_are_a_column(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    # what ORT's CUDA provider recorded for the digits CNN's int8 file on an H200 (README)
    int8 = {"CPUExecutionProvider": {"DequantizeLinear": 4},
            "CUDAExecutionProvider": {"Conv": 3, "DequantizeLinear": 11, "MemcpyFromHost": 4, "QuantizeLinear": 7}}
    for key, details in (("int8", {"placement": int8}), ("fp32", {"placement": {"CUDAExecutionProvider": {"Conv": 3}}}),
                         ("cpu", {})):
        result = _ok_result(key, [1_000_000] * 10).model_copy(update={"details": details})
        sqlite_store.add_measurement(MeasurementRecord(run_id, key, "v", "t", "onnxruntime_cuda", result))
    df = sqlite_store.measurements(run_id).set_index("job_key")
    assert df.loc["int8", "nodes_on_cpu"] == 4 and df.loc["fp32", "nodes_on_cpu"] == 0
    assert pd.isna(df.loc["cpu", "nodes_on_cpu"])  # no placement recorded: unknown, not zero


def test_measurements_join_variant_columns(filled_store: tuple[Store, str]) -> None:
    store, run_id = filled_store
    df = store.measurements(run_id)
    specs = variant_specs()
    assert len(df) == len(specs) + 1
    assert set(df["status"]) == {"ok", "failed"}
    failed = df[df["status"] == "failed"].iloc[0]
    assert "timed out" in failed["error"] and np.isnan(failed["p50_ms"])
    ok = df[df["status"] == "ok"]
    base = ok[(ok["criterion"].isna()) & (ok["precision"] == "fp32")].iloc[0]
    assert base["label"] == "baseline/fp32" and base["ratio"] == 0.0
    pruned = ok[(ok["criterion"] == "l1") & (ok["ratio"] == 0.5) & (ok["precision"] == "int8")].iloc[0]
    assert pruned["macs"] < base["macs"] and pruned["params"] < base["params"]
    assert pruned["parent_id"] is not None and pruned["training_macs"] > 0
    assert pruned["n_samples"] == len(store.samples(int(pruned["id"])))
    assert set(ok["schedule"].dropna()) == {"while_training"}


def test_upsert_variant_merges_facts(sqlite_store: Store) -> None:
    sqlite_store.upsert_variant("v1", {"model": "m"}, "baseline/fp32", None, {"params": 10, "macs": 100.0})
    sqlite_store.upsert_variant("v1", {"model": "m"}, "baseline/fp32", None, {"val_accuracy": 0.9})
    with sqlite_store.engine.connect() as conn:
        rows = conn.exec_driver_sql("select params, macs, facts from variants").all()
    assert len(rows) == 1 and rows[0][0] == 10 and rows[0][1] == 100.0
    assert '"val_accuracy": 0.9' in rows[0][2] and '"params": 10' in rows[0][2]


def test_tags_resolve_to_latest_run(sqlite_store: Store) -> None:
    first = fill_run(sqlite_store, seed=1, tags=("main",))
    second = fill_run(sqlite_store, seed=2)
    sqlite_store.tag_run(second, "main")
    sqlite_store.tag_run(second, "main")  # tagging twice is a no-op
    assert sqlite_store.resolve_run("main") == second
    assert sqlite_store.resolve_run(first) == first
    assert sqlite_store.resolve_run("latest") == second
    assert sqlite_store.get_run("main")["tags"] == ["main"]
    runs = sqlite_store.runs()
    assert list(runs["id"]) == [first, second]
    assert list(runs["n_failed"]) == [1, 1] and list(runs["tags"]) == ["main", "main"]
    with pytest.raises(StoreError, match="no run or tag"):
        sqlite_store.get_run("release-9")


def _writer(path: str, start: int, stop: int) -> None:
    store = Store.open(path)
    run_id = store.find_resumable_run("h") or store.start_run("exp", {}, "h", MACHINE)
    done = store.done_job_keys(run_id)
    for i in range(start, stop):
        if f"job-{i}" not in done:
            store.add_measurement(MeasurementRecord(run_id, f"job-{i}", "v", "t", "b", _ok_result(f"job-{i}", [i] * 50)))
    store.close()


def _stored_rows(store: Store) -> int:
    """The measurements the writer's run holds so far (0 before it has started its run)."""
    run_id = store.find_resumable_run("h")
    return 0 if run_id is None else len(store.done_job_keys(run_id))


def test_killed_writer_loses_nothing_and_resume_does_not_duplicate(tmp_path: Path) -> None:
    path = str(tmp_path / "results.db")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_writer, args=(path, 0, 100_000))
    proc.start()
    store = Store.open(path)
    # a spawned writer imports edgebench before its first row: seconds on a busy CI guest, where the 200 x 50 ms joins
    # once allowed ran out. The deadline only guards a hang; a writer that dies early ends the wait, failing the count
    deadline = time.monotonic() + 120
    while proc.is_alive() and time.monotonic() < deadline and _stored_rows(store) < 20:
        proc.join(0.05)
    proc.kill()  # SIGKILL mid-write
    proc.join()
    run_id = store.find_resumable_run("h")
    stored = store.done_job_keys(run_id)
    assert len(stored) >= 20
    df = store.measurements(run_id)
    for _, row in df.iterrows():  # every stored measurement is complete, with its samples
        assert len(store.samples(int(row["id"]))) == 50
    _writer(path, 0, len(stored) + 5)  # resume
    df = store.measurements(run_id)
    assert len(df) == len(set(df["job_key"])) == len(stored | {f"job-{i}" for i in range(len(stored) + 5)})


def test_a_migration_that_fails_is_not_announced_as_done(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store stamped older than its tables (version 3, with version 4's column already there): the upgrade step
    fails and is rolled back, but its warning 'schema upgraded from version 3 to 4' had been said first."""
    path = tmp_path / "results.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("update schema_version set version = 3")  # a new store has one row: its version
    with pytest.raises(StoreError):
        Store.open(path)
    assert "schema upgraded" not in caplog.text
    with sqlite3.connect(path) as conn:  # rolled back: still version 3
        assert max(r[0] for r in conn.execute("select version from schema_version")) == 3


def test_a_foreign_sqlite_file_is_named_with_all_its_tables(tmp_path: Path) -> None:
    """A file of another program that happens to have a 'runs' table was described by its other tables only."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table runs (x int)")
        conn.execute("create table foo (y int)")
    with pytest.raises(StoreError, match=r"a SQLite database of something else \(tables foo, runs\)"):
        Store.open(path)


def test_newer_schema_is_refused_and_old_schema_migrates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.db"
    make_foundation_store(f"sqlite:///{path}")
    # opened read-only, an old store cannot be upgraded: the error says that the upgrade is what needs the write
    with pytest.raises(StoreError, match="store schema version 1 must be upgraded to .* which writes to it: .*readonly"):
        Store.open(f"sqlite:///file:{path}?mode=ro&uri=true")
    store = Store.open(path)
    assert "schema upgraded from version 1 to 2" in caplog.text  # said, not done silently
    run_id = store.start_run("exp", {}, "h", MACHINE, tags=("v1",))
    assert store.resolve_run("v1") == run_id
    details = {"synthesis": {"status": "not synthesised", "reason": "vitis_hls not on PATH"}}
    store.add_measurement(MeasurementRecord(run_id, "k", "v", "t", "hls4ml", JobResult(job_id="k", status="ok", details=details)))
    store.add_measurement(MeasurementRecord(run_id, "f", "v", "t", "b", JobResult(
        job_id="f", status="failed", error="ValueError: x", error_detail="Traceback ...\nValueError: x")))
    df = store.measurements(run_id).set_index("job_key")
    assert df.loc["k", "details"] == details and df.loc["f", "error_detail"].endswith("ValueError: x")
    store.close()
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("select version from schema_version order by version")] == [1, 2, 3, 4, 5, 6]
        conn.execute("insert into schema_version values (99, '2030-01-01T00:00:00Z', 'future')")
    with pytest.raises(StoreError, match="newer than this edgebench"):
        Store.open(path)


def test_bad_url_is_one_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open store"):
        Store.open("nosuchdialect://x/y")


def test_result_without_variant_row_is_labelled_by_id(sqlite_store: Store) -> None:
    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    failed = JobResult(job_id="j", status="failed", error=None)
    sqlite_store.add_measurement(MeasurementRecord(run_id, "j", "abc123", "t", "b", failed))
    row = sqlite_store.measurements(run_id).iloc[0]
    assert row["label"] == "abc123" and row["n_samples"] == 0 and row["status"] == "failed"
    assert sqlite_store.samples(int(row["id"])).size == 0


def test_layer_profiles_are_stored_per_measurement_and_replaced_with_it(sqlite_store: Store) -> None:
    from edgebench.profile.table import LayerInfo, OpTime, build_profile, not_available

    run_id = sqlite_store.start_run("exp", {}, "h", MACHINE)
    layers = {"conv1": LayerInfo("conv1", "Conv", 3000, 3, 16), "fc": LayerInfo("fc", "Gemm", 1000, 16, 10)}
    ops = [OpTime("node_Conv_1", "FusedConv", 0.3, "conv1"), OpTime("reorder", "ReorderInput", 0.1, "conv1"),
           OpTime("node_linear", "Gemm", 0.1, "fc")]
    profile = build_profile("onnxruntime", ops, layers, run_ms=0.6, runs=20)
    result = JobResult(job_id="k", status="ok", layer_profile=profile.to_dict())
    sqlite_store.add_measurement(MeasurementRecord(run_id, "k", "v", "t", "onnxruntime", result))
    unavailable = JobResult(job_id="l", status="ok", layer_profile=not_available("litert", "no profiler").to_dict())
    sqlite_store.add_measurement(MeasurementRecord(run_id, "l", "v", "t", "litert", unavailable))
    sqlite_store.add_measurement(MeasurementRecord(run_id, "m", "v", "t", "torch", JobResult(job_id="m", status="ok")))
    ids = sqlite_store.measurements(run_id).set_index("job_key")["id"]
    stored = sqlite_store.layer_profiles(ids.tolist())
    assert set(stored) == {ids["k"], ids["l"]}  # the measurement that asked for none has none
    back = stored[ids["k"]]
    assert back.to_dict() == profile.to_dict()
    assert back.rows[0].time_share == pytest.approx(0.8) and back.rows[0].compute_ms == pytest.approx(0.3)
    assert stored[ids["l"]].status == "not available" and stored[ids["l"]].reason == "no profiler"
    # a retried job replaces the measurement: its old profile goes with it
    sqlite_store.add_measurement(MeasurementRecord(run_id, "k", "v", "t", "onnxruntime", JobResult(job_id="k", status="ok")))
    new_id = sqlite_store.measurements(run_id).set_index("job_key")["id"]["k"]
    assert sqlite_store.layer_profiles([ids["k"], new_id]) == {}


def test_a_store_locked_past_the_wait_is_one_store_error_and_loses_nothing(tmp_path: Path) -> None:
    """Another process holding the store's write lock past the busy wait (30 s; 0.1 s here) gave a 242-line
    traceback and exit 1 mid-run; it is one StoreError line, and what was stored stays."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        run_id = fill_run(store, seed=1)
        event.listen(store.engine, "connect", lambda conn, _: conn.execute("pragma busy_timeout = 100"))
        store.engine.dispose()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("begin exclusive")
        try:
            with pytest.raises(StoreError, match="database is locked: another process held it locked past the 30 s "
                                                 "wait .* the same command resumes"):
                store.tag_run(run_id, "nightly")
        finally:
            holder.execute("rollback")
            holder.close()
        assert store.runs()["id"].tolist() == [run_id]


def test_a_damaged_store_is_one_store_error(tmp_path: Path) -> None:
    """A damaged page met by a read ('database disk image is malformed') is one line saying to restore a copy."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        fill_run(store, seed=1)
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page:3 * page] = b"\xff" * page  # a b-tree page of the tables, not the header
    path.write_bytes(bytes(data))
    damaged = "database disk image is malformed: the file is damaged: restore a copy"
    with pytest.raises(StoreError, match=damaged), Store.open(path) as store:
        for run_id in store.runs()["id"]:
            store.measurements(run_id)


def test_a_full_disk_is_one_store_error_and_loses_nothing(tmp_path: Path) -> None:
    """SQLite's "database or disk is full" (here: the page count capped at what the file holds, as a full
    filesystem leaves it) becomes one StoreError line; the transaction rolls back and what was stored stays."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        run_id = fill_run(store, seed=1)
        before = store.measurements(run_id)
        pages = sqlite3.connect(path).execute("pragma page_count").fetchone()[0]
        event.listen(store.engine, "connect", lambda conn, _: conn.execute(f"pragma max_page_count = {pages}"))
        store.engine.dispose()  # new connections get the cap
        with pytest.raises(StoreError, match="disk is full: cannot write to it: free space on its filesystem; the "
                                             "write was rolled back, what was stored before stands"):
            fill_run(store, seed=2)
    with Store.open(path) as store:
        pd.testing.assert_frame_equal(store.measurements(run_id), before)
        assert run_id in store.runs()["id"].tolist()


def test_a_store_made_unwritable_mid_run_is_one_store_error_and_loses_nothing(tmp_path: Path) -> None:
    """`chattr +i runs/x runs/x/results.db` mid-run: SQLite's "unable to open database file" (no journal file can be
    made beside the database) came out of `edgebench run` as a 239-line traceback with exit 1, a failed gate's code."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        run_id = fill_run(store, seed=1)
        before = store.measurements(run_id)

        def unwritable(_conn, _cursor, statement: str, *_args) -> None:  # what an immutable directory makes a write
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError("unable to open database file")

        event.listen(store.engine, "before_cursor_execute", unwritable)
        with pytest.raises(StoreError) as raised:
            fill_run(store, seed=2)
        event.remove(store.engine, "before_cursor_execute", unwritable)
    assert str(raised.value).startswith(f"store sqlite:///{path}: unable to open database file: ")
    assert "make the file and its directory writable" in str(raised.value) and "\n" not in str(raised.value)
    assert raised.value.exit_code == 2  # not 1, a failed gate's
    with Store.open(path) as store:
        pd.testing.assert_frame_equal(store.measurements(run_id), before)


def test_a_store_that_cannot_be_created_is_not_said_to_be_deleted_while_open(tmp_path: Path, monkeypatch) -> None:
    """A new store in a directory SQLite may not create files in fails while connecting: its file was never there,
    so the line says to make the directory writable, not that the file was deleted or moved while open."""
    def refused(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3.dbapi2, "connect", refused)  # what SQLAlchemy's dialect calls
    with pytest.raises(StoreError, match="make the file and its directory writable") as raised:
        Store.open(tmp_path / "results.db")
    assert "deleted or moved" not in str(raised.value)


def test_a_store_deleted_while_open_says_so_not_to_change_permissions(tmp_path: Path) -> None:
    """`rm -rf runs/x` mid-run: SQLite's "attempt to write a readonly database" became "make the file writable ...
    what was stored before stands" for a file that no longer exists."""
    path = tmp_path / "results.db"
    with Store.open(path) as store:
        fill_run(store, seed=1)
        path.unlink()
        with pytest.raises(StoreError, match=r"the file was deleted or moved while it was open .* run again to start "
                                             r"a new store$"):
            fill_run(store, seed=2)


def test_a_relative_sqlite_store_is_named_absolute_for_readers_that_may_chdir(tmp_path: Path, monkeypatch) -> None:
    """store.url: sqlite:///runs/rel.db stayed relative in Results: after a chdir it read (and created) another."""
    from edgebench.store.connection import absolute_store_url

    monkeypatch.chdir(tmp_path)
    assert absolute_store_url("sqlite:///runs/rel.db") == f"sqlite:///{tmp_path / 'runs' / 'rel.db'}"
    assert absolute_store_url("runs/rel.db") == f"sqlite:///{tmp_path / 'runs' / 'rel.db'}"
    assert absolute_store_url("sqlite:////data/x.db") == "sqlite:////data/x.db"
    assert absolute_store_url("postgresql://lab/results") == "postgresql://lab/results"


def test_messages_never_show_the_databases_password(tmp_path: Path) -> None:
    """`no run or tag 'x' in postgresql+psycopg://postgres:s3cret@...` printed the password into CI logs."""
    from edgebench.store.store import shown_url

    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/eb"
    assert shown_url(url) == "postgresql+psycopg://postgres:***@127.0.0.1:5432/eb"
    assert shown_url("runs/results.db") == "runs/results.db"
    with Store.open(tmp_path / "r.db") as store:
        store.url = url  # the messages' path, without a server: the engine stays the SQLite file's
        with pytest.raises(StoreError) as raised:
            store.resolve_run("nosuch")
    assert "s3cret" not in str(raised.value) and "postgres:***@" in str(raised.value)


def test_a_tag_that_starts_another_runs_id_is_refused(sqlite_store: Store) -> None:
    """Tags are looked up before id prefixes: tagging run B with the start of run A's id made that prefix name B."""
    first, second = fill_run(sqlite_store, seed=1), fill_run(sqlite_store, seed=2)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    prefix = first[:shared + 1]  # names the first alone
    with pytest.raises(StoreError, match=f"tag '{prefix}' is the start of run {first}'s id"):
        sqlite_store.tag_run(second, prefix)
    assert sqlite_store.resolve_run(prefix) == first
    sqlite_store.tag_run(first, prefix)  # its own id's start names it either way
    assert sqlite_store.resolve_run(prefix) == first
