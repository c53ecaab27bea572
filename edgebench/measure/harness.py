"""The timed loop: the only place latency is measured, for every backend.

Loading, compiling, the first inference and warm-up are untimed (first inference is recorded separately).
The timed loop first runs a floor (``min_iters`` and ``min_time_s`` both), then goes on until the
distribution-free confidence interval of each percentile in ``precision_percentiles`` lies within
``precision`` of it (:class:`~edgebench.measure.stats.PrecisionRule`), capped by ``max_iters`` and
``max_time_s``. So a 0.02 ms model stops after a few thousand samples and a 5 ms one after the few hundred
its spread needs, and every measurement says why its window ended. ``precision: null`` keeps the fixed
window (the floor alone). Every per-iteration sample is kept in integer nanoseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgebench.job import MeasureSettings
from edgebench.measure.stats import PrecisionRule
from edgebench.runtimes.base import Session, timed_callable

#: why a timed window ended
StopReason = Literal["precision", "fixed_window", "max_time", "max_iters"]

#: the precision rule is checked each time the sample count has grown by this fraction (and at least by one):
#: a check costs a partial sort of the samples, so checking every sample would cost O(n^2) over a window
CHECK_GROWTH = 0.05


@dataclass
class Timing:
    """Raw result of a timed loop."""

    first_inference_ns: int
    samples_ns: list[int]
    wall_ns: int
    stopped: StopReason = "fixed_window"
    #: whether the precision rule held over the final samples (None: no rule); a cap may end a window that met it
    precision_met: bool | None = None


def precision_rule(settings: MeasureSettings) -> PrecisionRule | None:
    """The stopping rule ``settings`` ask for; None for a fixed window."""
    if settings.precision is None:
        return None
    return PrecisionRule(settings.precision, settings.precision_percentiles, settings.confidence)


def time_session(session: Session, batch: np.ndarray, settings: MeasureSettings) -> Timing:
    """Time the session's inference of ``batch`` (``Session.timed_call``) repeatedly according to ``settings``."""
    call, sync, clock = timed_callable(session, batch), session.sync, time.perf_counter_ns
    start = clock()
    call()
    sync()
    first = clock() - start
    for _ in range(settings.warmup_iters):
        call()
    sync()

    rule = precision_rule(settings)
    min_ns = int(settings.min_time_s * 1e9)
    max_ns = int(settings.max_time_s * 1e9)
    samples: list[int] = []
    append = samples.append
    next_check = settings.min_iters
    stopped: StopReason
    loop_start = clock()
    while True:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - loop_start
        n = len(samples)
        if n >= settings.max_iters:
            stopped = "max_iters"
            break
        if elapsed >= max_ns:
            stopped = "max_time"
            break
        if n < next_check or elapsed < min_ns:
            continue
        if rule is None:
            stopped = "fixed_window"
            break
        if rule.met(samples):  # between two samples: the check is never inside a timed interval
            stopped = "precision"
            break
        next_check = n + max(1, int(n * CHECK_GROWTH))
    wall_ns = clock() - loop_start
    met = None if rule is None else stopped == "precision" or rule.met(samples)
    return Timing(first_inference_ns=first, samples_ns=samples, wall_ns=wall_ns, stopped=stopped, precision_met=met)
