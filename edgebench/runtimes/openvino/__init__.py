"""OpenVINO (extra ``openvino``): Intel's CPU runtime reading edgebench's ONNX artifacts.

The fp32 ONNX runs as fp32 (the inference precision is pinned, so a CPU with bf16
support does not silently downcast), and the QDQ int8 ONNX runs as int8: OpenVINO
turns its QuantizeLinear/DequantizeLinear pairs into FakeQuantize and executes the
quantized convolutions with integer kernels. It also measures OpenVINO IR (.xml + .bin) files other tools wrote
(NNCF), as given; edgebench writes none (``ir.py`` is that format's cache layout).
"""

from edgebench.components import Package
from edgebench.runtimes.base import Runtime

OPENVINO = Package("openvino", "openvino", "OpenVINO CPU backend (ONNX fp32 and QDQ int8)", extra="openvino")

RUNTIME = Runtime(
    name="openvino",
    summary="OpenVINO's CPU plugin on the ONNX artifacts (fp32, QDQ int8); threads and streams from the target",
    needs=(OPENVINO,),
    exporter_modules=("ir",),
)
