"""Energy meters on files written in the real formats (powercap sysfs, meter CSV logs)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from edgebench.measure.energy import MeterUnavailable, UnavailableMeter, create_meter, measure_idle_power
from edgebench.measure.energy_csv import ExternalCsvMeter
from edgebench.measure.energy_rapl import RaplMeter, RaplZone, counter_delta_uj, find_zones
from edgebench.measure.energy_sampling import SamplingMeter, integrate_power

MAX_RANGE_UJ = 262143328850  # a real package zone's max_energy_range_uj


def write_zone(root: Path, dirname: str, name: str, energy_uj: int) -> Path:
    zone = root / dirname
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(f"{name}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
    (zone / "enabled").write_text("1\n")
    return zone


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    write_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    write_zone(root, "intel-rapl:0:0", "core", 500_000)
    write_zone(root, "intel-rapl:0:1", "dram", 200_000)
    write_zone(root, "intel-rapl:1", "package-1", 3_000_000)
    (root / "intel-rapl").mkdir()  # the control-type directory has no zone files
    return root


def test_find_zones_defaults_to_packages(powercap: Path) -> None:
    assert [z.name for z in find_zones(powercap)] == ["package-0", "package-1"]
    assert [z.name for z in find_zones(powercap, ["dram"])] == ["dram"]


def test_rapl_meter_sums_packages(powercap: Path) -> None:
    meter = RaplMeter(root=powercap)
    meter.start()
    (powercap / "intel-rapl:0" / "energy_uj").write_text("3500000\n")  # +2.5 J
    (powercap / "intel-rapl:1" / "energy_uj").write_text("4000000\n")  # +1.0 J
    reading = meter.stop()
    assert reading.source == "measured:rapl"
    assert reading.joules == pytest.approx(3.5)
    assert "package-0+package-1" in (reading.note or "")


def test_rapl_meter_handles_wraparound(powercap: Path) -> None:
    (powercap / "intel-rapl:0" / "energy_uj").write_text(f"{MAX_RANGE_UJ - 1_000_000}\n")
    meter = RaplMeter(root=powercap, zones=["package-0"])
    meter.start()
    (powercap / "intel-rapl:0" / "energy_uj").write_text("2000000\n")  # wrapped: 1 J before + 2 J after
    reading = meter.stop()
    assert reading.joules == pytest.approx(3.0)
    assert counter_delta_uj(10, 25, MAX_RANGE_UJ) == 15


def test_rapl_permission_error_explains_fix(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # root reads any file, so the kernel's root-only energy_uj (Linux >= 5.10) is simulated at the read
    def denied(self: RaplZone) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(RaplZone, "read_uj", denied)
    meter = create_meter({"type": "rapl", "root": str(powercap)})
    assert isinstance(meter, UnavailableMeter)
    assert "chmod o+r" in meter.reason and "5.10" in meter.reason
    meter.start()
    reading = meter.stop()
    assert reading.joules is None and reading.source is None and "permission denied" in (reading.note or "")


def test_missing_meter_gives_null_energy_with_reason(tmp_path: Path) -> None:
    meter = create_meter({"type": "rapl", "root": str(tmp_path / "absent")})
    assert isinstance(meter, UnavailableMeter)
    meter.start()
    reading = meter.stop()
    assert reading.joules is None and "does not exist" in (reading.note or "")
    assert create_meter(None) is None and create_meter({"type": "none"}) is None


def test_integrate_power_interpolates_edges() -> None:
    # 10 W constant for 2 s -> 20 J; a ramp 0..10 W over 1 s -> 5 J
    assert integrate_power([0.0, 1.0, 2.0, 3.0], [10, 10, 10, 10], 0.5, 2.5) == pytest.approx(20.0)
    assert integrate_power([0.0, 1.0], [0.0, 10.0], 0.0, 1.0) == pytest.approx(5.0)
    assert integrate_power([0.0, 1.0], [0.0, 10.0], 0.5, 1.0) == pytest.approx(3.75)
    assert integrate_power([1.0, 2.0], [5, 5], 0.5, 1.5) is None  # window starts before the first sample


class _WallClock:
    """A virtual ``time.time``/``time.sleep`` for a meter: the window is exactly as long as the test says (on a loaded
    machine the real one also held the delay before ``start`` and the oversleep, a watt or more of error)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_external_csv_meter_merges_by_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgebench.measure import energy_csv

    now = 1_700_000_000.0
    clock = _WallClock(now)
    monkeypatch.setattr(energy_csv, "time", clock)
    log = tmp_path / "meter.csv"
    offset = 100.0  # the meter's clock runs 100 s ahead of this machine's
    step = now + 0.175  # power steps from 5 W to 8 W inside the window, midway between two samples
    rows = ["timestamp,voltage_v,current_a,power_w"]
    for i in range(-40, 120):
        t = now + i * 0.05
        watts = 5.0 if t < step else 8.0
        rows.append(f"{t + offset:.3f},5.0,{watts / 5.0:.4f},{watts}")
    log.write_text("\n".join(rows) + "\n")

    meter = ExternalCsvMeter(str(log), time_offset_s=offset, wait_s=0.0)
    meter.start()
    clock.sleep(0.4)
    reading = meter.stop()
    assert reading.source == "measured:external-csv" and reading.seconds == pytest.approx(0.4)
    # 5 W for 0.175 s and 8 W for 0.225 s: the trapezoid between the samples at 0.15 and 0.2 s halves the step's
    # 50 ms as the step does, so the log integrates to the step's energy exactly
    assert reading.joules == pytest.approx(5.0 * 0.175 + 8.0 * 0.225, abs=1e-3)

    vi = create_meter({"type": "external_csv", "path": str(log), "power_column": "unused",
                       "voltage_column": "voltage_v", "current_column": "current_a",
                       "time_offset_s": offset, "wait_s": 0.0})
    vi.start()
    clock.sleep(0.3)
    assert vi.stop().joules == pytest.approx(8.0 * 0.3, abs=1e-3)  # 5 V x 1.6 A from 0.4 s on


def test_external_csv_without_coverage_is_null(tmp_path: Path) -> None:
    log = tmp_path / "old.csv"
    log.write_text("timestamp,power_w\n2020-01-01T00:00:00,3.0\n2020-01-01T00:00:01,3.0\n")
    meter = ExternalCsvMeter(str(log), wait_s=0.0)
    meter.start()
    reading = meter.stop()
    assert reading.joules is None and reading.source is None and "time_offset_s" in (reading.note or "")
    bad = create_meter({"type": "external_csv", "path": str(log), "power_column": "watts"})
    assert isinstance(bad, UnavailableMeter) and "watts" in bad.reason


def test_sampling_meter_and_idle_power() -> None:
    class ConstantMeter(SamplingMeter):
        source = "measured:test-constant"

    meter = ConstantMeter(lambda: 4.0, period_s=0.01)
    reading_idle = measure_idle_power(meter, seconds=0.3)
    assert reading_idle == pytest.approx(4.0, rel=1e-6)
    meter.start()
    time.sleep(0.25)
    reading = meter.stop()
    assert reading.source == "measured:test-constant"
    assert reading.joules == pytest.approx(4.0 * reading.seconds, rel=1e-6)


def test_estimate_only_when_asked_and_labelled() -> None:
    meter = create_meter({"type": "estimated", "tdp_w": 15.0, "idle_w": 3.0, "cores": 1})
    meter.start()
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:  # busy: utilisation near 1 on one core
        pass
    reading = meter.stop()
    assert reading.source == "estimated:tdp-x-cpu-util"
    assert 3.0 * reading.seconds < reading.joules <= 15.0 * reading.seconds + 1e-9
    assert "TDP 15 W" in (reading.note or "")


def test_nvml_meter_unavailable_without_gpu() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py (extra 'cuda') not installed")
    meter = create_meter({"type": "nvml"})
    if not isinstance(meter, UnavailableMeter):
        pytest.skip("an NVIDIA GPU is present: covered by tests/test_cuda.py")
    assert "NVML" in meter.reason


@pytest.mark.parametrize(
    ("index", "visible", "expected"),
    [
        (0, None, 0),
        (1, "", 1),
        (0, "1", 1),  # cuda:0 is the machine's GPU 1
        (1, "3, 2", 2),
        (0, "GPU-8f6b1c2e-0000-1111-2222-333344445555", "GPU-8f6b1c2e-0000-1111-2222-333344445555"),
    ],
)
def test_nvml_reads_the_gpu_cuda_names(index: int, visible: str | None, expected: int | str) -> None:
    from edgebench.measure.energy_nvml import visible_gpu

    assert visible_gpu(index, visible) == expected


@pytest.mark.parametrize(("index", "visible", "needle"), [(1, "0", "shows 1 GPU(s)"),
                                                          (0, "MIG-1a2b", "no energy counter per instance")])
def test_nvml_refuses_a_gpu_it_cannot_read(index: int, visible: str, needle: str) -> None:
    from edgebench.measure.energy_nvml import visible_gpu

    with pytest.raises(MeterUnavailable, match=re.escape(needle)):
        visible_gpu(index, visible)


class _Nvml:
    """NVML's device-listing calls over a fixed list of GPU names (the check's only inputs)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def nvmlDeviceGetCount(self) -> int:
        return len(self.names)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self.names[handle]


@pytest.mark.parametrize(("names", "environ", "refused"), [
    (["NVIDIA H100 80GB HBM3"] * 8, {}, False),  # one model: both orders are the PCI bus's
    (["NVIDIA A100-SXM4-40GB", "NVIDIA T4"], {}, True),  # CUDA's fastest-first order need not be NVML's
    (["NVIDIA A100-SXM4-40GB", "NVIDIA T4"], {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, False),
])
def test_nvml_index_only_where_cuda_numbers_gpus_as_nvml(names: list[str], environ: dict[str, str],
                                                         refused: bool) -> None:
    from edgebench.measure.energy_nvml import _order_unknown

    reason = _order_unknown(_Nvml(names), environ)
    assert (reason is not None) == refused
    if refused:
        assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in reason and "NVIDIA T4" in reason


def test_a_meter_without_a_window_over_a_zero_second_timing_reads_min_iters_inferences(tmp_path: Path) -> None:
    """A plug-in meter that sets no min_window_s, with measurement.min_time_s 0: the energy window held no inference,
    and the job failed on ZeroDivisionError, its latency and accuracy lost. By hand: a meter reading 2 W over the
    window gives 2 W x seconds / inferences, with inferences = min_iters (5) at least."""
    import time

    from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading
    from edgebench.measure.reference_workload import reference_job
    from edgebench.measure.worker import execute

    @METERS.register("test_two_watts_no_window")
    class TwoWatts(EnergyMeter):
        source = "measured:test-two-watts"

        def start(self) -> None:
            self.t0 = time.perf_counter()

        def stop(self) -> EnergyReading:
            seconds = time.perf_counter() - self.t0
            return EnergyReading(joules=2.0 * seconds, seconds=seconds, source=self.source)

    job = reference_job(tmp_path)
    job = job.model_copy(update={"measure": job.measure.model_copy(update={"min_time_s": 0.0, "min_iters": 5}),
                                 "energy": {"type": "test_two_watts_no_window"}})
    result = execute(job)
    assert result.status == "ok" and result.latency_ms["p50"] > 0, result.error
    assert result.energy_window is not None and result.energy_window.inferences >= 5
    assert result.energy_j_per_inference == pytest.approx(
        2.0 * result.energy_window.seconds / result.energy_window.inferences, rel=1e-6)
