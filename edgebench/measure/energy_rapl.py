"""Intel/AMD RAPL energy counters through the Linux powercap sysfs interface.

Each zone (``intel-rapl:0`` = package 0, ``intel-rapl:0:1`` = its DRAM or core
sub-zone ...) exposes a monotonically increasing ``energy_uj`` that wraps to zero
after ``max_energy_range_uj``. Since Linux 5.10 ``energy_uj`` is readable by root
only (CVE-2020-8694), hence the explicit fix in the permission error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading, MeterUnavailable

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its directory, name (e.g. ``package-0``) and wrap range."""

    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        """Current counter value in microjoules."""
        return int((self.path / "energy_uj").read_text().strip())


def counter_delta_uj(start: int, end: int, max_range_uj: int) -> int:
    """Energy between two readings of a wrapping counter (at most one wrap in between)."""
    return end - start if end >= start else end + (max_range_uj - start)


def find_zones(root: Path = POWERCAP_ROOT, names: list[str] | None = None) -> list[RaplZone]:
    """Zones under ``root``: the top-level packages by default, or the zones whose name is in ``names``."""
    zones = []
    for d in sorted(root.glob("*-rapl:*")):
        name_file = d / "name"
        if not name_file.is_file():
            continue
        name = name_file.read_text().strip()
        top_level = d.name.count(":") == 1
        wanted = name in names if names else (top_level and name.startswith("package"))
        if wanted:
            zones.append(RaplZone(d, name, int((d / "max_energy_range_uj").read_text().strip())))
    return zones


def _permission_fix(path: Path) -> str:
    return (
        f"cannot read {path}: permission denied. Since Linux 5.10 RAPL energy_uj is root-only; allow it with "
        f"`sudo chmod o+r {path.parent.parent}/*-rapl:*/energy_uj` (until reboot) or a udev rule, or run as root"
    )


@METERS.register("rapl")
class RaplMeter(EnergyMeter):
    """Sum of the selected RAPL zones (default: every CPU package) over the window."""

    source = "measured:rapl"
    min_window_s = 0.1  # counters update about every millisecond; 100 ms keeps the quantisation < 1 %

    def __init__(self, root: str | Path = POWERCAP_ROOT, zones: list[str] | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise MeterUnavailable(f"{root} does not exist (no powercap/RAPL support on this machine or kernel)")
        self.zones = find_zones(root, zones)
        if not self.zones:
            wanted = ", ".join(zones) if zones else "package-*"
            raise MeterUnavailable(f"no RAPL zone named {wanted} under {root}")
        self._start: list[int] = []
        self._t0 = 0.0
        self._read_all()  # fail now, with the fix, rather than inside the timed window

    def _read_all(self) -> list[int]:
        values = []
        for zone in self.zones:
            try:
                values.append(zone.read_uj())
            except PermissionError:
                raise MeterUnavailable(_permission_fix(zone.path / "energy_uj")) from None
        return values

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._read_all()

    def stop(self) -> EnergyReading:
        end = self._read_all()
        seconds = time.perf_counter() - self._t0
        total_uj = sum(
            counter_delta_uj(s, e, z.max_energy_range_uj) for s, e, z in zip(self._start, end, self.zones, strict=True)
        )
        names = "+".join(z.name for z in self.zones)
        return EnergyReading(joules=total_uj / 1e6, seconds=seconds, source=self.source, note=f"zones: {names}")
