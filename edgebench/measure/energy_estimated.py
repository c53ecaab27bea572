"""An estimate, used only when a target asks for it: TDP x CPU utilisation of this process.

It is a model, not a measurement, so its source is ``estimated:tdp-x-cpu-util``
and reports must never show it as measured.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

from pydantic import Field

from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading, MeterUnavailable


@METERS.register("estimated")
class TdpUtilisationEstimate(EnergyMeter):
    """energy = (idle_w + (tdp_w - idle_w) x utilisation) x seconds, utilisation = CPU time / (wall x cores)."""

    source = "estimated:tdp-x-cpu-util"
    min_window_s = 0.5
    per_process = True  # this process's CPU time

    def __init__(self, tdp_w: Annotated[float, Field(gt=0)], idle_w: Annotated[float, Field(ge=0)] = 0.0,
                 cores: Annotated[int, Field(ge=1)] | None = None) -> None:  # bounds checked when the file loads
        if tdp_w <= 0 or not 0 <= idle_w <= tdp_w:
            raise MeterUnavailable(f"estimated meter needs tdp_w > 0 and 0 <= idle_w <= tdp_w (got {tdp_w}, {idle_w})")
        self.tdp_w, self.idle_w = tdp_w, idle_w
        self.cores = cores or os.cpu_count() or 1
        self._wall0 = self._cpu0 = 0.0

    def start(self) -> None:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> EnergyReading:
        seconds = time.perf_counter() - self._wall0
        utilisation = min(1.0, (time.process_time() - self._cpu0) / max(seconds * self.cores, 1e-9))
        joules = (self.idle_w + (self.tdp_w - self.idle_w) * utilisation) * seconds
        note = (f"model: TDP {self.tdp_w:g} W, idle {self.idle_w:g} W, "
                f"CPU utilisation {utilisation:.2f} of {self.cores} cores")
        return EnergyReading(joules=joules, seconds=seconds, source=self.source, note=note)
