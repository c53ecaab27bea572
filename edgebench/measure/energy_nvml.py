"""NVIDIA GPU energy through NVML (nvidia-ml-py, extra ``cuda``).

Volta and newer expose a total-energy counter in millijoules
(``nvmlDeviceGetTotalEnergyConsumption``), which is exact over any window the
counter resolves. Older GPUs only report instantaneous board power
(``nvmlDeviceGetPowerUsage``, mW), which is sampled and integrated instead and
labelled ``measured:nvml-power`` so the two are never confused.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from edgebench.components import Package
from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading, MeterUnavailable
from edgebench.measure.energy_sampling import SamplingMeter

log = logging.getLogger(__name__)

NVML = Package("nvidia-ml-py", "pynvml", "GPU energy (NVML)", extra="cuda")


def visible_gpu(device_index: int, visible: str | None) -> int | str:
    """NVML's name for CUDA's GPU ``device_index``: its NVML index, or its UUID.

    NVML numbers every GPU of the machine and ignores ``CUDA_VISIBLE_DEVICES`` (``visible``), which CUDA and torch
    number their devices by: with ``CUDA_VISIBLE_DEVICES=1``, ``cuda:0`` is NVML's GPU 1.
    """
    if visible is None or not visible.strip():
        return device_index
    entries = [entry.strip() for entry in visible.split(",")]
    if device_index >= len(entries):
        raise MeterUnavailable(f"CUDA_VISIBLE_DEVICES={visible} shows {len(entries)} GPU(s); there is no GPU "
                               f"{device_index} to read energy from (energy.device_index)")
    entry = entries[device_index]
    if entry.isdigit():
        return int(entry)
    if entry.startswith("MIG-"):
        raise MeterUnavailable(f"GPU {device_index} is a MIG instance ({entry}): NVML has no energy counter per "
                               "instance, only for the whole GPU")
    return entry  # a GPU UUID


def _order_unknown(pynvml: Any, environ: Mapping[str, str]) -> str | None:
    """Why CUDA's GPU number may not be NVML's: CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID,
    NVML by PCI bus; on a machine with GPUs of different models the two orders can differ."""
    if environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
        return None
    names = {pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(pynvml.nvmlDeviceGetCount())}
    if len(names) < 2:
        return None
    return (f"this machine has GPUs of different models ({', '.join(sorted(map(str, names)))}): CUDA numbers them fastest "
            "first, NVML by PCI bus, so the energy could be read off another GPU; set CUDA_DEVICE_ORDER=PCI_BUS_ID "
            "(or CUDA_VISIBLE_DEVICES) for the run")


def nvml_handle(device_index: int) -> tuple[Any, Any]:
    """Initialise NVML and return ``(pynvml module, handle of CUDA's GPU device_index)``, or raise MeterUnavailable
    saying why."""
    try:
        import pynvml
    except ImportError:
        raise MeterUnavailable(f"nvidia-ml-py is not installed: {NVML.install_hint}") from None
    gpu = visible_gpu(device_index, os.environ.get("CUDA_VISIBLE_DEVICES"))
    try:
        pynvml.nvmlInit()
        if isinstance(gpu, int):
            if reason := _order_unknown(pynvml, os.environ):
                raise MeterUnavailable(reason)
            return pynvml, pynvml.nvmlDeviceGetHandleByIndex(gpu)
        return pynvml, pynvml.nvmlDeviceGetHandleByUUID(gpu)
    except pynvml.NVMLError as exc:
        raise MeterUnavailable(f"NVML cannot open GPU {gpu}: {exc} (no NVIDIA driver or GPU here)") from None


class _NvmlPowerSampler(SamplingMeter):
    source = "measured:nvml-power"

    def __init__(self, pynvml: Any, handle: Any, period_s: float) -> None:
        super().__init__(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, period_s)


@METERS.register("nvml")
class NvmlMeter(EnergyMeter):
    """GPU board energy: the total-energy counter where supported, else sampled power."""

    source = "measured:nvml"
    needs = (NVML,)
    min_window_s = 0.2  # the energy counter advances in ~10-100 ms steps depending on the board

    def __init__(self, device_index: Annotated[int, Field(ge=0)] = 0,
                 sample_period_s: Annotated[float, Field(gt=0)] = 0.02) -> None:
        pynvml, handle = nvml_handle(device_index)
        self._nvml, self._handle = pynvml, handle
        self._sampler: _NvmlPowerSampler | None = None
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except pynvml.NVMLError as exc:
            log.info("GPU %d has no energy counter (%s); sampling power every %g s", device_index, exc,
                     sample_period_s)
            self._sampler = _NvmlPowerSampler(pynvml, handle, sample_period_s)
            self.source = self._sampler.source
            self.min_window_s = self._sampler.min_window_s
        self._e0_mj = 0
        self._t0 = 0.0

    def start(self) -> None:
        if self._sampler is not None:
            self._sampler.start()
            return
        self._t0 = time.perf_counter()
        self._e0_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def stop(self) -> EnergyReading:
        if self._sampler is not None:
            return self._sampler.stop()
        e1_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        seconds = time.perf_counter() - self._t0
        return EnergyReading(joules=(e1_mj - self._e0_mj) / 1000.0, seconds=seconds, source=self.source,
                             note="whole-board energy counter")
