"""Energy from power samples: a background sampler and trapezoid integration.

Meters without an energy counter (NVML before Volta, Jetson INA rails,
tegrastats, external meters) only report power; energy over a window is the
integral of those samples, with the power at the window edges interpolated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edgebench.measure.energy import EnergyMeter, EnergyReading


def integrate_power(times_s: Sequence[float], watts: Sequence[float], t0: float, t1: float) -> float | None:
    """Joules between ``t0`` and ``t1`` from power samples (trapezoid, edges interpolated).

    None when the samples do not cover the window (fewer than two samples, or
    none at or before ``t0`` / at or after ``t1``): extrapolating would invent energy.
    """
    t = np.asarray(times_s, dtype=np.float64)
    w = np.asarray(watts, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, w = t[order], w[order]
    if t1 <= t0 or len(t) < 2 or t[0] > t0 or t[-1] < t1:
        return None
    inside = (t > t0) & (t < t1)
    grid = np.concatenate([[t0], t[inside], [t1]])
    power = np.interp(grid, t, w)
    return float(np.sum((power[1:] + power[:-1]) * np.diff(grid) / 2.0))


def reading_from_power(
    times_s: Sequence[float], watts: Sequence[float], t0: float, t1: float, source: str, uncovered: str
) -> EnergyReading:
    """The window's reading from power samples; when they do not cover it, energy None with ``uncovered`` as note."""
    joules = integrate_power(times_s, watts, t0, t1)
    if joules is None:
        return EnergyReading(joules=None, seconds=t1 - t0, source=None, note=uncovered)
    return EnergyReading(joules=joules, seconds=t1 - t0, source=source)


class SamplingMeter(EnergyMeter):
    """Integrates ``read_watts()`` polled by a background thread every ``period_s``.

    Subclasses provide ``read_watts``; sampling starts one period before the window
    and stops one period after it so both edges are covered.
    """

    def __init__(self, read_watts: Callable[[], float], period_s: float = 0.02) -> None:
        self._read_watts = read_watts
        self.period_s = period_s
        self.min_window_s = max(self.min_window_s, 20 * period_s)
        self._samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _loop(self) -> None:
        while not self._stop_event.is_set():
            self._samples.append((time.perf_counter(), float(self._read_watts())))
            self._stop_event.wait(self.period_s)

    def start(self) -> None:
        self._samples = []
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{type(self).__name__}-sampler", daemon=True)
        self._thread.start()
        time.sleep(self.period_s)  # a sample at or before t0
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        t1 = time.perf_counter()
        time.sleep(self.period_s * 1.5)  # a sample at or after t1
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        times = [s[0] for s in self._samples]
        watts = [s[1] for s in self._samples]
        return reading_from_power(times, watts, self._t0, t1, self.source,
                                  f"power samples did not cover the window ({len(times)} samples)")
