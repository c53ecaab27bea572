"""Energy meters behind one interface; every reading names its source.

``source`` is explicit: ``measured:rapl``, ``measured:nvml``, ``measured:jetson-ina``,
``measured:external-csv`` or ``estimated:<model>``. Where no meter works the
energy is None (never 0) and ``note`` says why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from edgebench.registry import Registry


@dataclass(frozen=True)
class EnergyReading:
    """Energy over a timed window."""

    joules: float | None
    seconds: float
    source: str | None
    note: str | None = None


class EnergyMeter(ABC):
    """Start/stop energy counter around a timed window."""

    source: str = ""
    #: shortest window this meter resolves; the worker repeats inferences to exceed it
    min_window_s: float = 0.0

    @abstractmethod
    def start(self) -> None:
        """Begin a window."""

    @abstractmethod
    def stop(self) -> EnergyReading:
        """End the window and return the energy used during it."""


METERS: Registry[type[EnergyMeter]] = Registry("energy meter")


class MeterUnavailable(RuntimeError):
    """The requested meter cannot read here; the message says why and how to fix it."""


def create_meter(spec: dict[str, Any] | None) -> EnergyMeter | None:
    """Build the meter described by ``spec`` (``{"type": name, ...kwargs}``); None for no meter."""
    if not spec or spec.get("type") in (None, "none"):
        return None
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    return METERS.get(spec["type"])(**kwargs)
