"""Every experiment file shipped in edgebench/experiments/ loads, passes the load-time checks and plans the
variant kinds its name promises, so an example in the README cannot rot unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.config import DEFAULT_EXPERIMENT, load_experiment
from edgebench.plan import plan_fp32_variants, qat_models

EXAMPLES = sorted(DEFAULT_EXPERIMENT.parent.glob("*.yaml"))


def _kinds(path: Path) -> set[str]:
    variants = plan_fp32_variants(load_experiment(path))
    assert len({v.id for v in variants}) == len(variants), "two variants of the grid share an id"
    kinds = {"qat"} if qat_models(load_experiment(path), variants) else set()
    for v in variants:
        if v.prune is not None:
            kinds.add(v.prune.allocation or "structured")
        kinds |= {"sparse"} if v.sparse else set()
        kinds |= {"lowrank"} if v.lowrank else set()
    return kinds


def test_examples_are_found() -> None:
    assert DEFAULT_EXPERIMENT in EXAMPLES and len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads_and_plans_its_kind(path: Path) -> None:
    promised = {"sparse_digits": "sparse", "lowrank_digits": "lowrank", "allocation_digits": "gradient_bound",
                "latency_allocation_digits": "latency", "qat_digits": "qat"}.get(path.stem, "structured")
    assert promised in _kinds(path)
