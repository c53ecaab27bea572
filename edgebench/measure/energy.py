"""Energy meters behind one interface; every reading names its source.

``source`` is explicit: ``measured:rapl``, ``measured:nvml``, ``measured:jetson-ina``,
``measured:external-csv`` or ``estimated:<model>``. Where no meter works the
energy is None (never 0) and ``note`` says why.
"""

from __future__ import annotations

import logging
import numbers
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from edgebench.components import Component
from edgebench.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnergyReading:
    """Energy over a timed window."""

    joules: float | None
    seconds: float
    source: str | None
    note: str | None = None


class EnergyMeter(ABC):
    """Start/stop energy counter around a timed window."""

    #: what stands behind a reading: ``measured:<counter>`` or ``estimated:<model>``; a reading with any other
    #: source is not kept (an unlabelled figure would be shown as measured)
    source: str = ""
    #: shortest window this meter resolves; the worker repeats inferences to exceed it
    min_window_s: float = 0.0
    #: whether a reading counts this process alone (a per-process estimate), not a package, board or wall socket:
    #: only such a meter may read two side-by-side lanes' overlapping windows
    per_process: ClassVar[bool] = False
    #: packages and tools the meter reads through, for ``edgebench doctor``
    needs: ClassVar[tuple[Component, ...]] = ()

    @abstractmethod
    def start(self) -> None:
        """Begin a window."""

    @abstractmethod
    def stop(self) -> EnergyReading:
        """End the window and return the energy used during it."""


METERS: Registry[type[EnergyMeter]] = Registry(
    "energy meter",
    modules=(
        "edgebench.measure.energy_rapl",
        "edgebench.measure.energy_nvml",
        "edgebench.measure.energy_jetson",
        "edgebench.measure.energy_csv",
        "edgebench.measure.energy_estimated",
    ),
    group="edgebench.energy_meters",
    base=EnergyMeter,
)


class MeterUnavailable(RuntimeError):
    """The requested meter cannot read here; the message says why and how to fix it."""


class UnavailableMeter(EnergyMeter):
    """Stands in for a meter that cannot read here: energy is None and the note says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=None, seconds=time.perf_counter() - self._t0, source=None, note=self.reason)


def create_meter(spec: dict[str, Any] | None) -> EnergyMeter | None:
    """Build the meter described by ``spec`` (``{"type": name, ...kwargs}``, validated when its target file
    loaded); None for no meter.

    A meter that cannot read on this machine becomes an ``UnavailableMeter`` so the job
    still measures latency and accuracy, with energy None and the reason recorded.
    """
    if not spec or spec.get("type") in (None, "none"):
        return None
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        return METERS.get(spec["type"])(**kwargs)
    except MeterUnavailable as exc:
        log.info("energy meter %s unavailable: %s", spec["type"], exc)
        return UnavailableMeter(f"{spec['type']}: {exc}")


def reads_one_process(spec: dict[str, Any] | None) -> bool:
    """Whether the meter ``spec`` names (or its absence) leaves other processes' energy out of a reading."""
    if not spec or spec.get("type") in (None, "none"):
        return True
    return METERS.get(spec["type"]).per_process


def measure_idle_power(meter: EnergyMeter, seconds: float = 1.0) -> float | None:
    """Mean power in W with nothing running, so per-inference energy can be read against the baseline.

    Call it before the timed window; None where the meter gives no energy.
    """
    meter.start()
    time.sleep(max(seconds, meter.min_window_s))
    reading = stopped(meter)
    if reading.joules is None or reading.seconds <= 0:
        return None
    return reading.joules / reading.seconds


def stopped(meter: EnergyMeter) -> EnergyReading:
    """``meter.stop()``'s reading; TypeError saying what a meter must return where a plug-in's returns something
    else (a float of joules, a string with its unit: Python's own error named neither the meter nor the fix)."""
    reading = meter.stop()
    if not isinstance(reading, EnergyReading):
        raise TypeError(f"{type(meter).__name__}.stop() returned {type(reading).__name__}; a meter's stop() returns "
                        "EnergyReading(joules=float or None, seconds=float, source='measured:<counter>' or "
                        "'estimated:<model>')")
    wrong = [f"{field}={value!r}" for field, value in (("joules", reading.joules), ("seconds", reading.seconds))
             if not (isinstance(value, numbers.Real) and not isinstance(value, bool))
             and not (field == "joules" and value is None)]
    if wrong:
        raise TypeError(f"{type(meter).__name__}.stop() returned EnergyReading({', '.join(wrong)}): joules is a number "
                        "of joules (or None: no energy), seconds the window's length in seconds")
    return reading
