"""Jetson specifics: power rails from tegrastats or the INA3221 sysfs, nvpmodel mode, jetson_clocks state.

tegrastats prints one line per interval; the power part differs by board and L4T release:

* Nano (L4T 32):            ``POM_5V_IN 2328/2328 POM_5V_GPU 0/0 POM_5V_CPU 411/411``   (mW cur/avg)
* TX2 / Xavier NX (L4T 32): ``VDD_IN 3630/3630 VDD_CPU_GPU_CV 483/483 VDD_SOC 1208/1208``
* AGX Xavier (L4T 32):      ``GPU 0/0 CPU 155/155 SOC 1088/1088 CV 0/0 VDDRQ 155/155 SYS5V 1572/1572``
* Orin (L4T 35/36):         ``VDD_IN 4813mW/4813mW VDD_CPU_GPU_CV 481mW/481mW VDD_SOC 1444mW/1444mW``
  (AGX Orin: ``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``); some releases add a third ``/max`` figure.

The board's total is its input rail where one is reported, else the sum of the rails.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

#: rails that measure the whole module's input, in order of preference
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")
#: labels of unconnected INA3221 channels (a connected rail may read below zero, e.g. AGX Orin's VDD_CPU_CV -398mW at
#: idle in a user's log: it is summed as tegrastats reports it, not dropped)
_UNCONNECTED = {"NC", "NA"}

_RAIL_RE = re.compile(
    r"(?<!\S)([A-Za-z][A-Za-z0-9_]*) (-?\d+)(?:mW)?/(-?\d+)(?:mW)?(?:/(-?\d+)(?:mW)?)?(?=\s|$)"
)
_TIMESTAMP_RE = re.compile(r"^(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "lfb"}


@dataclass(frozen=True)
class Rail:
    """One power rail reading in milliwatts."""

    name: str
    current_mw: float
    average_mw: float
    max_mw: float | None = None


@dataclass(frozen=True)
class TegrastatsSample:
    """The power part of one tegrastats line."""

    rails: dict[str, Rail]
    timestamp: datetime | None = None

    @property
    def total_mw(self) -> float | None:
        """Module power now: the input rail, else the sum of connected rails; None without rails."""
        return total_power_mw({name: rail.current_mw for name, rail in self.rails.items()})


def total_power_mw(rails_mw: dict[str, float]) -> float | None:
    """The input rail where present, else the sum of all connected rails (AGX Xavier, AGX Orin)."""
    for name in INPUT_RAILS:
        if name in rails_mw:
            return rails_mw[name]
    connected = [mw for name, mw in rails_mw.items() if name not in _UNCONNECTED]
    return float(sum(connected)) if connected else None


def parse_tegrastats_line(line: str) -> TegrastatsSample:
    """Parse the power rails (and the leading timestamp of newer releases) of one tegrastats line."""
    timestamp = None
    match = _TIMESTAMP_RE.match(line)
    if match:
        timestamp = datetime.strptime(match.group(1), "%m-%d-%Y %H:%M:%S")
    rails = {}
    for name, cur, avg, peak in _RAIL_RE.findall(line):
        if name in _NOT_RAILS:
            continue
        rails[name] = Rail(name, float(cur), float(avg), float(peak) if peak else None)
    return TegrastatsSample(rails=rails, timestamp=timestamp)


def parse_nvpmodel(output: str) -> tuple[str | None, int | None]:
    """``nvpmodel -q`` -> (mode name, mode id), e.g. ``("MODE_15W_6CORE", 2)``; Nones when absent."""
    name = mode_id = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("NV Power Mode:"):
            name = line.split(":", 1)[1].strip() or None
        elif line.isdigit() and name is not None and mode_id is None:
            mode_id = int(line)
    return name, mode_id


_FREQ_RE = re.compile(r"MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)")


def parse_jetson_clocks(output: str) -> bool | None:
    """``jetson_clocks --show`` -> True when every online CPU and the GPU are pinned at their maximum.

    jetson_clocks pins MinFreq to MaxFreq; None when the output holds no frequency lines.
    """
    pinned = []
    for line in output.splitlines():
        if "Online=0" in line:
            continue
        match = _FREQ_RE.search(line)
        if match and (line.lstrip().startswith(("cpu", "GPU"))):
            low, high, _current = (int(g) for g in match.groups())
            pinned.append(low == high)
    return all(pinned) if pinned else None


def read_ina_rails_mw(root: Path = Path("/sys/bus/i2c/drivers")) -> dict[str, float]:
    """Instantaneous rail power (mW) from the INA3221 sysfs of both driver generations.

    L4T 32 (``ina3221x``): ``iio:device*/rail_name_N`` + ``in_power N_input`` (mW).
    L4T 34+ (``ina3221`` hwmon): ``hwmon*/inN_label`` + ``inN_input`` (mV) x ``currN_input`` (mA).
    """
    rails: dict[str, float] = {}
    for name_file in sorted(root.glob("ina3221x/*/iio:device*/rail_name_*")):
        channel = name_file.name.rsplit("_", 1)[1]
        power = name_file.parent / f"in_power{channel}_input"
        if power.is_file():
            rails[name_file.read_text().strip()] = float(power.read_text())
    for label_file in sorted(root.glob("ina3221/*/hwmon/hwmon*/in*_label")):
        channel = label_file.name[2:].split("_", 1)[0]
        volts, amps = label_file.parent / f"in{channel}_input", label_file.parent / f"curr{channel}_input"
        label = label_file.read_text().strip()
        if volts.is_file() and amps.is_file() and label not in _UNCONNECTED and not label.startswith("sum of"):
            rails[label] = float(volts.read_text()) * float(amps.read_text()) / 1000.0
    return rails


def _run_quiet(cmd: list[str]) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None


def read_jetson_context() -> dict[str, str]:
    """Power mode and clock state of this Jetson (empty off Jetson) for the run's machine record."""
    context: dict[str, str] = {}
    nvp = _run_quiet(["nvpmodel", "-q"])
    if nvp:
        name, mode_id = parse_nvpmodel(nvp)
        if name:
            context["nvpmodel"] = name if mode_id is None else f"{name} ({mode_id})"
    clocks = _run_quiet(["jetson_clocks", "--show"])
    if clocks:
        state = parse_jetson_clocks(clocks)
        if state is not None:
            context["jetson_clocks"] = "on" if state else "off"
    model = Path("/proc/device-tree/model")
    if context and model.is_file():
        context["board"] = model.read_text().strip("\x00\n ")
    return context
