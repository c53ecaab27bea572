"""How much CPU other processes took during a timed window: measured, stored and flagged, never decided on.

The kernel counts busy time per core (``/proc/stat``: user, nice, system, irq, softirq, steal); the
measuring process counts its own (``os.times``: every thread of it). Over the timed window, the busy time of
the cores the measurement may run on, less its own, is what everything else took there: other tenants'
processes, another benchmark, a hypervisor stealing the core (``steal``). Others may use the cores the
measurement leaves free (a one-thread job on two cores leaves one); what they took beyond those, averaged
over the window, preempted the measurement. Above ``CONTENDED_CORES`` of it (a tenth of a core; the
environment variable ``EDGEBENCH_CONTENDED_CORES`` overrides it) the measurement is flagged: compare and
history do not call a regression or an improvement on it. The kernel's tick is 10 ms, so a window shorter
than a few ticks cannot be judged and is never flagged, and less than 30 ms of others' CPU time cannot be told
from the counters' own error; where that error could hide preemption, the window's own samples decide: a 0.1 s
window whose calls stalled for 33 ms (others took 28 ms by the counters) moved the mean, so the throughput, by a
third while its p50 stayed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebench.job import Contention
from edgebench.measure.speed_probe import env_number

PROC_STAT = Path("/proc/stat")
#: other processes' CPU use beyond the measurement's spare cores (cores, averaged over the window) from which a
#: timed window counts as contended
CONTENDED_CORES = 0.1
THRESHOLD_ENV = "EDGEBENCH_CONTENDED_CORES"
#: below this much CPU time taken by others the tick-based counters cannot tell it from their own error
_RESOLUTION_S = 0.03
#: a window shorter than this many kernel ticks cannot be judged: the counters advance a whole tick at a time, and a
#: tick another process earned before the window can land inside it (4 ticks in a 1.4 ms window read as 29 cores)
_MIN_TICKS = 5
#: the share of a window its samples' stalls must reach to flag it where others' CPU time is under the counters'
#: resolution: a share that alone moves the mean (so the throughput) by throughput's minimum effect, 5 %
STALL_SHARE = 0.05
#: /proc/stat columns that are work (not idle or iowait); guest time is already inside user
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def _busy_seconds(cores: frozenset[int]) -> float | None:
    """Busy CPU seconds of ``cores`` since boot, or None where /proc/stat cannot be read."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            fields = rest.split()
            ticks += sum(int(fields[i]) for i in _BUSY_COLUMNS if i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class ContentionProbe:
    """Counters read at the start of a timed window; :meth:`stop` at its end says what others took."""

    cores: frozenset[int]
    threads: int
    busy: float | None
    own: float

    @classmethod
    def start(cls, threads: int) -> ContentionProbe:
        """Read the counters of the cores this process may run on; the measurement uses ``threads`` of them."""
        cores = frozenset(os.sched_getaffinity(0))
        return cls(cores, threads, _busy_seconds(cores), _own_seconds())

    def stop(self, window_s: float, samples_ns: np.ndarray | None = None) -> Contention | None:
        """Other processes' CPU use over the last ``window_s`` seconds, judged with the window's own samples
        (``samples_ns``) where the counters alone cannot tell; None where the counters cannot be read."""
        busy = _busy_seconds(self.cores)
        if self.busy is None or busy is None or window_s <= 0:
            return None
        others = max(0.0, (busy - self.busy) - (_own_seconds() - self.own))
        spare = max(0, len(self.cores) - self.threads)
        other_cores = min(others / window_s, float(len(self.cores)))  # no more cores than there are
        preempting = max(0.0, other_cores - spare)
        threshold = contended_cores()
        judged = window_s >= _MIN_TICKS / os.sysconf("SC_CLK_TCK")
        stalled = stalled_seconds(samples_ns) if samples_ns is not None else None
        by_counters = preempting > threshold and preempting * window_s >= _RESOLUTION_S
        # below their resolution the counters cannot rule preemption out unless even their error's worth more
        # stays within the spare cores (a 50 ms window read 0.99 of 1 spare core: it could be 1.6); there the
        # window's own stalls decide (29 % of that window stalled, and an A/A compare failed on its throughput)
        unresolved = (others + _RESOLUTION_S) / window_s - spare > threshold
        by_samples = unresolved and (stalled or 0.0) >= STALL_SHARE * window_s
        return Contention(other_cores=round(other_cores, 4), other_cpu_s=round(others, 4),
                          window_s=round(window_s, 4), cores=sorted(self.cores), spare_cores=spare,
                          threshold=threshold, stalled_s=None if stalled is None else round(stalled, 4),
                          flagged=judged and (by_counters or by_samples))


def stalled_seconds(samples_ns: np.ndarray) -> float:
    """Seconds the timed calls took beyond twice their median: where a preempted call shows, to the nanosecond
    (an 11 us call that lost the core for a 4 ms time slice), which the tick-counted /proc/stat cannot."""
    if len(samples_ns) == 0:
        return 0.0
    samples = np.asarray(samples_ns, dtype=np.float64)
    return float(np.maximum(samples - 2 * np.median(samples), 0.0).sum() / 1e9)


def contended_cores() -> float:
    """``CONTENDED_CORES``, or the environment's ``EDGEBENCH_CONTENDED_CORES``."""
    return env_number(THRESHOLD_ENV, CONTENDED_CORES)
