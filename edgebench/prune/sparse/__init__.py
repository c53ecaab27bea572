"""Unstructured sparsity: individual connections removed, stored as exact zeros in dense weight tensors.

Methods (each module documents its formula and paper): ``magnitude`` (Han et al. 2015, iterative prune +
retrain, optional Deep Compression weight sharing), ``snip`` (Lee et al. 2019, connection sensitivity at
initialisation), ``rigl`` (Evci et al. 2020, drop/grow at constant parameter count), ``scl`` (Tang et al.
2022, trainable binary masks through a straight-through estimator).
"""

from edgebench.prune.sparse.base import SPARSE_METHODS, SparseMethod, create_sparse_method
from edgebench.prune.sparse.masks import MaskedWeights, prunable_layers, sparsity_by_layer

# Method modules register themselves on import.
from edgebench.prune.sparse import magnitude, rigl, scl, snip  # noqa: F401  isort: skip

__all__ = [
    "SPARSE_METHODS",
    "MaskedWeights",
    "SparseMethod",
    "create_sparse_method",
    "prunable_layers",
    "sparsity_by_layer",
]
