"""Timed-loop rules, summary statistics and the order-statistic confidence intervals of percentiles."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, cycle, repeat
from math import comb
from types import SimpleNamespace

import numpy as np
import pytest

from edgebench.job import MeasureSettings
from edgebench.measure import harness
from edgebench.measure.harness import time_session
from edgebench.measure.stats import (
    PrecisionRule,
    latency_intervals,
    order_statistic_ranks,
    percentile_interval,
    summarize_ns,
)
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


# ---- order-statistic confidence intervals: known answers ---------------------------------------------------------

def _binomial_cdf(k: int, n: int, q: float) -> float:
    """P(B <= k) for B ~ Binomial(n, q), summed term by term from the definition."""
    return sum(comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1))


def _coverage(n: int, q: float, lower: int, upper: int) -> float:
    """Probability that ``[x_(lower), x_(upper)]`` of ``n`` samples encloses the ``q``-quantile."""
    return _binomial_cdf(upper - 1, n, q) - _binomial_cdf(lower - 1, n, q)


def test_median_ranks_of_ten_and_twenty_samples_are_the_textbook_ones():
    # n = 10: P(B <= 1) = (1 + 10) / 1024 = 0.0107 <= 0.025 < P(B <= 2) = 56 / 1024, so l = 2 and, by symmetry,
    # u = 9: [x_(2), x_(9)] covers the median with 1 - 2 * 11 / 1024 = 0.978515625
    assert order_statistic_ranks(10, 0.5) == (2, 9)
    assert _coverage(10, 0.5, 2, 9) == pytest.approx(1 - 22 / 1024, abs=1e-12)
    # n = 20: P(B <= 5) = (1 + 20 + 190 + 1140 + 4845 + 15504) / 2^20 = 21700 / 1048576 = 0.0207 <= 0.025,
    # P(B <= 6) = (21700 + 38760) / 2^20 = 0.0577: [x_(6), x_(15)], coverage 1 - 2 * 21700 / 2^20
    assert order_statistic_ranks(20, 0.5) == (6, 15)
    assert _coverage(20, 0.5, 6, 15) == pytest.approx(1 - 43400 / 1048576, abs=1e-12)


def test_too_few_samples_give_no_interval():
    # the widest pair [x_(1), x_(n)] misses the median with 2 * 0.5^n: 2/32 > 0.05 at n = 5, 2/64 <= 0.05 at 6
    assert order_statistic_ranks(5, 0.5) is None
    assert order_statistic_ranks(6, 0.5) == (1, 6)
    # a p99 needs P(all n below it) = 0.99^n <= 0.025: n >= ln 0.025 / ln 0.99 = 367.04
    assert order_statistic_ranks(367, 0.99) is None
    assert order_statistic_ranks(368, 0.99) == (360, 368)


@pytest.mark.parametrize("n,q", [(100, 0.9), (250, 0.5), (500, 0.99), (37, 0.9)])
def test_ranks_match_the_binomial_definition(n, q):
    lower, upper = order_statistic_ranks(n, q)
    tail = 0.025
    # l is the largest rank whose lower tail P(B <= l - 1) is at most 2.5 %, u the smallest with P(B >= u) <= 2.5 %
    assert _binomial_cdf(lower - 1, n, q) <= tail < _binomial_cdf(lower, n, q)
    assert 1 - _binomial_cdf(upper - 1, n, q) <= tail < 1 - _binomial_cdf(upper - 2, n, q)
    assert _coverage(n, q, lower, upper) >= 0.95


def test_p90_of_a_hundred_samples_is_bracketed_by_ranks_84_and_96():
    assert order_statistic_ranks(100, 0.9) == (84, 96)
    samples = np.arange(1, 101) * 1_000_000  # 1..100 ms, shuffled: the interval reads ranks, not positions
    np.random.default_rng(0).shuffle(samples)
    interval = percentile_interval(samples, 90)
    assert (interval.low, interval.high) == (84e6, 96e6)
    assert interval.estimate == pytest.approx(np.percentile(samples, 90))


def test_interval_covers_the_true_median_at_least_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_median = np.log(2)  # of the exponential distribution with rate 1: skewed, like latencies
    hits = 0
    trials = 2000
    for _ in range(trials):
        interval = percentile_interval(rng.exponential(size=60), 50)
        hits += interval.low <= true_median <= interval.high
    # exact coverage at n = 60 is _coverage(60, .5, l, u) >= 0.95; 2000 trials put 3 sigma at 0.015 around it
    assert hits / trials >= _coverage(60, 0.5, *order_statistic_ranks(60, 0.5)) - 0.015


def test_latency_intervals_are_in_ms_and_omit_percentiles_with_too_few_samples():
    samples = (np.arange(1, 101) * 10_000).tolist()  # 0.01..1 ms
    found = latency_intervals(samples)
    assert set(found) == {"p50", "p90"}  # 100 samples are too few for a p99 interval
    low, high = found["p50"]
    lower, upper = order_statistic_ranks(100, 0.5)
    assert (low, high) == (lower * 0.01, upper * 0.01)


def test_precision_rule_uses_the_widest_of_its_percentiles():
    rng = np.random.default_rng(2)
    tight = rng.normal(1_000_000, 1_000, size=2000)  # spread 0.1 %: p50 pinned well within 1 %
    assert PrecisionRule(0.01).met(tight)
    assert not PrecisionRule(0.00001).met(tight)
    heavy_tail = np.concatenate([tight, rng.uniform(1e6, 3e6, size=100)])
    assert PrecisionRule(0.01, ["p50"]).met(heavy_tail)
    assert not PrecisionRule(0.01, ["p50", "p99"]).met(heavy_tail)
    with pytest.raises(ValueError, match="unknown percentiles"):
        PrecisionRule(0.01, ["p95"])


# ---- the timed loop --------------------------------------------------------------------------------------------

def test_min_count_and_duration_both_required():
    session = _Counting()
    timing = time_session(session, np.zeros(1), MeasureSettings(warmup_iters=3, min_iters=5, min_time_s=0.05,
                                                                     max_iters=10**9, precision=None))
    assert len(timing.samples_ns) >= 5
    assert timing.wall_ns >= 0.05e9
    assert timing.stopped == "fixed_window"
    assert session.calls == 1 + 3 + len(timing.samples_ns)  # first inference and warm-up are untimed


def test_max_iters_caps_the_loop():
    timing = time_session(_Counting(), np.zeros(1), MeasureSettings(warmup_iters=0, min_iters=1, min_time_s=60,
                                                                     max_iters=50))
    assert len(timing.samples_ns) == 50
    assert timing.stopped == "max_iters"


class _Clock:
    """A virtual ``perf_counter_ns`` that only a fake session's run moves: the timed loop then sees exactly the
    durations a test chose, however loaded the machine (real sleeps stretched 2 ms to 4-8 ms on a busy CI guest)."""

    def __init__(self) -> None:
        self.now_ns = 0

    def perf_counter_ns(self) -> int:
        return self.now_ns


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    """The harness's clock, replaced for this test by a virtual one."""
    virtual = _Clock()
    monkeypatch.setattr(harness, "time", SimpleNamespace(perf_counter_ns=virtual.perf_counter_ns))
    return virtual


class _Ticking(Session):
    """Each run advances ``clock`` by the next of ``durations_ns`` (the first inference and warm-up take theirs too):
    a known spread."""

    def __init__(self, clock: _Clock, durations_ns: Iterable[int]) -> None:
        self.clock, self.durations_ns, self.calls = clock, iter(durations_ns), 0

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.clock.now_ns += next(self.durations_ns)
        return inputs


class _Prepared(_Ticking):
    """``run`` converts for 5 ms before its 1 ms inference, as LiteRT's run quantizes and re-lays an input;
    ``timed_call`` prepares once and times the inference alone."""

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self.clock.now_ns += 5_000_000
        return super().run(inputs)

    def timed_call(self, batch: np.ndarray):
        return lambda: _Ticking.run(self, batch)


def test_the_timed_loop_times_the_sessions_timed_call_not_its_run(clock):
    settings = MeasureSettings(warmup_iters=1, min_iters=20, min_time_s=0.0, max_time_s=5, precision=None)
    session = _Prepared(clock, repeat(1_000_000))
    timing = time_session(session, np.zeros(1), settings)
    assert session.calls == 1 + 1 + len(timing.samples_ns)  # every call, the first and warm-up included, went there
    assert timing.samples_ns == [1_000_000] * 20  # the inference's 1 ms each, not run's 6 ms


def test_adaptive_window_stops_at_the_precision_after_the_floor(clock):
    # 9 samples of 1 ms and 9 of 2 ms around a p50 of 1.5 ms (+-20 us), then only 1.5 ms +-20 us: the p50 interval
    # [x_(l), x_(n+1-l)] is within 5 % once l >= 10, i.e. P(B <= 9) <= 2.5 % for B ~ Binomial(n, 1/2). That is
    # 0.0307 at n = 29 and 0.0214 at n = 30, so the floor's 20 samples are not enough and the window ends at 30
    # (under 40 samples the rule is checked after every one)
    assert _binomial_cdf(9, 29, 0.5) > 0.025 >= _binomial_cdf(9, 30, 0.5)
    settings = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.0, max_time_s=20, precision=0.05)
    untimed, spread, middle = [1_500_000] * 3, [1_000_000, 2_000_000] * 9, cycle([1_480_000, 1_520_000])
    timing = time_session(_Ticking(clock, chain(untimed, spread, middle)), np.zeros(1), settings)
    assert timing.stopped == "precision"
    assert len(timing.samples_ns) == 30
    assert PrecisionRule(0.05).met(timing.samples_ns) and not PrecisionRule(0.05).met(timing.samples_ns[:29])


def test_a_precision_out_of_reach_ends_at_the_time_cap(clock):
    # every other run 10x slower: the median sits on a cliff between two modes and is never pinned within 0.1 %
    settings = MeasureSettings(warmup_iters=0, min_iters=10, min_time_s=0.0, max_time_s=0.3, precision=0.001)
    timing = time_session(_Ticking(clock, cycle([1_000_000, 10_000_000])), np.zeros(1), settings)
    assert timing.stopped == "max_time" and timing.precision_met is False
    # samples 10, 1, 10, ... ms: 27 pairs make 297 ms, the 55th sample (10 ms) passes the 300 ms cap
    assert len(timing.samples_ns) == 55 and timing.wall_ns == 307_000_000


def test_a_window_the_cap_ended_after_the_precision_was_met_says_it_was_met(clock):
    """min_time_s = max_time_s (a fixed window, README's energy recipe) always ended by the cap, and the run then
    listed it as short of the precision although its p50 interval was well within it."""
    settings = MeasureSettings(warmup_iters=0, min_iters=10, min_time_s=0.2, max_time_s=0.2, precision=0.05)
    # 2 ms +-2 %: samples 2.04, 1.96, ... ms reach the 200 ms cap at the 100th; the p50 of 2.0 ms has the interval
    # [x_(40), x_(61)] = [1.96, 2.04] ms at n = 100, 2 % either side
    jitter = [1_960_000, 2_040_000]
    timing = time_session(_Ticking(clock, cycle(jitter)), np.zeros(1), settings)
    assert timing.stopped == "max_time" and timing.precision_met is True
    assert len(timing.samples_ns) == 100
    assert PrecisionRule(0.05).met(timing.samples_ns)  # what precision_met claims, checked on its own
    fixed = time_session(_Ticking(clock, cycle(jitter)), np.zeros(1), settings.model_copy(update={"precision": None}))
    assert fixed.precision_met is None


def test_order_statistic_ranks_equal_scipys_binomial_quantiles():
    """The binomial tails are computed without scipy (a worker would carry scipy.stats in every job's peak RSS);
    scipy's ppf/isf give the same ranks, from a handful of samples to a million."""
    from scipy.stats import binom

    def by_scipy(n: int, q: float) -> tuple[int, int] | None:
        k = int(binom.ppf(0.025, n, q))
        lower, upper = (k if binom.cdf(k, n, q) > 0.025 else k + 1), int(binom.isf(0.025, n, q)) + 1
        return (lower, upper) if lower >= 1 and upper <= n else None

    for q in (0.5, 0.9, 0.99):
        for n in [*range(1, 400, 7), 1000, 4099, 65536, 10**6]:
            assert order_statistic_ranks(n, q) == by_scipy(n, q), (n, q)


def test_a_measurement_worker_does_not_import_scipy():
    import subprocess
    import sys

    code = "import sys, edgebench.measure.worker; print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'pandas'}))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_the_fewest_runs_for_an_interval_are_those_the_order_statistics_need(q: float, confidence: float) -> None:
    from edgebench.order_statistics import runs_for_an_interval

    n = runs_for_an_interval(q, confidence)
    assert order_statistic_ranks(n, q, confidence) is not None and order_statistic_ranks(n - 1, q, confidence) is None


def test_a_cap_under_what_a_precision_percentile_needs_is_refused() -> None:
    """p99's interval needs 368 runs at 95 %: max_iters 100 could never end a window by the precision rule."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="max_iters \\(100\\) is under the 368 runs a p99 interval"):
        MeasureSettings(precision_percentiles=["p50", "p99"], max_iters=100)
    assert MeasureSettings(precision=None, max_iters=100).max_iters == 100  # a fixed window asks no interval
