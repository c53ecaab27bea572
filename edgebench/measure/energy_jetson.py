"""Jetson module energy: INA3221 rails from sysfs, or tegrastats where sysfs is not readable.

Both only give power, so energy is the integral of samples over the window. The
INA3221 averages over ~1 ms but the driver refreshes slower, so windows are at
least a second; tegrastats' fastest interval is ~100 ms.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

from edgebench.components import Tool
from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading, MeterUnavailable
from edgebench.measure.energy_sampling import SamplingMeter, reading_from_power
from edgebench.measure.jetson import parse_tegrastats_line, read_ina_rails_mw, total_power_mw

TEGRASTATS = Tool("tegrastats", "Jetson power rails (fallback meter)", "part of L4T on Jetson")


@METERS.register("jetson_ina")
class JetsonInaMeter(SamplingMeter):
    """Module power from the INA3221 sysfs rails (input rail, else the sum of rails), sampled."""

    source = "measured:jetson-ina"
    min_window_s = 1.0

    def __init__(self, root: str | Path = "/sys/bus/i2c/drivers", rails: list[str] | None = None,
                 period_s: float = 0.05) -> None:
        self.root = Path(root)
        self.rails = rails
        first = self._read_rails()
        if not first:
            if shutil.which("tegrastats"):
                raise MeterUnavailable(f"no INA3221 rails readable under {self.root}; use {{type: tegrastats}}")
            raise MeterUnavailable(f"no INA3221 rails under {self.root} (not a Jetson?)")
        super().__init__(self._read_watts, period_s)

    def _read_rails(self) -> dict[str, float]:
        rails = read_ina_rails_mw(self.root)
        return {k: v for k, v in rails.items() if k in self.rails} if self.rails else rails

    def _read_watts(self) -> float:
        rails = self._read_rails()
        total = sum(rails.values()) if self.rails else total_power_mw(rails)
        return (total or 0.0) / 1000.0


@METERS.register("tegrastats")
class TegrastatsMeter(EnergyMeter):
    """Module power from a ``tegrastats --interval`` subprocess, integrated over the window."""

    source = "measured:tegrastats"
    needs = (TEGRASTATS,)

    def __init__(self, interval_ms: int = 100, command: str = "tegrastats") -> None:
        self.command = shutil.which(command)
        if self.command is None:
            raise MeterUnavailable(f"{command} not found on PATH (not a Jetson, or L4T tools not installed)")
        self.interval_ms = interval_ms
        self.min_window_s = max(1.0, 20 * interval_ms / 1000)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._samples: list[tuple[float, float]] = []
        self._t0 = 0.0

    def _read_lines(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            total = parse_tegrastats_line(line).total_mw
            if total is not None:
                self._samples.append((time.perf_counter(), total / 1000.0))

    def start(self) -> None:
        self._samples = []
        self._proc = subprocess.Popen([self.command, "--interval", str(self.interval_ms)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read_lines, daemon=True)
        self._reader.start()
        deadline = time.perf_counter() + 5 * self.interval_ms / 1000 + 1
        while not self._samples and time.perf_counter() < deadline:
            time.sleep(self.interval_ms / 4000)
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        t1 = time.perf_counter()
        # wait for a line printed after the window closed (a loaded machine delays tegrastats' output)
        deadline = t1 + 5 * self.interval_ms / 1000 + 1
        while not (self._samples and self._samples[-1][0] >= t1) and time.perf_counter() < deadline:
            time.sleep(self.interval_ms / 4000)
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return reading_from_power([s[0] for s in self._samples], [s[1] for s in self._samples], self._t0, t1,
                                  self.source, "tegrastats printed no power rails covering the window")
