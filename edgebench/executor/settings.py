"""The ``executor:`` block of an experiment and the ``ray:`` block of a target, and the factory they feed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgebench.executor.base import Executor


class ExecutorConfig(BaseModel):
    """Where the sweep's tasks run: warm local workers (default) or a Ray cluster."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "ray"] = "local"
    address: str = Field("auto", description="ray: 'auto', 'host:port' or 'ray://host:10001'")
    workers: int | None = Field(None, ge=1, description="local: builds/exports at once (default: one per core)")
    max_tasks_per_worker: int = Field(50, ge=1, description="local: a worker is replaced after this many tasks")
    max_rss_mb: float = Field(2048.0, gt=0, description="local: a worker above this RSS after a task is replaced")
    on_lost: Literal["retry", "fail"] = Field("retry", description="ray: a task whose node/board left mid-task")
    max_retries: int = Field(1, ge=0, description="ray: how often a lost task is queued again")
    lost_grace_s: float = Field(30.0, ge=0, description="ray: how long jobs wait for a missing board before failing")


class TargetRay(BaseModel):
    """How a target's measurements are placed: its board's Ray resource, or cores it is pinned to."""

    model_config = ConfigDict(extra="forbid")

    resources: dict[str, float] = Field(
        default_factory=dict,
        description="the board's Ray custom resource, e.g. {'board:jetson-a': 1}; one measurement per board at a time",
    )
    cores: list[int] | None = Field(
        None, description="cores this target's measurements are pinned to; targets pinned to disjoint cores "
        "measure side by side (builds and exports still wait for them)")

    @field_validator("resources")
    @classmethod
    def _positive(cls, resources: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in resources.items() if v <= 0}
        if bad:
            raise ValueError(f"resource quantities must be positive, got {bad}")
        return resources


def create_executor(config: ExecutorConfig, log_dir: Path | None = None) -> Executor:
    """The executor ``config`` describes; worker logs (converter output, crash stacks) go to ``log_dir``."""
    if config.type == "ray":
        from edgebench.executor.ray_executor import RayExecutor

        return RayExecutor(address=config.address, on_lost=config.on_lost, max_retries=config.max_retries,
                           lost_grace_s=config.lost_grace_s)
    from edgebench.executor.local import LocalExecutor

    return LocalExecutor(workers=config.workers, max_tasks_per_worker=config.max_tasks_per_worker,
                         max_rss_mb=config.max_rss_mb, log_dir=log_dir)
