"""The results store: runs, variants, measurements and raw samples.

One class for SQLite (the embedded default: a file path or ``sqlite:///`` URL)
and PostgreSQL (``postgresql+psycopg://`` URL, so several benchmark hosts can
share one database). Every write is one transaction, so a killed run keeps what
it stored, and writes are keyed (run id + job key, variant id) so a resumed run
never duplicates rows. Opening the database (its URL, the engine, its errors as one line) is ``connection``'s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, case, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

import edgebench
from edgebench.errors import first_line
from edgebench.job import Placement
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.onnxruntime.session import CPU_PROVIDER
from edgebench.store.connection import _make_engine, shown_url, store_url
from edgebench.store.profiles import delete_profiles, insert_profile, read_profiles
from edgebench.store.record import MeasurementRecord
from edgebench.store.sample_codec import ENCODING, decode_samples, encode_samples
from edgebench.store.schema import (
    StoreError,
    ensure_schema,
    measurements,
    run_tags,
    runs,
    samples,
    utc_now,
    variants,
)

log = logging.getLogger(__name__)


#: names ``resolve_run`` gives a meaning of its own, so a tag spelt so could never be looked up
RESERVED_TAGS = ("latest",)
TAG_MAX_CHARS = 200  # the tag column's width


def validate_tag(tag: str) -> str:
    """``tag`` if it can name a run; StoreError saying why not (empty, padded, a control character, reserved or too
    long)."""
    if not tag.strip() or tag != tag.strip():
        raise StoreError(f"tag {tag!r}: give a non-empty name without leading or trailing spaces")
    if not tag.isprintable():  # a newline or tab would break the one-tag-a-line listings of runs and history
        raise StoreError(f"tag {tag!r}: holds a control character (newline, tab...); give a name on one line")
    if tag in RESERVED_TAGS:
        raise StoreError(f"tag {tag!r} is reserved ({', '.join(RESERVED_TAGS)} always means the newest run); choose another")
    if len(tag) > TAG_MAX_CHARS:
        raise StoreError(f"tag {tag[:20]!r}...: {len(tag)} characters, at most {TAG_MAX_CHARS}")
    return tag


def new_run_id() -> str:
    """A run id: sortable by start time, then a random suffix."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def _flatten_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The spec fields reports group by: kind (baseline / structured / sparse / lowrank / external: made by another
    tool, its label as method), criterion, ratio,
    schedule, allocation, sparse method and sparsity, rank ratio, precision, model, dataset."""
    spec = spec or {}
    prune = spec.get("prune") or {}
    sparse = spec.get("sparse") or {}
    lowrank = spec.get("lowrank") or {}
    external = spec.get("external") or {}
    quant = spec.get("quant") or {}
    kind = "structured" if prune else "sparse" if sparse else "lowrank" if lowrank else "external" if external \
        else "baseline"
    return {
        "model": spec.get("model"),
        "dataset": spec.get("dataset"),
        "kind": kind if spec else None,
        "criterion": prune.get("criterion"),
        "ratio": float(prune.get("ratio", 0.0)) if spec else None,
        "schedule": prune.get("schedule"),
        "allocation": prune.get("allocation") or (prune.get("scope") and _SCOPE_ALLOCATION[prune["scope"]]),
        "method": prune.get("criterion") or sparse.get("method") or lowrank.get("method") or external.get("label"),
        "sparsity": sparse.get("sparsity"),
        "rank_ratio": lowrank.get("rank_ratio"),
        "precision": quant.get("precision"),
    }


#: the allocation a structured spec's scope stands for
_SCOPE_ALLOCATION = {"layer": "uniform", "global": "global"}
#: columns read out of a variant's facts and a measurement's details (JSON), for reports and metrics
_FACT_COLUMNS = ("nonzero_params", "nonzero_macs", "method_note")


def _ran_on(placement: Any, board: str | None) -> str | None:
    """Where the job ran, without the worker process (rows stored before it was typed keep their text), and the
    SSH board it measured on (the placement names the host that drove it)."""
    where = Placement.model_validate(placement).machine if isinstance(placement, dict) else placement
    return f"{where} → ssh {board}" if board and where else where


def _derived_columns(facts: Any, details: Any, p50_ms: Any = None) -> dict[str, Any]:
    facts = facts if isinstance(facts, dict) else {}
    details = details if isinstance(details, dict) else {}
    hls4ml = details.get("hls4ml") or {}
    ran_on = details.get("ran_on")
    predicted = (details.get("latency_prediction") or {}).get("p50_ms")
    placement = details.get("placement") or {}
    return {
        **{name: facts.get(name) for name in _FACT_COLUMNS},
        "compressed_size_bytes": (details.get("artifact") or {}).get("compressed_bytes"),
        # where the job ran, without the worker process (rows stored before it was typed keep their text)
        "ran_on": _ran_on(ran_on, details.get("board")),
        # FPGA cost proxies counted from the hls4ml model (not synthesised), for C-simulation targets' fronts
        "bops": (hls4ml.get("bit_operations") or {}).get("bops"),
        "fpga_multipliers": (hls4ml.get("multipliers") or {}).get("multipliers"),
        "fpga_latency_cycles": (details.get("synthesis") or {}).get("latency_cycles_worst"),
        # the latency tables' prediction made before the measurement (measurement.predict_latency), and its
        # error in percent of the measured p50 (positive: the model predicted slower than measured)
        "predicted_p50_ms": predicted,
        "prediction_error_pct": (100 * (predicted / p50_ms - 1) if isinstance(predicted, int | float)
                                 and isinstance(p50_ms, int | float) and p50_ms > 0 else None),
        # nodes a GPU provider of ONNX Runtime left to the CPU in one inference (None: no placement recorded)
        "nodes_on_cpu": sum(placement.get(CPU_PROVIDER, {}).values()) if placement else None,
    }


def _other_starter(started_on: dict[str, Any], version: str | None, commit: str | None,
                   machine: dict[str, Any]) -> str | None:
    """How the process that started a run differs from this one (another host, another edgebench), or None."""
    if started_on.get("hostname") != machine.get("hostname"):
        return f"on host {started_on.get('hostname')!r}"
    if (version, commit) != (machine.get("edgebench_version"), machine.get("edgebench_commit")):
        return f"by edgebench {version} ({commit or 'no commit'})"
    return None


def refuse_shadowing(conn: Any, tag: str, run_id: str) -> None:
    """StoreError where ``tag`` is the start of another run's id: tags are looked up first, so that id prefix
    would then name ``run_id`` instead."""
    other = conn.execute(select(runs.c.id).where(runs.c.id != run_id, runs.c.id.startswith(tag, autoescape=True))
                         .limit(1)).scalar()
    if other is not None:
        raise StoreError(f"tag '{tag}' is the start of run {other}'s id: `--run {tag}` would name the tagged run "
                         "instead of it; choose another tag")


class Store:
    """Results database; open with :meth:`Store.open`."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    @classmethod
    def open(cls, url_or_path: str | Path) -> Store:
        """Open (creating or migrating the schema) the store at a path or database URL."""
        url = store_url(url_or_path)
        engine = _make_engine(url)
        try:
            ensure_schema(engine)
        except DBAPIError as exc:  # not a database ("file is not a database"), unreachable, refused
            engine.dispose()
            where = engine.url.render_as_string(hide_password=True)
            reason = first_line(exc.orig if exc.orig else exc)
            hint = "; is it a results store?" if "not a database" in reason else ""
            raise StoreError(f"cannot open store {where}: {reason}{hint}") from None
        except StoreError:
            engine.dispose()
            raise
        return cls(engine, url)

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- runs -------------------------------------------------------------------------------
    def start_run(
        self, name: str, experiment: dict, experiment_hash: str, machine: dict, tags: Sequence[str] = (),
        run_id: str | None = None,
    ) -> str:
        """Record a new run and return its id (``run_id``, or a :func:`new_run_id`)."""
        for tag in tags:
            validate_tag(tag)
        run_id = run_id or new_run_id()
        with self.engine.begin() as conn:
            conn.execute(
                insert(runs).values(
                    id=run_id,
                    name=name,
                    experiment=experiment,
                    experiment_hash=experiment_hash,
                    machine=machine,
                    started_at=utc_now(),
                    status="running",
                    edgebench_version=machine.get("edgebench_version", edgebench.__version__),
                    edgebench_commit=machine.get("edgebench_commit"),
                )
            )
            for tag in dict.fromkeys(tags):
                refuse_shadowing(conn, tag, run_id)
                conn.execute(insert(run_tags).values(run_id=run_id, tag=tag, created_at=utc_now()))
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        """Mark a run ended (its ``finished_at`` set); a run without one, whatever its status ('running',
        'interrupted'), is what :meth:`find_resumable_run` resumes."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(runs).where(runs.c.id == run_id).values(status=status, finished_at=utc_now())
            )
            if done.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {shown_url(self.url)}")

    def mark_run(self, run_id: str, status: str) -> None:
        """Set an unfinished run's status (``interrupted`` when its process was stopped, ``running`` again when a
        process resumes it); it stays resumable."""
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id, runs.c.finished_at.is_(None)).values(status=status))

    def find_resumable_run(self, experiment_hash: str, claim: Callable[[str], bool] | None = None,
                           machine: dict[str, Any] | None = None) -> str | None:
        """Latest unfinished run of the same experiment, so an interrupted run continues.

        ``claim`` (optional) is asked for each unfinished run, newest first, and may refuse one: a run another
        live process is still driving is not resumed by a second process started beside it. With ``machine``
        (this one's ``machine_info``), only a run started on the same host by the same edgebench is resumed: another
        host's run may still be running there (its lock is not visible from here), and a run resumed by another
        edgebench would mix two versions' figures under the first one's name.
        """
        with self.engine.connect() as conn:
            unfinished = conn.execute(
                select(runs.c.id, runs.c.machine, runs.c.edgebench_version, runs.c.edgebench_commit)
                .where(runs.c.experiment_hash == experiment_hash, runs.c.finished_at.is_(None))
                .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            ).all()
        for run_id, started_on, version, commit in unfinished:
            if machine is not None:
                other = _other_starter(started_on or {}, version, commit, machine)
                if other is not None:
                    log.warning("unfinished run %s of this experiment was started %s: it is left as it is and a new "
                                "run starts", run_id, other)
                    continue
            if claim is None or claim(run_id):
                return run_id
        return None

    def add_machine_speed(self, run_id: str, record: dict[str, Any]) -> None:
        """Append a reading of the reference workload (``measure.reference_workload``) to the run's ``machine.speed``."""
        self._update_machine(run_id, lambda machine: {"speed": [*machine.get("speed", []), record]})

    def set_not_run(self, run_id: str, lines: Sequence[str]) -> None:
        """Record what this machine did not run of the run, and why (``machine.not_run``: a missing extra, an
        unreachable board, a precision a backend cannot load); the process that resumes a run says it again."""
        self._update_machine(run_id, lambda machine: {"not_run": list(lines)})

    def _update_machine(self, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Merge ``change(machine)`` into the run's ``machine`` record, in one transaction."""
        with self.engine.begin() as conn:
            machine = conn.execute(select(runs.c.machine).where(runs.c.id == run_id)).scalar()
            if machine is None:
                raise StoreError(f"no run {run_id!r} in {shown_url(self.url)}")
            conn.execute(update(runs).where(runs.c.id == run_id).values(machine={**machine, **change(machine)}))

    def tag_run(self, run_id: str, tag: str) -> None:
        """Attach ``tag`` (e.g. a git ref or 'release-1.2'); a tag names its latest run."""
        validate_tag(tag)
        with self.engine.begin() as conn:
            if conn.execute(select(runs.c.id).where(runs.c.id == run_id)).scalar() is None:
                raise StoreError(f"no run {run_id!r} in {shown_url(self.url)}")
            exists = conn.execute(
                select(run_tags.c.tag).where(run_tags.c.run_id == run_id, run_tags.c.tag == tag)
            ).scalar()
            if exists is None:
                refuse_shadowing(conn, tag, run_id)
                conn.execute(insert(run_tags).values(run_id=run_id, tag=tag, created_at=utc_now()))

    def latest_run(self, name: str | None = None) -> str | None:
        """The run (of ``name``, if given) that ended last, or started last where none ended since: an older run
        resumed and finished is the latest, as it is the one whose report `edgebench run` wrote last; None if none."""
        query = select(runs.c.id).order_by(func.coalesce(runs.c.finished_at, runs.c.started_at).desc(),
                                           runs.c.started_at.desc()).limit(1)
        if name is not None:
            query = query.where(runs.c.name == name)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def resolve_run(self, run_id_or_tag: str) -> str:
        """Run id for an id, a tag (its latest run by start), a unique id prefix, or 'latest' (:meth:`latest_run`)."""
        if not run_id_or_tag.strip():  # the prefix of every id: `delete "$RUN" --yes` with RUN unset deleted a run
            raise StoreError(f"empty run reference {run_id_or_tag!r}: give a run id, a tag, an id prefix or 'latest' "
                             "(an unset shell variable?)")
        if run_id_or_tag == "latest":
            found = self.latest_run()
            if found is None:
                raise StoreError(f"store {shown_url(self.url)} has no runs yet")
            return found
        with self.engine.connect() as conn:
            if conn.execute(select(runs.c.id).where(runs.c.id == run_id_or_tag)).scalar() is not None:
                return run_id_or_tag
            tagged = conn.execute(
                select(runs.c.id)
                .join(run_tags, run_tags.c.run_id == runs.c.id)
                .where(run_tags.c.tag == run_id_or_tag)
                .order_by(runs.c.started_at.desc())
                .limit(1)
            ).scalar()
            if tagged is not None:
                return tagged
            prefixed = conn.execute(select(runs.c.id).where(runs.c.id.startswith(run_id_or_tag, autoescape=True)))
            matches = list(prefixed.scalars())
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StoreError(f"run id prefix {run_id_or_tag!r} is ambiguous: {', '.join(matches[:5])}")
        shown = shown_url(self.url)
        raise StoreError(f"no run or tag {run_id_or_tag!r} in {shown} (see `edgebench runs --store {shown}`)")

    def resolve_runs(self, run_id_or_tag: str) -> list[str]:
        """Every run carrying a tag (oldest first), or the one run an id, prefix or 'latest' names."""
        with self.engine.connect() as conn:
            tagged = conn.execute(
                select(runs.c.id)
                .join(run_tags, run_tags.c.run_id == runs.c.id)
                .where(run_tags.c.tag == run_id_or_tag)
                .order_by(runs.c.started_at, runs.c.id)
            ).scalars()
            found = list(tagged)
        return found or [self.resolve_run(run_id_or_tag)]

    def get_run(self, run_id_or_tag: str) -> dict[str, Any]:
        """One run as a dict (machine, experiment, times, status, version, tags)."""
        run_id = self.resolve_run(run_id_or_tag)
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one()
            tags = conn.execute(
                select(run_tags.c.tag).where(run_tags.c.run_id == run_id).order_by(run_tags.c.created_at)
            ).scalars()
            return {**row, "tags": list(tags)}

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first, with tags and counts of ok/failed measurements."""
        counts = (
            select(
                measurements.c.run_id,
                func.count().label("n_measurements"),
                func.sum(case((measurements.c.status != "ok", 1), else_=0)).label("n_failed"),
            )
            .group_by(measurements.c.run_id)
            .subquery()
        )
        query = (
            select(
                runs.c.id, runs.c.name, runs.c.status, runs.c.started_at, runs.c.finished_at,
                runs.c.experiment_hash, runs.c.edgebench_version, runs.c.edgebench_commit,
                func.coalesce(counts.c.n_measurements, 0).label("n_measurements"),
                func.coalesce(counts.c.n_failed, 0).label("n_failed"),
            )
            .outerjoin(counts, counts.c.run_id == runs.c.id)
            .order_by(runs.c.started_at, runs.c.id)
        )
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(query).mappings().all())
            tag_rows = conn.execute(select(run_tags.c.run_id, run_tags.c.tag).order_by(run_tags.c.created_at)).all()
        columns = [c.name for c in query.selected_columns] + ["tags"]
        if df.empty:
            return pd.DataFrame(columns=columns)
        tags: dict[str, list[str]] = {}
        for rid, tag in tag_rows:
            tags.setdefault(rid, []).append(tag)
        df["tags"] = [", ".join(tags.get(rid, [])) for rid in df["id"]]
        df[["n_measurements", "n_failed"]] = df[["n_measurements", "n_failed"]].astype(int)
        return df[columns]

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Remove runs with their tags, measurements, raw samples and layer profiles, in one transaction; return the
        number of measurements removed. Variants stay: other runs share them, and a run building beside this one
        may be about to measure one it stored."""
        with self.engine.begin() as conn:
            ids = select(measurements.c.id).where(measurements.c.run_id.in_(run_ids))
            delete_profiles(conn, ids)
            conn.execute(delete(samples).where(samples.c.measurement_id.in_(ids)))
            removed = conn.execute(delete(measurements).where(measurements.c.run_id.in_(run_ids))).rowcount
            conn.execute(delete(run_tags).where(run_tags.c.run_id.in_(run_ids)))
            conn.execute(delete(runs).where(runs.c.id.in_(run_ids)))
        return removed

    # ---- variants -----------------------------------------------------------------------------
    def upsert_variant(self, variant_id: str, spec: dict, label: str, parent_id: str | None, facts: dict) -> None:
        """Insert a variant or merge new facts into the stored one (idempotent)."""
        columns = {k: facts.get(k) for k in ("params", "macs", "training_macs")}
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    old = conn.execute(select(variants.c.facts).where(variants.c.id == variant_id)).scalar()
                    if old is None:
                        conn.execute(
                            insert(variants).values(
                                id=variant_id, spec=spec, label=label, parent_id=parent_id, facts=facts, **columns
                            )
                        )
                    else:
                        known = {k: v for k, v in columns.items() if v is not None}
                        conn.execute(
                            update(variants)
                            .where(variants.c.id == variant_id)
                            .values(spec=spec, label=label, parent_id=parent_id, facts={**old, **facts}, **known)
                        )
                return
            except IntegrityError:  # another host inserted it between our select and insert
                if attempt:
                    raise

    # ---- measurements -------------------------------------------------------------------------
    def done_job_keys(self, run_id: str, ok_only: bool = False) -> set[str]:
        """Job keys with a stored result in ``run_id`` (``ok_only``: a successful one; a resumed run skips those and
        measures the failed ones again, whose new result replaces the row)."""
        query = select(measurements.c.job_key).where(measurements.c.run_id == run_id)
        with self.engine.connect() as conn:
            return set(conn.execute(query.where(measurements.c.status == "ok") if ok_only else query).scalars())

    def add_measurement(self, record: MeasurementRecord) -> None:
        """Store one job's result and its raw samples in one transaction.

        A second call for the same (run, job key) replaces the first, so a retried
        job never leaves two rows.
        """
        run_id, job_key = record.run_id, record.job_key
        row = record.row(utc_now())
        raw = record.result.samples_ns
        with self.engine.begin() as conn:
            key = and_(measurements.c.run_id == run_id, measurements.c.job_key == job_key)
            old_id = conn.execute(select(measurements.c.id).where(key)).scalar()
            if old_id is not None:
                delete_profiles(conn, [old_id])
                conn.execute(delete(samples).where(samples.c.measurement_id == old_id))
                conn.execute(delete(measurements).where(measurements.c.id == old_id))
            new_id = conn.execute(insert(measurements).values(**row)).inserted_primary_key[0]
            if len(raw):
                conn.execute(
                    insert(samples).values(
                        measurement_id=new_id, n=len(raw), encoding=ENCODING, data=encode_samples(raw)
                    )
                )
            if record.result.layer_profile is not None:
                insert_profile(conn, new_id, record.result.layer_profile)

    def layer_profiles(self, measurement_ids: Iterable[int]) -> dict[int, LayerProfile]:
        """Per-layer profiles of the given measurements (those that recorded one)."""
        with self.engine.connect() as conn:
            return read_profiles(conn, measurement_ids)

    def measurements(self, run_id: str) -> pd.DataFrame:
        """One row per measurement of ``run_id`` joined with its variant's columns and spec fields."""
        m, v = measurements, variants
        query = (
            select(
                m,
                v.c.label, v.c.parent_id, v.c.params, v.c.macs, v.c.training_macs, v.c.spec, v.c.facts,
                func.coalesce(samples.c.n, 0).label("n_samples"),
            )
            .outerjoin(v, v.c.id == m.c.variant_id)
            .outerjoin(samples, samples.c.measurement_id == m.c.id)
            .where(m.c.run_id == run_id)
            .order_by(m.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        columns = [c.name for c in query.selected_columns] + list(_flatten_spec({})) + list(_derived_columns({}, {}))
        if not rows:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows)
        flat = pd.DataFrame([_flatten_spec(s) for s in df["spec"]], index=df.index)
        derived = pd.DataFrame([_derived_columns(f, d, p) for f, d, p in zip(df["facts"], df["details"], df["p50_ms"])],
                               index=df.index)
        df = pd.concat([df, flat, derived], axis=1)
        df["precision"] = df["precision"].fillna(df["settings_precision"])
        df["label"] = df["label"].fillna(df["variant_id"])  # a result whose variant was never upserted
        return df[columns]

    def samples(self, measurement_id: int) -> np.ndarray:
        """Raw per-iteration latency samples (int64 ns) of one measurement; empty if none."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(samples.c.data, samples.c.encoding).where(samples.c.measurement_id == int(measurement_id))
            ).first()
        if row is None:
            return np.empty(0, dtype=np.int64)
        return decode_samples(row.data, row.encoding)
