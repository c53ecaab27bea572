"""PyTorch eager artifact: the whole pruned module pickled with ``torch.save`` (:mod:`edgebench.models.whole_module`).

Pruned models have per-layer channel counts that differ from the zoo's
constructors, so the module object (not just a state dict) is saved.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from torch import nn

from edgebench.models.whole_module import save_whole
from edgebench.runtimes.base import EXPORTERS, Exporter
from edgebench.variants import QuantSpec


@EXPORTERS.register("torch")
class TorchExporter(Exporter):
    """Saves fp32 (or fp16-cast) eager modules."""

    format = "torch"
    precisions = ("fp32", "fp16")
    suffix = ".pt"
    converters = ("torch",)

    def export(self, model: nn.Module, quant: QuantSpec, calibration: np.ndarray, out_path: Path) -> Path:
        module = model.eval()
        if quant.precision == "fp16":
            module = copy.deepcopy(module).half()
        with open(out_path, "wb") as fh:  # torch names the archive's folder after a path: the same bytes whatever
            save_whole(module, fh)          # temporary name (process id) the file is written under
        return out_path

