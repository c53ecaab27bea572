"""The ``fpga:`` block of a target file: what the hls4ml exporter needs to know about the FPGA."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FPGASpec(BaseModel):
    """hls4ml settings of an FPGA target: part, clock, I/O style and whether to synthesise."""

    model_config = ConfigDict(extra="forbid")

    part: str = Field(description="FPGA part, e.g. xczu9eg-ffvb1156-2-e")
    board: str | None = Field(None, description="board name, informational (e.g. zcu102)")
    hls_backend: Literal["Vitis", "Vivado"] = Field("Vitis", description="hls4ml backend / HLS tool family")
    clock_period_ns: float = Field(5.0, gt=0)
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    strategy: Literal["Latency", "Resource"] = "Latency"
    default_precision: str = Field("ap_fixed<16,6>", description="used when a variant gives no fixed_point")
    synthesize: bool = Field(False, description="run C synthesis (needs vitis_hls / vivado_hls on PATH)")

    @field_validator("default_precision")
    @classmethod
    def _ap_type(cls, value: str) -> str:
        if not value.startswith(("ap_fixed<", "ap_ufixed<", "ap_int<", "ap_uint<", "fixed<", "ufixed<")):
            raise ValueError("must be an HLS type such as ap_fixed<16,6>")
        return value

    @property
    def hls_tool(self) -> str:
        """Executable that synthesises for ``hls_backend``."""
        return "vitis_hls" if self.hls_backend == "Vitis" else "vivado_hls"
