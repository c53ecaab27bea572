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
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
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
    """The results store cannot be opened or a run/tag does not exist."""


metadata = MetaData()

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


def utc_now() -> str:
    """Current time as a sortable ISO-8601 UTC string (microsecond resolution)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _create_run_tags(conn: Connection) -> None:
    run_tags.create(conn, checkfirst=True)


def _add_measurement_details(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE measurements ADD COLUMN details JSON"))


def _add_error_detail(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE measurements ADD COLUMN error_detail TEXT"))


# (version, description, step): step upgrades a database at version-1 to version.
# Version 1 is the foundation store (runs, variants, measurements, samples).
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (2, "run tags for baselines and history", _create_run_tags),
    (3, "target-specific details per measurement (FPGA synthesis, engine build)", _add_measurement_details),
    (4, "a failed job's traceback or stderr tail", _add_error_detail),
]
SCHEMA_VERSION = 4


def current_version(conn: Connection) -> int | None:
    """Stamped schema version, or None for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        return None
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar()


def ensure_schema(engine_connect: Callable[[], Connection]) -> int:
    """Create or migrate the schema; return the version the database ends at.

    ``engine_connect`` is ``engine.begin`` so every step commits on its own: a
    migration killed half way leaves the database at the last completed version.
    """
    with engine_connect() as conn:
        version = current_version(conn)
        if version is None:
            metadata.create_all(conn)
            conn.execute(
                schema_version.insert(),
                [{"version": SCHEMA_VERSION, "applied_at": utc_now(), "description": "initial schema"}],
            )
            return SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {version} is newer than this edgebench supports ({SCHEMA_VERSION}); "
            "upgrade edgebench"
        )
    for step_version, description, step in MIGRATIONS:
        if step_version <= version:
            continue
        with engine_connect() as conn:
            log.info("migrating store schema %d -> %d: %s", step_version - 1, step_version, description)
            step(conn)
            conn.execute(
                schema_version.insert(),
                [{"version": step_version, "applied_at": utc_now(), "description": description}],
            )
    return SCHEMA_VERSION
