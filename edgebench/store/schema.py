"""Tables of the results store and the migration path between schema versions.

SQLAlchemy Core only, with column types that behave the same on SQLite and
PostgreSQL: JSON for nested facts, ISO-8601 UTC strings for timestamps (they sort
lexicographically on both), and one compressed int64 blob per measurement for
raw latency samples.

A fresh database gets the current schema in one step and is stamped with
``SCHEMA_VERSION``; an older database runs the ``MIGRATIONS`` steps after its
stamped version, in order, each in its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from edgebench.errors import EdgebenchError

log = logging.getLogger(__name__)


class StoreError(EdgebenchError):
    """The results store cannot be opened, a run/tag does not exist, or what was asked of it is wrong (a store
    command's options such as ``--min-effect`` or ``--warn``/``--fail`` levels, the Results API's arguments): one
    line naming what to fix."""


metadata = MetaData()

#: the columns of each measurement's percentile confidence intervals: p50_low_ms, p50_high_ms, ... p99_high_ms
INTERVAL_COLUMNS = tuple(f"{name}_{end}_ms" for name in ("p50", "p90", "p99") for end in ("low", "high"))

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(32), nullable=False),
    Column("description", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("experiment", JSON, nullable=False),
    Column("experiment_hash", String(64), nullable=False, index=True),
    Column("machine", JSON, nullable=False),
    Column("started_at", String(32), nullable=False),
    Column("finished_at", String(32)),
    Column("status", String(32), nullable=False),
    Column("edgebench_version", String(64)),
    Column("edgebench_commit", String(64)),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(200), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Index("ix_run_tags_tag", "tag"),
)

variants = Table(
    "variants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("label", String(200), nullable=False),
    Column("parent_id", String(64)),
    Column("params", BigInteger),
    Column("macs", Float),
    Column("training_macs", Float),
    Column("facts", JSON, nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("job_key", String(200), nullable=False),
    Column("variant_id", String(64), nullable=False, index=True),
    Column("target", String(100), nullable=False),
    Column("backend", String(100), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("threads", Integer),
    Column("batch_size", Integer),
    Column("scenario", String(32)),
    Column("settings_precision", String(32)),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("error_detail", Text),  # a failed job's traceback or the worker's stderr tail
    Column("accuracy", Float),
    Column("n_eval", Integer),
    Column("max_abs_diff", Float),
    Column("load_ms", Float),
    Column("first_inference_ms", Float),
    Column("p50_ms", Float),
    Column("p90_ms", Float),
    Column("p99_ms", Float),
    Column("mean_ms", Float),
    Column("std_ms", Float),
    Column("min_ms", Float),
    Column("max_ms", Float),
    # each percentile's order-statistic confidence interval at ci_confidence (null: too few samples for one)
    *(Column(name, Float) for name in INTERVAL_COLUMNS),
    Column("ci_confidence", Float),
    Column("throughput_ips", Float),
    Column("peak_rss_mb", Float),
    Column("size_bytes", BigInteger),
    Column("energy_j_per_inference", Float),
    Column("energy_source", String(100)),
    Column("energy_note", Text),
    Column("idle_power_w", Float),
    Column("runtime", JSON, nullable=False),
    Column("details", JSON),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("run_id", "job_key", name="uq_measurements_run_job"),
)

samples = Table(
    "samples",
    metadata,
    Column(
        "measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("n", Integer, nullable=False),
    Column("encoding", String(32), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

# one per measurement that asked for a per-layer profile (measurement.profile_layers): which runtime profiled,
# whether it could, and the raw operator times; its layers are rows of layer_profile_rows
layer_profiles = Table(
    "layer_profiles",
    metadata,
    Column("measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True),
    Column("runtime", String(100), nullable=False),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("run_ms", Float),
    Column("runs", Integer),
    Column("ops", JSON),
)

layer_profile_rows = Table(
    "layer_profile_rows",
    metadata,
    Column("measurement_id", Integer, ForeignKey("measurements.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("layer", String(300), nullable=False),
    Column("op", String(64)),
    Column("time_ms", Float),
    Column("time_share", Float),
    Column("compute_ms", Float),
    Column("macs", BigInteger),
    Column("macs_share", Float),
    Column("c_in", Integer),
    Column("c_out", Integer),
    Column("ops", Integer),
)


def utc_now() -> str:
    """Current time as a sortable ISO-8601 UTC string (microsecond resolution)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _create_run_tags(conn: Connection) -> None:
    run_tags.create(conn, checkfirst=True)


def _add_measurement_details(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE measurements ADD COLUMN details JSON"))


def _add_error_detail(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE measurements ADD COLUMN error_detail TEXT"))


def _create_layer_profiles(conn: Connection) -> None:
    layer_profiles.create(conn, checkfirst=True)
    layer_profile_rows.create(conn, checkfirst=True)


def _add_percentile_intervals(conn: Connection) -> None:
    for column in (*INTERVAL_COLUMNS, "ci_confidence"):
        conn.execute(text(f"ALTER TABLE measurements ADD COLUMN {column} FLOAT"))


# (version, description, step): step upgrades a database at version-1 to version.
# Version 1 is the foundation store (runs, variants, measurements, samples).
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (2, "run tags for baselines and history", _create_run_tags),
    (3, "target-specific details per measurement (FPGA synthesis, engine build)", _add_measurement_details),
    (4, "a failed job's traceback or stderr tail", _add_error_detail),
    (5, "per-layer profiles of measurements", _create_layer_profiles),
    (6, "confidence intervals of p50/p90/p99 per measurement", _add_percentile_intervals),
]
SCHEMA_VERSION = 6


def current_version(conn: Connection) -> int | None:
    """Stamped schema version, or None for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        return None
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar()


#: PostgreSQL advisory lock key ("edgeb") held while one process creates or migrates the schema
SCHEMA_LOCK_KEY = 0x6564676562


def ensure_schema(engine: Engine) -> int:
    """Create or migrate the schema; return the version the database ends at.

    Safe when several processes open a new or old store at once: each step runs in a transaction holding the
    schema lock (:func:`schema_transaction`) and re-reads the version first, so a step is applied once. Every
    step commits on its own: a migration killed half way leaves the database at the last completed version.
    """
    with engine.connect() as conn:  # the common case, an up-to-date store, takes no lock
        version = current_version(conn)
    while True:
        _refuse_newer(version)
        if version == SCHEMA_VERSION:
            return version
        try:
            before, (version, description) = version, _create_or_migrate_one_step(engine)
        except StoreError as exc:  # a read-only old store: say that the upgrade is what needs the write
            if version is None or "cannot write" not in str(exc):
                raise
            raise StoreError(f"store schema version {version} must be upgraded to {SCHEMA_VERSION} before this "
                             f"edgebench can read it, which writes to it: {exc}") from None
        if description is not None:  # said once the step committed: a step that failed was rolled back
            log.warning("store %s: schema upgraded from version %d to %d (%s); edgebench releases before this step "
                        "cannot open it any more", engine.url.render_as_string(hide_password=True), before, version,
                        description)


def _create_or_migrate_one_step(engine: Engine) -> tuple[int, str | None]:
    """Under the schema lock: create the schema of a new store, or apply the next migration; the version after, and
    the migration's description when one was applied (None: created, or another process had applied it)."""
    with schema_transaction(engine) as conn:
        version = current_version(conn)
        if version is None:
            _refuse_foreign_sqlite(conn, engine)
            metadata.create_all(conn)
            _stamp(conn, SCHEMA_VERSION, "initial schema")
            return SCHEMA_VERSION, None
        if version < SCHEMA_VERSION:
            step_version, description, step = next(m for m in MIGRATIONS if m[0] == version + 1)
            step(conn)
            _stamp(conn, step_version, description)
            return step_version, description
        return version, None


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the store's schema lock until it commits, so one process at a time creates or migrates.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the
    version is read (pysqlite itself would begin only at the first INSERT, after two processes both saw no table).
    """
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                yield conn
            return
        raw = conn.connection.driver_connection
        legacy = raw.isolation_level
        raw.isolation_level = None  # no implicit BEGIN: the one below is ours
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()
        finally:
            conn.rollback()  # after a commit this does nothing
            raw.isolation_level = legacy


def _stamp(conn: Connection, version: int, description: str) -> None:
    conn.execute(schema_version.insert(), [{"version": version, "applied_at": utc_now(), "description": description}])


def _refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {version} is newer than this edgebench supports ({SCHEMA_VERSION}); upgrade edgebench"
        )


def _refuse_foreign_sqlite(conn: Connection, engine: Engine) -> None:
    """A SQLite file is one database: one holding other tables is another program's, not a store to add ours to."""
    tables = sorted(inspect(conn).get_table_names())
    if engine.dialect.name == "sqlite" and set(tables) - set(metadata.tables):
        shown = ", ".join(tables[:6]) + (", ..." if len(tables) > 6 else "")
        raise StoreError(f"{engine.url.database}: a SQLite database of something else (tables {shown}), not an "
                         "edgebench results store; give a new file")
