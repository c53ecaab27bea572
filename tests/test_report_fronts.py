"""Which rows the report puts on a Pareto front or under a budget: non-finite values as missing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgebench.report import pareto_mask
from edgebench.report.tables import best_under_budget, default_budgets
from edgebench.store.metrics import METRICS

LATENCY = METRICS["latency"]


# --- non-finite values are missing (D9) ---------------------------------------------------------------------------


def test_an_infinite_value_is_never_on_a_front_and_never_dominates() -> None:
    df = pd.DataFrame({"p50_ms": [np.inf, 1.0, 2.0], "accuracy": [0.99, 0.9, 0.95]})
    assert pareto_mask(df, [("p50_ms", "min"), ("accuracy", "max")]).tolist() == [False, True, True]
    df.loc[0, "p50_ms"] = -np.inf  # a "best" latency of -inf would dominate every row
    assert pareto_mask(df, [("p50_ms", "min"), ("accuracy", "max")]).tolist() == [False, True, True]


def test_budgets_leave_an_infinite_value_out() -> None:
    values = pd.Series([0.5, 1.0, 2.0, np.inf])
    budgets = default_budgets(values)
    assert budgets and all(np.isfinite(budgets)) and max(budgets) == 2.0
    ok = pd.DataFrame({"label": ["fast", "slow", "broken"], "target": "t", "backend": "b", "threads": 1,
                       "scenario": "single_stream", "batch_size": 1, "accuracy": [0.9, 0.95, 0.99],
                       "p50_ms": [0.5, 2.0, np.inf], "energy_source": None})  # fmt: skip
    table = best_under_budget(ok, LATENCY, default_budgets(ok["p50_ms"]))
    assert table.columns.tolist() == ["target", "≤ 0.5", "≤ 0.8", "≤ 1.3", "≤ 2"]  # no '≤ nan' or '≤ inf' column
    assert table.iloc[0].tolist()[1:] == ["fast (acc 0.900, 0.5)"] * 3 + ["slow (acc 0.950, 2)"]
