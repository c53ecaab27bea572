"""When filters are removed, one registered schedule per module: pruning while training (``while_training``),
one-shot and iterative prune + finetune (``finetune.py``), and training the pruned architecture from scratch
(``scratch``: Scratch-E, ``scratch_b``: Scratch-B)."""

from edgebench.prune.schedules.base import (
    FINETUNE_LR_FACTOR,
    SCHEDULES,
    SCORING_SAMPLES,
    Progress,
    Schedule,
    ScheduleResult,
    apply_prune,
    schedule_allocation,
    scoring_data,
)
from edgebench.prune.schedules.while_training import PruneWhileTraining, default_prune_epochs

# Schedule modules register themselves on import.
from edgebench.prune.schedules import finetune, scratch  # noqa: F401  isort: skip

__all__ = [
    "FINETUNE_LR_FACTOR",
    "SCHEDULES",
    "SCORING_SAMPLES",
    "Progress",
    "PruneWhileTraining",
    "Schedule",
    "ScheduleResult",
    "apply_prune",
    "default_prune_epochs",
    "schedule_allocation",
    "scoring_data",
]
