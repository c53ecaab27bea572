"""pareto_mask against a brute-force definition, with ties, duplicates and missing values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from edgebench.report.pareto import pareto_mask


def brute_force(rows: list[list[float]], directions: list[str]) -> list[bool]:
    """Definition: complete row that no other complete row weakly beats everywhere and strictly somewhere."""

    def good(a: float, b: float, d: str, strict: bool) -> bool:
        if d == "min":
            return a < b if strict else a <= b
        return a > b if strict else a >= b

    out = []
    for i, a in enumerate(rows):
        if any(math.isnan(v) for v in a):
            out.append(False)
            continue
        dominated = False
        for j, b in enumerate(rows):
            if j == i or any(math.isnan(v) for v in b):
                continue
            if all(good(bv, av, d, False) for av, bv, d in zip(a, b, directions)) and any(
                good(bv, av, d, True) for av, bv, d in zip(a, b, directions)
            ):
                dominated = True
                break
        out.append(not dominated)
    return out


@pytest.mark.parametrize("seed", range(60))
def test_matches_brute_force_on_random_grids(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 40)), int(rng.integers(1, 4))
    values = rng.integers(0, 5, size=(n, k)).astype(float)  # small grid: many ties and exact duplicates
    values[rng.random((n, k)) < 0.1] = np.nan
    directions = [str(d) for d in rng.choice(["min", "max"], size=k)]
    df = pd.DataFrame(values, columns=[f"o{i}" for i in range(k)], index=rng.permutation(n) + 100)
    got = pareto_mask(df, list(df.columns), directions)
    assert list(got.index) == list(df.index)
    assert got.tolist() == brute_force(values.tolist(), directions)


def test_hand_cases_ties_duplicates_missing() -> None:
    df = pd.DataFrame(
        {
            "latency": [1.0, 1.0, 2.0, 1.0, 3.0, np.nan, 0.5, 2.0],
            "accuracy": [0.9, 0.9, 0.95, 0.8, 0.95, 0.99, np.nan, 0.95],
        }
    )
    got = pareto_mask(df, ["latency", "accuracy"], ["min", "max"]).tolist()
    # rows 0/1 are identical and both optimal; row 3 ties on latency but is less accurate;
    # row 4 ties on accuracy but is slower than 2 and 7 (identical, both optimal); NaN rows never optimal
    assert got == [True, True, True, False, False, False, False, True]


def test_strings_and_none_count_as_missing() -> None:
    df = pd.DataFrame({"x": [1, None, "n/a"], "y": [1, 0, 0]})
    assert pareto_mask(df, ["x", "y"], ["min", "min"]).tolist() == [True, False, False]


def test_large_input_is_blockwise_and_exact() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.random((3000, 2)), columns=["a", "b"])
    got = pareto_mask(df, ["a", "b"], ["min", "min"])
    order = df.sort_values(["a", "b"])  # 2-D staircase: optimal iff b is below every b seen so far
    best, expected = np.inf, pd.Series(False, index=df.index)
    for idx, row in order.iterrows():
        if row["b"] < best:
            expected[idx], best = True, row["b"]
    assert got.equals(expected.rename("pareto"))


def test_rejects_bad_directions() -> None:
    df = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError):
        pareto_mask(df, ["a"], ["up"])
    with pytest.raises(ValueError):
        pareto_mask(df, ["a"], [])


def test_objective_direction_pairs_form() -> None:
    df = pd.DataFrame({"p50_ms": [1.0, 2.0, 0.5], "accuracy": [0.9, 0.95, 0.8]})
    pairs = pareto_mask(df, [("accuracy", "max"), ("p50_ms", "min")])
    assert pairs.equals(pareto_mask(df, ["accuracy", "p50_ms"], ["max", "min"]))
    assert pairs.tolist() == [True, True, True]
