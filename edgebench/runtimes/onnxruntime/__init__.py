"""ONNX: the torch.onnx exporter with ONNX Runtime's int8 quantizer, and ONNX Runtime's CPU and CUDA providers."""

from edgebench.components import Package
from edgebench.runtimes.base import Runtime

ONNXRUNTIME = Package("onnxruntime", "onnxruntime", "ONNX Runtime CPU backend, int8 quantization")
ONNXRUNTIME_GPU = Package("onnxruntime-gpu", None, "ONNX Runtime CUDA backend (replaces onnxruntime)",
                          install="pip install onnxruntime-gpu (instead of onnxruntime)")

RUNTIME = Runtime(
    name="onnxruntime",
    summary="ONNX export (fp32, fp16, int8 static QDQ, int8 dynamic) and ONNX Runtime (CPU, CUDA execution providers)",
    needs=(ONNXRUNTIME, ONNXRUNTIME_GPU),
    backend_modules=("backend", "cuda"),
)
