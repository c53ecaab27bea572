"""PyTorch eager: the pickled-module artifact and the CPU and CUDA backends."""

from edgebench.components import Package, Tool
from edgebench.runtimes.base import Runtime

TORCH = Package("torch", "torch", "training, pruning, PyTorch backends")
NVIDIA_DRIVER = Tool("nvidia-smi", "NVIDIA driver present", "install the NVIDIA driver")

RUNTIME = Runtime(
    name="torch",
    summary="PyTorch eager on the CPU (torch) and on CUDA (torch_cuda, fp32/fp16)",
    needs=(TORCH, NVIDIA_DRIVER),
    backend_modules=("backend", "cuda"),
)
