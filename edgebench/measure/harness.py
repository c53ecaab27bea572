"""The timed loop: the only place latency is measured, for every backend.

Loading, compiling, the first inference and warm-up are untimed (first
inference is recorded separately). The timed loop runs until both a minimum
count and a minimum duration are reached, capped by ``max_iters``/``max_time_s``,
and keeps every per-iteration sample in integer nanoseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgebench.job import MeasureSettings
from edgebench.runtimes.base import Session


@dataclass
class Timing:
    """Raw result of a timed loop."""

    first_inference_ns: int
    samples_ns: list[int]
    wall_ns: int


def time_session(session: Session, batch: np.ndarray, settings: MeasureSettings) -> Timing:
    """Time ``session.run(batch)`` repeatedly according to ``settings``."""
    run, sync, clock = session.run, session.sync, time.perf_counter_ns
    start = clock()
    run(batch)
    sync()
    first = clock() - start
    for _ in range(settings.warmup_iters):
        run(batch)
    sync()

    min_ns = int(settings.min_time_s * 1e9)
    max_ns = int(settings.max_time_s * 1e9)
    samples: list[int] = []
    append = samples.append
    loop_start = clock()
    while True:
        t0 = clock()
        run(batch)
        sync()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - loop_start
        n = len(samples)
        if n >= settings.max_iters or elapsed >= max_ns:
            break
        if n >= settings.min_iters and elapsed >= min_ns:
            break
    return Timing(first_inference_ns=first, samples_ns=samples, wall_ns=clock() - loop_start)
