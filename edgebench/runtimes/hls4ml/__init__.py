"""hls4ml: fixed-point FPGA firmware projects, their g++ C simulation and the HLS synthesis reports."""

from edgebench.components import Package, Tool
from edgebench.runtimes.base import Runtime
from edgebench.runtimes.hls4ml.target import FPGASpec

HLS4ML = Package("hls4ml", "hls4ml", "FPGA conversion and C simulation", extra="fpga")
GXX = Tool("g++", "hls4ml C simulation", "apt-get install g++")
VITIS_RUN = Tool("vitis-run", "hls4ml synthesis reports (Vitis backend)",
                 "install a Vitis release with vitis-run (hls4ml runs it), source settings64.sh")
VIVADO_HLS = Tool("vivado_hls", "hls4ml synthesis reports (Vivado backend)", "install Vivado HLS, source settings64.sh")

RUNTIME = Runtime(
    name="hls4ml",
    summary="hls4ml projects (ap_fixed, reuse factor), g++ C simulation, Vitis/Vivado HLS synthesis reports",
    needs=(HLS4ML, GXX, VITIS_RUN, VIVADO_HLS),
    target_blocks={"fpga": FPGASpec},
)
