"""OpenVINO runtime (extra ``openvino``): Intel's CPU runtime reading edgebench's ONNX artifacts.

The fp32 ONNX runs as fp32 (the inference precision is pinned, so a CPU with bf16
support does not silently downcast), and the QDQ int8 ONNX runs as int8: OpenVINO
turns its QuantizeLinear/DequantizeLinear pairs into FakeQuantize and executes the
quantized convolutions with integer kernels.
"""

from edgebench.runtimes.openvino.backend import OpenVinoBackend, OpenVinoSession

__all__ = ["OpenVinoBackend", "OpenVinoSession"]
