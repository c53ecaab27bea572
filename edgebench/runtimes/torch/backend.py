"""PyTorch eager CPU backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgebench.errors import REEXPORT_HINT, ArtifactError, first_line
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.torch import TORCH

if TYPE_CHECKING:
    from torch import nn


def load_torch_module(artifact: Path) -> nn.Module:
    """Load a pickled ``nn.Module`` saved by the torch exporter, with a clear error when corrupt."""
    import torch

    if not artifact.is_file():
        raise ArtifactError(f"PyTorch model not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        # the whole module is pickled (pruned layer shapes differ from the zoo's), hence weights_only=False;
        # only load artifacts edgebench itself wrote
        return torch.load(artifact, map_location="cpu", weights_only=False).eval()
    except Exception as exc:
        raise ArtifactError(f"cannot load PyTorch model {artifact}: {exc} ({REEXPORT_HINT})") from exc


class TorchSession(Session):
    """Runs the module under ``inference_mode`` with numpy in and out."""

    def __init__(self, module, dtype) -> None:
        import torch

        self._torch = torch
        self._module = module
        self._dtype = dtype

    def run(self, inputs: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            try:
                out = self._module(torch.from_numpy(inputs).to(self._dtype))
            except NotImplementedError as exc:  # an fp16 module on the CPU meets an op with no Half kernel there
                if "'Half'" not in str(exc):
                    raise
                raise ArtifactError(f"PyTorch has no fp16 CPU kernel for an op of this model ({first_line(exc)}); "
                                    "its fp16 is measured on ONNX Runtime, LiteRT or OpenVINO, or by torch on a GPU "
                                    "(torch_cuda)") from None
        return out.float().numpy()

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """torch.profiler ranges around every leaf module."""
        from edgebench.runtimes.torch.profile import profile_torch

        return profile_torch(self._module, batch, runs=runs)


@BACKENDS.register("torch")
class TorchBackend(Backend):
    """Eager PyTorch on the CPU with a fixed intra-op thread count."""

    name = "torch"
    formats = ("torch",)
    needs = (TORCH,)

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        import torch

        torch.set_num_threads(settings.threads)
        module = load_torch_module(artifact)
        dtype = next(module.parameters()).dtype
        return TorchSession(module, dtype)
