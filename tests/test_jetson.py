"""Jetson parsers on real-format tegrastats, nvpmodel and jetson_clocks output, and the INA3221 sysfs."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from edgebench.measure.energy import UnavailableMeter, create_meter
from edgebench.measure.energy_jetson import JetsonInaMeter
from edgebench.measure.jetson import (
    parse_jetson_clocks,
    parse_nvpmodel,
    parse_tegrastats_line,
    read_ina_rails_mw,
)

NANO = (
    "RAM 2038/3964MB (lfb 4x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [12%@1479,3%@1479,5%@1479,2%@1479] EMC_FREQ 3%@1600 GR3D_FREQ 0%@921 APE 25 PLL@34C CPU@36.5C "
    "PMIC@100C GPU@35.5C AO@42C thermal@35.75C POM_5V_IN 2328/2328 POM_5V_GPU 0/0 POM_5V_CPU 411/411"
)
TX2 = (
    "RAM 2316/7846MB (lfb 1027x4MB) SWAP 0/3923MB (cached 0MB) CPU [1%@345,off,off,0%@345,0%@345,0%@345] "
    "EMC_FREQ 0%@1866 GR3D_FREQ 0%@114 APE 150 PLL@38.5C MCPU@38.5C PMIC@100C Tboard@34C GPU@36C "
    "BCPU@38.5C thermal@37.1C Tdiode@35.25C VDD_SYS_GPU 152/152 VDD_SYS_SOC 381/381 VDD_4V0_WIFI 0/0 "
    "VDD_IN 2210/2210 VDD_SYS_CPU 152/152 VDD_SYS_DDR 229/229"
)
XAVIER_NX = (
    "RAM 1933/7771MB (lfb 1140x4MB) SWAP 0/3885MB (cached 0MB) CPU [2%@1190,1%@1190,1%@1190,0%@1190,off,off] "
    "EMC_FREQ 0% GR3D_FREQ 0% AO@34C GPU@34.5C PMIC@100C AUX@33.5C CPU@35C thermal@34.35C "
    "VDD_IN 3630/3630 VDD_CPU_GPU_CV 483/483 VDD_SOC 1208/1208"
)
AGX_XAVIER = (
    "RAM 1500/15692MB (lfb 3062x4MB) SWAP 0/7846MB (cached 0MB) "
    "CPU [1%@1190,0%@1190,0%@1190,0%@1190,off,off,off,off] EMC_FREQ 0%@1331 GR3D_FREQ 0%@318 APE 150 "
    "MTS fg 0% bg 0% AO@38C GPU@38.5C Tdiode@39.75C PMIC@100C AUX@37.5C CPU@39C thermal@38.7C Tboard@36C "
    "GPU 0/0 CPU 155/155 SOC 1088/1088 CV 0/0 VDDRQ 155/155 SYS5V 1572/1572"
)
ORIN_NANO = (
    "09-23-2024 14:02:11 RAM 2206/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] NVDEC off NVJPG off "
    "NVJPG1 off VIC off OFA off APE 200 cpu@47.75C soc2@46.937C soc0@47.437C gpu@48.25C tj@48.25C "
    "soc1@46.843C VDD_IN 4813mW/4813mW VDD_CPU_GPU_CV 481mW/481mW VDD_SOC 1444mW/1444mW"
)
AGX_ORIN = (
    "RAM 2448/30536MB (lfb 6574x4MB) SWAP 0/15268MB (cached 0MB) CPU [0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CV0@-256C CPU@46.031C Tboard@34C "
    "SOC2@42.937C Tdiode@36C SOC0@43.156C CV1@-256C GPU@-256C tj@46.031C SOC1@42.5C CV2@-256C "
    "VDD_GPU_SOC 2389mW/2389mW VDD_CPU_CV 398mW/398mW VIN_SYS_5V0 2623mW/2623mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 302mW/302mW NC 0mW/0mW"
)
#: an AGX Orin (JetPack 5/6) line from a user's log: one rail reads below zero at idle
AGX_ORIN_NEGATIVE = (
    "03-17-2024 18:54:10 RAM 10239/62841MB (lfb 442x4MB) SWAP 1/31421MB (cached 0MB) CPU [0%@1728,0%@1728] "
    "GR3D_FREQ 0% cpu@37.5C tboard@27C soc2@34.562C tdiode@27.5C tj@37.5C VDD_GPU_SOC 1592mW/1592mW "
    "VDD_CPU_CV -398mW/-398mW VIN_SYS_5V0 2624mW/2624mW VDDQ_VDD2_1V8AO 403mW/403mW"
)
WITH_MAX = "RAM 3000/7620MB (lfb 2x4MB) CPU [5%@1510] VDD_IN 5121mW/4970mW/6012mW VDD_SOC 1500mW/1490mW/1620mW"


@pytest.mark.parametrize(
    ("line", "rails", "total"),
    [
        (NANO, {"POM_5V_IN": 2328, "POM_5V_GPU": 0, "POM_5V_CPU": 411}, 2328),
        (TX2, {"VDD_IN": 2210, "VDD_SYS_GPU": 152, "VDD_SYS_DDR": 229}, 2210),
        (XAVIER_NX, {"VDD_IN": 3630, "VDD_CPU_GPU_CV": 483, "VDD_SOC": 1208}, 3630),
        (AGX_XAVIER, {"GPU": 0, "CPU": 155, "SOC": 1088, "CV": 0, "VDDRQ": 155, "SYS5V": 1572}, 2970),
        (ORIN_NANO, {"VDD_IN": 4813, "VDD_CPU_GPU_CV": 481, "VDD_SOC": 1444}, 4813),
        (AGX_ORIN, {"VDD_GPU_SOC": 2389, "VDD_CPU_CV": 398, "VIN_SYS_5V0": 2623, "VDDQ_VDD2_1V8AO": 302}, 5712),
        # 1592 - 398 + 2624 + 403: the negative rail was dropped (total 4619)
        (AGX_ORIN_NEGATIVE, {"VDD_GPU_SOC": 1592, "VDD_CPU_CV": -398, "VIN_SYS_5V0": 2624, "VDDQ_VDD2_1V8AO": 403},
         4221),
    ],
    ids=["nano", "tx2", "xavier-nx", "agx-xavier", "orin-nano", "agx-orin", "agx-orin-negative-rail"],
)
def test_tegrastats_formats(line: str, rails: dict[str, int], total: int) -> None:
    sample = parse_tegrastats_line(line)
    for name, mw in rails.items():
        assert sample.rails[name].current_mw == mw
        assert sample.rails[name].average_mw == mw
    assert not {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ", "APE"} & set(sample.rails)
    assert sample.total_mw == total


def test_tegrastats_timestamp_and_max_form() -> None:
    assert parse_tegrastats_line(ORIN_NANO).timestamp == datetime(2024, 9, 23, 14, 2, 11)
    assert parse_tegrastats_line(NANO).timestamp is None
    sample = parse_tegrastats_line(WITH_MAX)
    rail = sample.rails["VDD_IN"]
    assert (rail.current_mw, rail.average_mw, rail.max_mw) == (5121, 4970, 6012)
    assert sample.total_mw == 5121
    assert parse_tegrastats_line("RAM 100/200MB CPU [1%@100]").total_mw is None


def test_nvpmodel_and_jetson_clocks() -> None:
    assert parse_nvpmodel("NV Power Mode: MODE_15W_6CORE\n2\n") == ("MODE_15W_6CORE", 2)
    assert parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Power Mode: 15W\n0\n") == ("15W", 0)
    assert parse_nvpmodel("command not found") == (None, None)
    pinned = (
        "SOC family:tegra194  Machine:NVIDIA Jetson Xavier NX Developer Kit\n"
        "Online CPUs: 0-5\n"
        "cpu0: Online=1 Governor=schedutil MinFreq=1420800 MaxFreq=1420800 CurrentFreq=1420800 IdleStates: C1=0 c6=0\n"
        "cpu1: Online=1 Governor=schedutil MinFreq=1420800 MaxFreq=1420800 CurrentFreq=1420800 IdleStates: C1=0 c6=0\n"
        "cpu4: Online=0 Governor=schedutil MinFreq=115200 MaxFreq=1420800 CurrentFreq=115200\n"
        "GPU MinFreq=1109250000 MaxFreq=1109250000 CurrentFreq=1109250000\n"
        "EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1\n"
        "NV Power Mode: MODE_15W_6CORE\n"
    )
    assert parse_jetson_clocks(pinned) is True
    unpinned = pinned.replace("GPU MinFreq=1109250000", "GPU MinFreq=114750000")
    assert parse_jetson_clocks(unpinned) is False
    assert parse_jetson_clocks("") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_ina3221_sysfs_both_driver_generations(tmp_path: Path) -> None:
    # L4T 32 (Nano): iio device with rail names and power in mW
    iio = tmp_path / "l4t32" / "ina3221x" / "6-0040" / "iio:device0"
    for ch, (name, mw) in enumerate([("POM_5V_IN", 2328), ("POM_5V_GPU", 120), ("POM_5V_CPU", 411)]):
        _write(iio / f"rail_name_{ch}", name)
        _write(iio / f"in_power{ch}_input", str(mw))
    assert read_ina_rails_mw(tmp_path / "l4t32") == {"POM_5V_IN": 2328, "POM_5V_GPU": 120, "POM_5V_CPU": 411}

    # L4T 35/36 (Orin Nano): hwmon with labels, mV and mA
    hwmon = tmp_path / "l4t35" / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    channels = [("VDD_IN", 5000, 960), ("VDD_CPU_GPU_CV", 5000, 96), ("VDD_SOC", 5000, 288)]
    for ch, (label, mv, ma) in enumerate(channels, 1):
        _write(hwmon / f"in{ch}_label", label)
        _write(hwmon / f"in{ch}_input", str(mv))
        _write(hwmon / f"curr{ch}_input", str(ma))
    _write(hwmon / "in7_label", "sum of shunt voltages")
    rails = read_ina_rails_mw(tmp_path / "l4t35")
    assert rails == {"VDD_IN": 4800.0, "VDD_CPU_GPU_CV": 480.0, "VDD_SOC": 1440.0}

    meter = JetsonInaMeter(root=tmp_path / "l4t35", period_s=0.01)
    meter.start()
    reading = meter.stop()
    assert reading.source == "measured:jetson-ina"
    assert reading.joules == pytest.approx(4.8 * reading.seconds, rel=1e-6)


def test_jetson_meters_unavailable_off_jetson(tmp_path: Path) -> None:
    ina = create_meter({"type": "jetson_ina", "root": str(tmp_path)})
    assert isinstance(ina, UnavailableMeter) and "INA3221" in ina.reason
    teg = create_meter({"type": "tegrastats", "command": "tegrastats-not-here"})
    assert isinstance(teg, UnavailableMeter) and "not found" in teg.reason


def test_tegrastats_meter_integrates_a_running_tegrastats(tmp_path: Path) -> None:
    # a stand-in executable printing real Orin Nano lines at the requested --interval (ms)
    fake = tmp_path / "tegrastats"
    fake.write_text(
        "#!/bin/sh\n"
        'ms="$2"\n'
        "while true; do\n"
        f"  echo '{ORIN_NANO}'\n"
        '  sleep "$(awk "BEGIN {print $ms/1000}")"\n'
        "done\n"
    )
    fake.chmod(0o755)
    meter = create_meter({"type": "tegrastats", "command": str(fake), "interval_ms": 20})
    assert not isinstance(meter, UnavailableMeter)
    meter.start()
    time.sleep(0.3)
    reading = meter.stop()
    assert reading.source == "measured:tegrastats"
    assert reading.joules == pytest.approx(4.813 * reading.seconds, rel=1e-6)


def test_worker_device_context_reads_jetson_power_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With Jetson's tools on PATH (stand-ins printing their real output), every result names the power mode."""
    from edgebench.measure.machine import device_context

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clocks = (
        "SOC family:tegra194  Machine:NVIDIA Jetson Xavier NX Developer Kit\\n"
        "GPU MinFreq=1109250000 MaxFreq=1109250000 CurrentFreq=1109250000\\n"
        "EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1\\n"
    )
    for name, output in (("nvpmodel", "NV Power Mode: MODE_15W_6CORE\\n2\\n"), ("jetson_clocks", clocks)):
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    context = device_context()
    assert context["power_mode"] == "MODE_15W_6CORE (2)"
    assert context["jetson_clocks"] == "on"
