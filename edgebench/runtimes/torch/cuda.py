"""PyTorch eager on an NVIDIA GPU (fp32, or fp16 weights and activations).

``run`` copies the batch to the GPU and the logits back, so every call ends
synchronised; ``sync`` also waits for the device so the harness's clock brackets
the GPU work whatever a future ``run`` leaves queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.torch import NVIDIA_DRIVER, TORCH
from edgebench.runtimes.torch.backend import load_torch_module


def cuda_unavailable_reason() -> str | None:
    """Why torch cannot use a CUDA GPU here, or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (install a CUDA build of torch on the GPU machine)"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (driver missing, or CUDA_VISIBLE_DEVICES hides it)"
    return None


def torch_device(settings: BackendSettings) -> Any:
    """The torch device of ``settings.device`` ("cuda", "cuda:1"; "cpu" targets mean GPU 0 here)."""
    import torch

    return torch.device(settings.device if settings.device.startswith("cuda") else "cuda:0")


class TorchCudaSession(Session):
    """The module on the GPU under ``inference_mode``; numpy in, float32 numpy out."""

    def __init__(self, module: Any, device: Any, dtype: Any) -> None:
        import torch

        self._torch, self._module, self._device, self._dtype = torch, module, device, dtype

    def run(self, inputs: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(inputs).to(self._device, self._dtype)
            return self._module(x).float().cpu().numpy()

    def sync(self) -> None:
        self._torch.cuda.synchronize(self._device)

    def close(self) -> None:
        del self._module
        self._torch.cuda.empty_cache()


@BACKENDS.register("torch_cuda")
class TorchCudaBackend(Backend):
    """Eager PyTorch on CUDA; precision fp16 casts the module with ``.half()``."""

    name = "torch_cuda"
    formats = ("torch",)
    needs = (TORCH, NVIDIA_DRIVER)

    def available(self) -> str | None:
        return cuda_unavailable_reason()

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        import torch

        device = torch_device(settings)
        module = load_torch_module(artifact)
        if settings.precision == "fp16":
            module = module.half()
        module = module.to(device)
        dtype = next(module.parameters()).dtype
        torch.backends.cudnn.benchmark = True  # pick conv kernels once, during warm-up
        return TorchCudaSession(module, device, dtype)
