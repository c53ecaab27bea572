"""Timed-loop rules and summary statistics."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.job import MeasureSettings
from edgebench.measure.harness import time_session
from edgebench.measure.stats import summarize_ns
from edgebench.runtimes.base import Session


class _Counting(Session):
    def __init__(self) -> None:
        self.calls = 0

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self.calls += 1
        return inputs


def test_summary_matches_numpy():
    samples = [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    summary, throughput = summarize_ns(samples, batch_size=2)
    assert summary["p50"] == pytest.approx(2.5)
    assert summary["min"] == 1.0 and summary["max"] == 4.0
    assert summary["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert throughput == pytest.approx(2 * 1e3 / 2.5)


def test_summary_rejects_empty():
    with pytest.raises(ValueError, match="no latency samples"):
        summarize_ns([])


def test_min_count_and_duration_both_required():
    session = _Counting()
    timing = time_session(session, np.zeros(1), MeasureSettings(warmup_iters=3, min_iters=5, min_time_s=0.05,
                                                                     max_iters=10**9))
    assert len(timing.samples_ns) >= 5
    assert timing.wall_ns >= 0.05e9
    assert session.calls == 1 + 3 + len(timing.samples_ns)  # first inference and warm-up are untimed


def test_max_iters_caps_the_loop():
    timing = time_session(_Counting(), np.zeros(1), MeasureSettings(warmup_iters=0, min_iters=1, min_time_s=60,
                                                                     max_iters=50))
    assert len(timing.samples_ns) == 50
