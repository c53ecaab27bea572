"""Channel-importance criteria from the pruning literature, registered by name in ``CRITERIA``."""

from edgebench.prune.criteria.base import CRITERIA, Criterion, ScoringData, create_criterion

# Criterion modules register themselves on import.
from edgebench.prune.criteria import activation, curvature, gradient, magnitude, propagation  # noqa: F401  isort: skip

__all__ = ["CRITERIA", "Criterion", "ScoringData", "create_criterion"]
