"""The machine's speed just before and just after a timed window, read by a fixed CPU kernel (our design).

On a shared VM a quiet guest can still run at two speeds: 31 back-to-back A/A pairs of the tiny experiment
(Intel Xeon @ 2.80GHz, 2 vCPUs, nothing else running in the guest) measured the same artifacts 1.5-2x slower
for seconds at a time, with no CPU time taken by others in ``/proc/stat`` (a tenant on the host's sibling
hyperthreads or memory bus is invisible to the guest, so ``measure.contention`` cannot see it): p50s moved by
sd 34 %, -54 %..+112 %. A fixed kernel timed for a few milliseconds tracks that state (sorting 4,096 floats:
11 us fast, 15-17 us slow, while the reference CNN took 65 vs 95-108 us). Numpy only: no BLAS threads to
wake, nothing the job's peak RSS notices.

Timing is compared only between windows the machine ran at one speed: a window whose two probes differ by
more than ``SPEED_TOLERANCE`` is disturbed (like a contended one), and compare leaves out the runs whose probe
is that much slower than the fastest of the runs it compares (``store.compare``).
"""

from __future__ import annotations

import os
import time

import numpy as np

from edgebench.job import SpeedProbe

#: probes further apart than this (relative) are different machine speeds
SPEED_TOLERANCE = 0.15
TOLERANCE_ENV = "EDGEBENCH_SPEED_TOLERANCE"
_REPS = 150
_DATA = np.random.default_rng(0).standard_normal(4096).astype(np.float32)


def probe_us() -> float:
    """Median microseconds of one sort of the fixed data (about 2-3 ms in all)."""
    np.sort(_DATA)  # the first call pays for page faults, not speed
    times = np.empty(_REPS)
    for i in range(_REPS):
        start = time.perf_counter_ns()
        np.sort(_DATA)
        times[i] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e3


def tolerance() -> float:
    """``SPEED_TOLERANCE``, or the environment's ``EDGEBENCH_SPEED_TOLERANCE``."""
    return float(os.environ.get(TOLERANCE_ENV) or SPEED_TOLERANCE)


class WindowSpeed:
    """Probes read around one timed window: made just before it, ``stop`` just after it."""

    def __init__(self) -> None:
        self.before_us = probe_us()

    def stop(self) -> SpeedProbe:
        after = probe_us()
        return SpeedProbe(before_us=round(self.before_us, 3), after_us=round(after, 3), tolerance=tolerance())
