"""An external power meter's log (CSV of timestamped power samples) merged by time window.

USB/bench meters and smart plugs log power on their own clock; edgebench records
the window in Unix time and integrates the samples that fall in it, after shifting
them by ``time_offset_s`` (meter clock minus this machine's clock).
"""

from __future__ import annotations

import csv
import time
from datetime import datetime
from pathlib import Path

from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading, MeterUnavailable
from edgebench.measure.energy_sampling import reading_from_power


def _parse_time(value: str) -> float:
    """Unix seconds, or an ISO 8601 timestamp (naive = local time)."""
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.strip()).timestamp()


def read_power_csv(
    path: Path,
    time_column: str = "timestamp",
    power_column: str | None = "power_w",
    voltage_column: str | None = None,
    current_column: str | None = None,
) -> tuple[list[float], list[float]]:
    """(unix seconds, watts) from a meter log; power is a column or voltage x current."""
    times, watts = [], []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        needed = [time_column] + ([voltage_column, current_column] if voltage_column else [power_column])
        missing = [c for c in needed if c not in fields]
        if missing:
            raise MeterUnavailable(f"{path}: column(s) {', '.join(map(str, missing))} not in header {fields}")
        for row in reader:
            if not row.get(time_column):
                continue
            times.append(_parse_time(row[time_column]))
            if voltage_column and current_column:
                watts.append(float(row[voltage_column]) * float(row[current_column]))
            else:
                watts.append(float(row[power_column]))  # type: ignore[index]
    return times, watts


@METERS.register("external_csv")
class ExternalCsvMeter(EnergyMeter):
    """Integrates an external meter's CSV log over the window, waiting for samples past its end."""

    source = "measured:external-csv"

    def __init__(self, path: str, time_column: str = "timestamp", power_column: str = "power_w",
                 voltage_column: str | None = None, current_column: str | None = None,
                 time_offset_s: float = 0.0, min_window_s: float = 2.0, wait_s: float = 5.0) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise MeterUnavailable(f"meter log {self.path} not found (start the meter's logger first)")
        if (voltage_column is None) != (current_column is None):
            raise MeterUnavailable("give both voltage_column and current_column, or power_column alone")
        self.columns = {"time_column": time_column, "power_column": power_column,
                        "voltage_column": voltage_column, "current_column": current_column}
        read_power_csv(self.path, **self.columns)  # a wrong column name fails here, not after the window
        self.time_offset_s = time_offset_s
        self.min_window_s = min_window_s
        self.wait_s = wait_s
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.time()

    def stop(self) -> EnergyReading:
        t1 = time.time()
        deadline = t1 + self.wait_s
        while True:
            times, watts = read_power_csv(self.path, **self.columns)
            local = [t - self.time_offset_s for t in times]
            if (local and max(local) >= t1) or time.time() >= deadline:
                break
            time.sleep(0.2)
        return reading_from_power(local, watts, self._t0, t1, self.source,
                                  f"{self.path} has no samples spanning the window {self._t0:.3f}-{t1:.3f} "
                                  "(check time_offset_s)")
