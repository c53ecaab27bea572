"""The Backend interface every runtime plugs into.

A backend only loads an artifact and runs it: the measurement harness does all
timing, so every runtime is timed the same way. Heavy runtime imports happen
inside ``available()`` / ``load()`` so importing edgebench stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.registry import Registry


@dataclass(frozen=True)
class BackendSettings:
    """Runtime knobs a target passes to a backend."""

    threads: int = 1
    batch_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)


class Session(ABC):
    """A loaded artifact ready to run."""

    @abstractmethod
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Run one batch (NCHW float32) and return the logits as a float32 array."""

    def sync(self) -> None:
        """Wait for queued device work; a no-op for synchronous CPU runtimes."""

    def details(self) -> dict[str, Any]:
        """Target-specific facts about the loaded artifact (FPGA synthesis figures, engine build time)."""
        return {}

    def close(self) -> None:
        """Release runtime resources."""


class Backend(ABC):
    """A runtime that can load artifacts of some formats."""

    name: str = ""
    formats: tuple[str, ...] = ()
    extra: str | None = None  # the pip extra that installs this backend's runtime
    #: precisions the runtime derives itself from an fp32 artifact (TensorRT builds fp16 engines from fp32 ONNX)
    builds_from_fp32: tuple[str, ...] = ()

    @abstractmethod
    def available(self) -> str | None:
        """None when usable here, else the reason it is not (e.g. a missing extra)."""

    @abstractmethod
    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        """Load ``artifact`` into a ready session; load/compile time is not timed by the harness."""


BACKENDS: Registry[type[Backend]] = Registry(
    "backend",
    modules=(
        "edgebench.backends.torch_backend",
        "edgebench.backends.onnxruntime_backend",
        "edgebench.backends.litert_backend",
        "edgebench.backends.hls4ml_backend",
        "edgebench.backends.torch_cuda_backend",
        "edgebench.backends.onnxruntime_cuda_backend",
        "edgebench.backends.tensorrt_backend",
    ),
)


def get_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name``."""
    return BACKENDS.get(name)()


def list_backends() -> list[str]:
    """Names of all registered backends."""
    return BACKENDS.names()


class MissingExtraError(RuntimeError):
    """A backend's optional dependency is not installed."""

    def __init__(self, backend: str, extra: str, package: str) -> None:
        super().__init__(
            f"backend '{backend}' needs {package}: install it with  pip install -c constraints.txt -e '.[{extra}]'"
        )
