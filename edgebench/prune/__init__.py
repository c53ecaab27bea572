"""Model compression: structured pruning (``criteria/``, physical filter removal in ``structured.py``,
``schedules/``, per-layer ``allocation/``), unstructured sparsity (``sparse/``) and low-rank factorisation
(``lowrank.py``).

The pipeline calls :func:`build_fp32_model`; the pieces below are public for users who prune their
own models (``prune_model(model, create_criterion("l1"), 0.5, example_input)``); model cost
(``count_macs``, ``count_params``) lives in :mod:`edgebench.models.cost`.
"""

from edgebench.prune.build import BuiltModel, build_fp32_model, new_model, train_baseline
from edgebench.prune.criteria import CRITERIA, Criterion, ScoringData, create_criterion
from edgebench.prune.schedules import SCHEDULES, PruneWhileTraining, default_prune_epochs
from edgebench.prune.structured import prune_model, remove_channels, score_groups, select_channels

__all__ = [
    "CRITERIA",
    "SCHEDULES",
    "BuiltModel",
    "Criterion",
    "PruneWhileTraining",
    "ScoringData",
    "build_fp32_model",
    "create_criterion",
    "default_prune_epochs",
    "new_model",
    "prune_model",
    "remove_channels",
    "score_groups",
    "select_channels",
    "train_baseline",
]
