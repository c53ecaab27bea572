"""ONNX Runtime with the CUDA execution provider (package ``onnxruntime-gpu``).

ORT silently falls back to the CPU when the CUDA provider cannot load (missing
CUDA/cuDNN libraries), so the session's providers are checked after creation, and
its fallback during a run (``InferenceSession.run`` moves a session whose provider
failed to the CPU for good) is turned off: a CPU figure must never be stored as a
GPU one. The CUDA libraries of pip's ``nvidia-*`` wheels are loaded first
(``onnxruntime.preload_dlls``): the provider's library has no search path to them,
and a worker measuring ONNX does not import torch, which would load them.
"""

from __future__ import annotations

from pathlib import Path

from edgebench.errors import ArtifactError
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.onnxruntime import ONNXRUNTIME_GPU
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeSession
from edgebench.runtimes.onnxruntime.session import CPU_PROVIDER, GraphOptions, create_ort_session, session_crash_hint
from edgebench.runtimes.torch import NVIDIA_DRIVER

CUDA_PROVIDER = "CUDAExecutionProvider"


def _device_id(device: str) -> int:
    return int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0


@BACKENDS.register("onnxruntime_cuda")
class OnnxRuntimeCudaBackend(Backend):
    """CUDAExecutionProvider on ``settings.device`` (``cuda:N``); outputs are copied back each run."""

    Options = GraphOptions
    name = "onnxruntime_cuda"
    formats = ("onnx",)
    needs = (ONNXRUNTIME_GPU, NVIDIA_DRIVER)

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed"
        if CUDA_PROVIDER not in ort.get_available_providers():
            return "this onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu instead of onnxruntime)"
        return None

    def crash_hint(self, error: str) -> str | None:
        return session_crash_hint(self.name, error)

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21
            ort.preload_dlls()
        providers = [(CUDA_PROVIDER, {"device_id": _device_id(settings.device)}), CPU_PROVIDER]
        passes = GraphOptions(**settings.options)
        session = create_ort_session(artifact, settings.threads, providers, passes)  # type: ignore[arg-type]
        if session.get_providers()[0] != CUDA_PROVIDER:
            raise ArtifactError(
                f"ONNX Runtime could not start the CUDA provider for {artifact} (got {session.get_providers()}); "
                "check that CUDA and cuDNN libraries matching onnxruntime-gpu are installed (pip's nvidia-*-cu* "
                "wheels, or the system's on LD_LIBRARY_PATH)"
            )
        session.disable_fallback()  # a provider failure mid-window fails the job instead of timing the CPU
        return OnnxRuntimeSession(session, artifact, settings.threads, settings.precision, passes)
