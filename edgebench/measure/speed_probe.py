"""The machine's speed just before and just after a timed window, read by a fixed CPU kernel (our design).

On a shared VM a quiet guest can still run at two speeds: 31 back-to-back A/A pairs of the tiny experiment
(Intel Xeon @ 2.80GHz, 2 vCPUs, nothing else running in the guest) measured the same artifacts 1.5-2x slower
for seconds at a time, with no CPU time taken by others in ``/proc/stat`` (a tenant on the host's sibling
hyperthreads or memory bus is invisible to the guest, so ``measure.contention`` cannot see it): p50s moved by
sd 34 %, -54 %..+112 %. A fixed kernel timed for a few milliseconds tracks that state (sorting 4,096 floats:
11 us fast, 15-17 us slow, while the reference CNN took 65 vs 95-108 us). Numpy only: no BLAS threads to
wake, nothing the job's peak RSS notices.

The probes miss a change that comes and goes inside the window (the recipe arm of
``scripts/bench_regression_detection.py`` stored windows whose samples ran at 25 us for six eighths of the window
and 43 us for the rest, probes 14 and 16 us), so the window's own samples are read too: cut in time order into up
to ``SEGMENTS`` consecutive segments, their medians may not differ by more than the tolerance either.

Timing is compared only between windows the machine ran at one speed: a window whose two probes, or whose own
segments, differ by more than ``SPEED_TOLERANCE`` is disturbed (like a contended one), and compare leaves out the
runs whose probe is that much slower than the fastest of the runs it compares (``store.compare``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numpy as np

from edgebench.errors import ConfigError
from edgebench.job import SpeedProbe

#: probes further apart than this (relative) are different machine speeds
SPEED_TOLERANCE = 0.15
TOLERANCE_ENV = "EDGEBENCH_SPEED_TOLERANCE"
_REPS = 150
#: the window's own samples are cut into at most this many segments, of at least ``SEGMENT_SAMPLES`` each (a
#: median of fewer is too noisy to tell speeds the tolerance apart)
SEGMENTS = 8
SEGMENT_SAMPLES = 25
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


def env_number(name: str, default: float, minimum: float = 0.0) -> float:
    """The environment variable ``name`` as a finite number >= ``minimum``, ``default`` when unset; ConfigError
    naming it if not (nan or inf would silently turn the flagging off)."""
    text = os.environ.get(name) or ""
    try:
        value = float(text) if text else default
    except ValueError:
        value = math.nan
    if not minimum <= value < math.inf:
        raise ConfigError(f"{name}={text!r}: give a number >= {minimum:g} (default {default}), or unset it")
    return value


def tolerance() -> float:
    """``SPEED_TOLERANCE``, or the environment's ``EDGEBENCH_SPEED_TOLERANCE`` (below 0, down to -1: every window
    counts as one the machine changed speed in, how tests force it)."""
    return env_number(TOLERANCE_ENV, SPEED_TOLERANCE, minimum=-1.0)


def within_window(samples_ns: Sequence[int]) -> float | None:
    """How much slower the later of the window's slowest and fastest segment ran than the earlier one (medians of
    its consecutive segments of samples, time order), less 1: as the probes' after over before, so -0.5 is twice as
    fast later; None for fewer than two segments' worth of samples."""
    segments = min(SEGMENTS, len(samples_ns) // SEGMENT_SAMPLES)
    if segments < 2:
        return None
    medians = [float(np.median(part)) for part in np.array_split(np.asarray(samples_ns, dtype=np.float64), segments)]
    slowest, fastest = int(np.argmax(medians)), int(np.argmin(medians))
    early, late = sorted((slowest, fastest))
    return round(medians[late] / medians[early] - 1, 4)


class WindowSpeed:
    """Probes read around one timed window: made just before it, ``stop`` just after it."""

    def __init__(self) -> None:
        self.before_us = probe_us()

    def stop(self, samples_ns: Sequence[int]) -> SpeedProbe:
        """The probe after the window, with the window's samples (time order) read for a change inside it."""
        after = probe_us()
        return SpeedProbe(before_us=round(self.before_us, 3), after_us=round(after, 3), tolerance=tolerance(),
                          within=within_window(samples_ns))
