"""TensorRT: engines built from the ONNX artifact (fp32, fp16, int8), locally or on a Jetson at load time."""

from edgebench.components import Package
from edgebench.runtimes.base import Runtime

TENSORRT = Package("tensorrt", "tensorrt", "TensorRT engines (NVIDIA's wheel or JetPack)",
                   install="pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu<torch's CUDA major> "
                           "(x86-64 + CUDA; PyPI holds only placeholders that fetch from there) or JetPack on Jetson")

#: the engines' optimisation profile takes batches of 1 to this (the offline scenario's batch)
MAX_BATCH = 64

RUNTIME = Runtime(
    name="tensorrt",
    summary="TensorRT engines from ONNX (fp16 from fp32 ONNX, int8 by calibration or from Q/DQ)",
    needs=(TENSORRT,),
)
