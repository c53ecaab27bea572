"""The dataset registry, a leaf of ``data/``: loader modules import it to register themselves, and it imports
them (and the ``edgebench.datasets`` entry points) on the first lookup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgebench.registry import Registry

DATASETS: Registry[Callable[..., Any]] = Registry(
    "dataset", modules=("edgebench.data.cifar", "edgebench.data.digits", "edgebench.data.files"),
    group="edgebench.datasets")
