"""Saving a whole ``nn.Module``: a pruned model's layer widths are no factory's, so the module itself is saved (the
model cache, the PyTorch artifact), not a state dict.

``torch.save`` pickles it with cloudpickle, which writes by value what pickle cannot find by name - a lambda kept as
an attribute (the option-A shortcut of the widely copied CIFAR ResNet, ``LambdaLayer(lambda x: F.pad(...))``), a class
defined inside the factory - and everything importable by reference, as pickle does (a model of importable classes
is the same bytes either way), but for the classes of a user's Python file (``model: {file: ...}``, ``plugins:``): their
module's name is one edgebench makes up per file content, which no other process can import, so they are written by
value too. ``torch.load`` reads both with the standard unpickler, with cloudpickle installed and, for what was
written by value, the same Python minor version.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import cloudpickle
import torch
from torch import nn

from edgebench.plugins import USER_FILE_MODULE_PREFIX


def save_whole(model: nn.Module, file: str | Path | IO[bytes]) -> None:
    """``model`` pickled whole into ``file`` (see the module docstring)."""
    for name, module in list(sys.modules.items()):
        if name.startswith(USER_FILE_MODULE_PREFIX):
            cloudpickle.register_pickle_by_value(module)
    torch.save(model, file, pickle_module=cloudpickle)
