"""Exact Pareto marking over any set of objectives.

A row is Pareto-optimal when no other row dominates it: at least as good in
every objective and strictly better in one. Consequences kept on purpose:
identical rows do not dominate each other (all copies are marked), a tie on one
objective is decided by the others, and a row with a missing value in any
objective is never marked and never dominates (it was not measured, so it
cannot be compared); an infinite value (an imported or hand-edited store) counts as missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from edgebench.store.metrics import Direction


def pareto_mask(
    df: pd.DataFrame,
    objectives: Sequence[str] | Sequence[tuple[str, Direction]],
    directions: Sequence[Direction] | None = None,
) -> pd.Series:
    """Boolean Series (index of ``df``): True where the row is Pareto-optimal.

    Args:
        df: one row per candidate.
        objectives: column names, or ``(column, direction)`` pairs when ``directions`` is omitted.
        directions: ``"min"`` or ``"max"`` per objective.
    """
    if directions is None:
        objectives, directions = [o[0] for o in objectives], [o[1] for o in objectives]
    if len(objectives) != len(directions) or not objectives:
        raise ValueError("need one direction ('min' or 'max') per objective, and at least one objective")
    if any(d not in ("min", "max") for d in directions):
        raise ValueError(f"directions must be 'min' or 'max', got {list(directions)}")
    values = df[list(objectives)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    # turn every objective into "smaller is better"
    values = values * np.array([1.0 if d == "min" else -1.0 for d in directions])
    complete = np.isfinite(values).all(axis=1)
    mask = np.zeros(len(df), dtype=bool)
    points = values[complete]
    if len(points):
        mask[complete] = _nondominated(points)
    return pd.Series(mask, index=df.index, name="pareto")


def _nondominated(points: np.ndarray) -> np.ndarray:
    """Minimisation front of ``points`` (n x k, all finite), blockwise so memory stays O(block * n * k)."""
    n = len(points)
    keep = np.ones(n, dtype=bool)
    block = max(1, 2_000_000 // max(1, n * points.shape[1]))
    for start in range(0, n, block):
        rows = points[start : start + block, None, :]  # candidates
        no_worse = (points[None, :, :] <= rows).all(axis=2)  # other j at least as good as candidate i
        better = (points[None, :, :] < rows).any(axis=2)
        keep[start : start + block] = ~(no_worse & better).any(axis=1)
    return keep
