"""The ``executor:`` block of an experiment and the executor it describes (a target's ``ray:`` placement block
is part of the target file: ``targets.TargetRay``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgebench.errors import ConfigError
from edgebench.executor.base import Executor

log = logging.getLogger(__name__)


class ExecutorConfig(BaseModel):
    """Where the sweep's tasks run: warm local workers (default) or a Ray cluster."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # as the experiment's other blocks: .inf is no size

    type: Literal["local", "ray"] = Field("local", description="local: worker processes on this machine; ray: the Ray cluster "
        "at address")
    address: str = Field("auto", description="ray: 'auto', 'host:port' or 'ray://host:10001'")
    workers: int | None = Field(None, ge=1, description="local: builds/exports at once (default: one per core)")
    max_tasks_per_worker: int = Field(50, ge=1, description="local: a worker is replaced after this many tasks")
    max_rss_mb: float = Field(2048.0, gt=0, description="local: a worker above this RSS after a task is replaced")
    on_lost: Literal["retry", "fail"] = Field("retry", description="ray: a task whose node/board left mid-task")
    max_retries: int = Field(1, ge=0, description="ray: how often a lost task is queued again")
    lost_grace_s: float = Field(30.0, ge=0, description="ray: how long jobs wait for a missing board before failing")


#: the fields each executor type reads; the other type's, when set, are ignored (and said so)
FIELDS_OF = {"local": ("workers", "max_tasks_per_worker", "max_rss_mb"),
             "ray": ("address", "on_lost", "max_retries", "lost_grace_s")}


def check_executor(config: ExecutorConfig) -> None:
    """ConfigError when the executor cannot start (no Ray cluster at its address), before the run is stored; a
    warning naming the other executor type's fields where they are set (``--executor ray`` over a local block)."""
    other = "ray" if config.type == "local" else "local"
    if ignored := [f for f in FIELDS_OF[other] if f in config.model_fields_set]:
        log.warning("executor.%s %s to the %s executor: ignored, this run's executor is %s", ", ".join(ignored),
                    "applies" if len(ignored) == 1 else "apply", other, config.type)
    if config.type == "ray":
        from edgebench.executor.ray_executor import cluster_problem, import_ray

        if not import_ray().is_initialized() and (problem := cluster_problem(config.address)):
            raise ConfigError(problem)


def create_executor(config: ExecutorConfig, log_dir: Path | None = None) -> Executor:
    """The executor ``config`` describes; worker logs (converter output, crash stacks) go to ``log_dir``."""
    if config.type == "ray":
        from edgebench.executor.ray_executor import RayExecutor

        return RayExecutor(address=config.address, on_lost=config.on_lost, max_retries=config.max_retries,
                           lost_grace_s=config.lost_grace_s)
    from edgebench.executor.local import LocalExecutor

    return LocalExecutor(workers=config.workers, max_tasks_per_worker=config.max_tasks_per_worker,
                         max_rss_mb=config.max_rss_mb, log_dir=log_dir)
