"""Moving results out of and between stores: CSV/Parquet export and store-to-store import.

Export flattens a run's measurements (joined with variant and run columns) into
one table for pandas, spreadsheets or a data warehouse; raw samples go to an
optional long-format file. Import copies runs from another store URL, each run in
one transaction; a run the destination already has gains what it lacks (results
measured since, tags, its end), so a lab can merge benchmark hosts' SQLite files
into a shared PostgreSQL store repeatedly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update

from edgebench.errors import extra_install_hint
from edgebench.store.connection import shown_url
from edgebench.store.profiles import insert_profile, read_profiles
from edgebench.store.schema import StoreError, measurements, run_tags, runs, samples, variants
from edgebench.store.store import Store, refuse_shadowing

log = logging.getLogger(__name__)

ExportFormat = Literal["csv", "parquet"]
_JSON_COLUMNS = ("settings", "runtime", "details", "spec", "facts")


def export_table(store: Store, run_ids: Sequence[str]) -> pd.DataFrame:
    """Measurements of ``run_ids`` with the run's name, start, status, end and tags; nested fields as JSON text."""
    frames = []
    for run_id in run_ids:
        run = store.get_run(run_id)
        df = store.measurements(run["id"])
        df.insert(1, "run_name", run["name"])
        df.insert(2, "run_started_at", run["started_at"])
        # rows of a run still measuring (or stopped) look like a finished run's without these
        df.insert(3, "run_status", run["status"])
        df.insert(4, "run_finished_at", run["finished_at"])
        df.insert(5, "run_tags", ",".join(run["tags"]))
        frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for column in _JSON_COLUMNS:
        if column in table:
            table[column] = [json.dumps(v, sort_keys=True) for v in table[column]]
    return table


def export_runs(
    store: Store,
    out: Path,
    run_ids: Sequence[str] | None = None,
    fmt: ExportFormat | None = None,
    with_samples: bool = False,
) -> list[Path]:
    """Write measurements (and optionally raw samples) of runs to CSV or Parquet; return the files written.

    ``run_ids`` accepts ids or tags (default: every run). The format follows ``out``'s suffix unless
    given. Samples go to ``<stem>.samples.<ext>`` with one row per timed iteration.
    """
    out = Path(out)
    if fmt is None and out.suffix.lower() not in (".csv", ".parquet"):
        raise StoreError(f"export file {out}: name it .csv or .parquet, or give --format (csv, parquet)")
    if fmt is not None and out.suffix.lower() in (".csv", ".parquet") and out.suffix.lower() != f".{fmt}":
        raise StoreError(f"export file {out}: --format {fmt} would write {fmt} into a {out.suffix} file; name it "
                         f".{fmt}, or drop --format")
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    if fmt not in ("csv", "parquet"):
        raise StoreError(f"unknown export format {fmt!r}; allowed: csv, parquet")
    # a tag names every run carrying it (a CI job's repeats), as compare --repeats reads them
    ids = list(dict.fromkeys(i for r in run_ids for i in store.resolve_runs(r))) if run_ids else list(store.runs()["id"])
    if not ids:  # an empty file would look like an export that worked
        raise StoreError(f"store {shown_url(store.url)} has no runs yet: nothing to export")
    table = export_table(store, ids)
    if table.empty:  # a header-only file, too, would look like an export that worked
        raise StoreError(f"run{'s' if len(ids) > 1 else ''} {', '.join(ids)} hold{'' if len(ids) > 1 else 's'} no "
                         f"measurements yet: nothing to export (see `edgebench runs --store {shown_url(store.url)}`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out]
    _write(table, out, fmt)
    if with_samples:
        parts = [
            pd.DataFrame({"measurement_id": mid, "iteration": np.arange(len(s)), "latency_ns": s})
            for mid in table.get("id", [])
            if len(s := store.samples(int(mid)))
        ]
        empty = pd.DataFrame(columns=["measurement_id", "iteration", "latency_ns"])
        long = pd.concat(parts, ignore_index=True) if parts else empty
        samples_path = out.with_name(f"{out.stem}.samples{out.suffix or '.' + fmt}")
        _write(long, samples_path, fmt)
        written.append(samples_path)
    log.info("exported %d measurements of %d runs to %s", len(table), len(ids), out)
    return written


def _write(df: pd.DataFrame, path: Path, fmt: ExportFormat) -> None:
    if fmt == "csv":
        df.to_csv(path, index=False)
        return
    try:
        df.to_parquet(path, index=False)
    except ImportError as exc:
        raise StoreError(f"Parquet export needs pyarrow: {extra_install_hint('parquet')}") from exc


def import_runs(dest: Store, source_url: str | Path, run_ids: Sequence[str] | None = None) -> list[str]:
    """Copy runs (default: all) with their variants, tags, measurements, samples and per-layer profiles; return the
    ids of the runs that gained anything.

    A run already in ``dest`` gains what it lacks (measurements of job keys it has not stored, tags, the end of a
    run that was unfinished at the last import), so importing twice adds nothing and importing a host's file
    again completes what it has measured since.
    """
    source = Store.open(source_url)
    try:
        wanted = list(dict.fromkeys(i for r in run_ids for i in source.resolve_runs(r))) if run_ids else \
            list(source.runs()["id"])
        return [run_id for run_id in wanted if _copy_run(source, dest, run_id)]
    finally:
        source.close()


def _without_shadowing(dest: Store, run_id: str, tags: list[dict]) -> list[dict]:
    """``tags`` but those that start another of ``dest``'s run ids (tags are looked up first, so that id prefix
    would then name the imported run): each left out with a warning, as tagging refuses it in one store."""
    kept = []
    with dest.engine.connect() as conn:
        for tag in tags:
            try:
                refuse_shadowing(conn, tag["tag"], run_id)
            except StoreError as exc:
                log.warning("run %s imported without its tag: %s", run_id, exc)
            else:
                kept.append(tag)
    return kept


def _copy_run(source: Store, dest: Store, run_id: str) -> bool:
    """Copy what ``dest`` lacks of ``source``'s run ``run_id``; whether anything was copied."""
    with dest.engine.connect() as conn:
        present = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one_or_none()
        have_keys = set(conn.execute(select(measurements.c.job_key).where(measurements.c.run_id == run_id)).scalars())
        have_tags = set(conn.execute(select(run_tags.c.tag).where(run_tags.c.run_id == run_id)).scalars())
    with source.engine.connect() as src:
        run = dict(src.execute(select(runs).where(runs.c.id == run_id)).mappings().one())
        tags = [dict(r) for r in src.execute(select(run_tags).where(run_tags.c.run_id == run_id)).mappings()
                if r["tag"] not in have_tags]
        rows = [
            dict(r)
            for r in src.execute(
                select(measurements).where(measurements.c.run_id == run_id).order_by(measurements.c.id)
            ).mappings()
            if r["job_key"] not in have_keys
        ]
        variant_ids = sorted({r["variant_id"] for r in rows})
        variant_rows = src.execute(select(variants).where(variants.c.id.in_(variant_ids))).mappings().all()
        blobs = {
            r["measurement_id"]: dict(r)
            for r in src.execute(
                select(samples).where(samples.c.measurement_id.in_([r["id"] for r in rows]))
            ).mappings()
        }
        profiles = read_profiles(src, [r["id"] for r in rows])
    tags = _without_shadowing(dest, run_id, tags)
    ends = present is not None and present["finished_at"] is None and run["finished_at"] is not None
    if present is not None and not (rows or tags or ends):
        log.info("run %s already in %s with all the source holds; skipped", run_id, dest.url)
        return False
    for v in variant_rows:
        facts = {**v["facts"], **{k: v[k] for k in ("params", "macs", "training_macs") if v[k] is not None}}
        dest.upsert_variant(v["id"], v["spec"], v["label"], v["parent_id"], facts)
    with dest.engine.begin() as conn:
        if present is None:
            conn.execute(insert(runs).values(**run))
        elif ends:
            conn.execute(update(runs).where(runs.c.id == run_id)
                         .values(status=run["status"], finished_at=run["finished_at"]))
        for tag in tags:
            conn.execute(insert(run_tags).values(**tag))
        for row in rows:
            old_id = row.pop("id")
            new_id = conn.execute(insert(measurements).values(**row)).inserted_primary_key[0]
            if old_id in blobs:
                conn.execute(insert(samples).values(**{**blobs[old_id], "measurement_id": new_id}))
            if old_id in profiles:
                insert_profile(conn, new_id, profiles[old_id].to_dict())
    return True
