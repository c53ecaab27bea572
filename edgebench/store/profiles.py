"""Per-layer profiles in the store: one ``layer_profiles`` row per profiled measurement, its layers in
``layer_profile_rows`` (kept as rows, so SQL and spreadsheets can read time share against MACs share)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import Connection, Select, delete, insert, select

from edgebench.profile.table import LayerProfile, LayerRow, OpTime
from edgebench.store.schema import layer_profile_rows, layer_profiles

_ROW_FIELDS = [f.name for f in fields(LayerRow)]


def insert_profile(conn: Connection, measurement_id: int, profile: dict[str, Any]) -> None:
    """Store ``profile`` (``LayerProfile.to_dict()``) for one measurement."""
    parsed = LayerProfile.from_dict(profile)
    conn.execute(insert(layer_profiles).values(
        measurement_id=measurement_id, runtime=parsed.runtime, status=parsed.status, reason=parsed.reason,
        run_ms=parsed.run_ms, runs=parsed.runs, ops=[asdict(o) for o in parsed.ops]))
    if parsed.rows:
        conn.execute(insert(layer_profile_rows), [
            {"measurement_id": measurement_id, "position": i, **asdict(row)} for i, row in enumerate(parsed.rows)])


def delete_profiles(conn: Connection, measurement_ids: Iterable[int] | Select) -> None:
    """Remove the profiles of ``measurement_ids`` (a list, or a select of ids): before a measurement is replaced, or
    with its run."""
    conn.execute(delete(layer_profile_rows).where(layer_profile_rows.c.measurement_id.in_(measurement_ids)))
    conn.execute(delete(layer_profiles).where(layer_profiles.c.measurement_id.in_(measurement_ids)))


def read_profiles(conn: Connection, measurement_ids: Iterable[int]) -> dict[int, LayerProfile]:
    """The stored profiles of ``measurement_ids`` (measurements without one are absent)."""
    ids = [int(i) for i in measurement_ids]
    if not ids:
        return {}
    headers = conn.execute(select(layer_profiles).where(layer_profiles.c.measurement_id.in_(ids))).mappings().all()
    rows = conn.execute(
        select(layer_profile_rows).where(layer_profile_rows.c.measurement_id.in_(ids))
        .order_by(layer_profile_rows.c.measurement_id, layer_profile_rows.c.position)
    ).mappings().all()
    found = {
        h["measurement_id"]: LayerProfile(runtime=h["runtime"], status=h["status"], reason=h["reason"],
                                          run_ms=h["run_ms"], runs=h["runs"] or 0,
                                          ops=[OpTime(**o) for o in h["ops"] or []])
        for h in headers
    }
    for row in rows:
        found[row["measurement_id"]].rows.append(LayerRow(**{k: row[k] for k in _ROW_FIELDS}))
    return found
