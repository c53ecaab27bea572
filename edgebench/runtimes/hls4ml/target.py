"""The ``fpga:`` block of a target file, which the hls4ml runtime declares: what its exporter needs to know about
the FPGA, and the synthesis tool a target that synthesises needs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from edgebench.components import Component, Tool
from edgebench.quantization.ap_types import ap_type_problem  # as the experiment's fixed_point
from edgebench.runtimes.base import TargetBlock


class FPGASpec(TargetBlock):
    """hls4ml settings of an FPGA target: part, clock, I/O style and whether to synthesise."""

    required_by: ClassVar[tuple[str, ...]] = ("hls4ml",)

    part: str = Field(description="FPGA part, e.g. xczu9eg-ffvb1156-2-e")
    board: str | None = Field(None, description="board name, informational (e.g. zcu102)")
    hls_backend: Literal["Vitis", "Vivado"] = Field("Vitis", description="hls4ml backend / HLS tool family")
    clock_period_ns: float = Field(5.0, gt=0)
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    strategy: Literal["Latency", "Resource"] = "Latency"
    default_precision: str = Field("ap_fixed<16,6>", description="used when a variant gives no fixed_point")
    synthesize: bool = Field(False, description="run C synthesis (needs vitis-run / vivado_hls on PATH)")

    @field_validator("default_precision")
    @classmethod
    def _ap_type(cls, value: str) -> str:
        if problem := ap_type_problem(value):
            raise ValueError(problem)
        return value

    @property
    def hls_tool(self) -> str:
        """Executable hls4ml runs to synthesise for ``hls_backend``: its Vitis backend runs ``vitis-run --mode hls``
        (a Vitis release with ``vitis_hls`` only cannot synthesise through hls4ml 1.x)."""
        return "vitis-run" if self.hls_backend == "Vitis" else "vivado_hls"

    def needs(self) -> list[Component]:
        """Synthesis (``synthesize: true``) is a build step on this machine: it needs the HLS tool."""
        if not self.synthesize:
            return []
        return [Tool(self.hls_tool, f"synthesis for {self.part}",
                     f"install {self.hls_backend} HLS and source its settings64.sh (or use local-hls4ml-csim)")]
