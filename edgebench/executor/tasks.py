"""Tasks of a sweep: measurements (timed, alone on their lane) and builds/exports (untimed, shared lane)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgebench.executor.base import HOST, Lane, Task, TaskKind, TaskResult, WorkerKind
from edgebench.measure.job import Job, JobResult, thread_env
from edgebench.measure.worker import execute


def measure_lane(resources: dict[str, float] | None = None, cpus: frozenset[int] | None = None) -> Lane:
    """The lane of a measurement: its board when the target names one, else this host's cores."""
    if resources:
        return Lane(",".join(sorted(resources)))
    return Lane(HOST, cpus)


def measure_task(
    job: Job,
    timeout_s: float,
    *,
    resources: dict[str, float] | None = None,
    cpus: frozenset[int] | None = None,
    fn: Callable[..., JobResult] = execute,
    args: tuple[Any, ...] | None = None,
    context: Any = None,
) -> Task:
    """A timed task that measures ``job``: ``execute(job)`` in a warm worker of the job's runtime.

    Args:
        resources: the board's Ray resources (e.g. ``{"board:jetson-a": 1}``): the board is the lane.
        cpus: cores the target is pinned to; measurements on disjoint pinned cores may run side by side.
        fn, args: another way to run the job (e.g. over SSH on the board), defaults to ``execute(job)``.
    """
    worker = WorkerKind(name=f"measure-{job.backend}-{job.threads}t", env=tuple(thread_env(job.threads).items()),
                        preload=("edgebench.measure.worker",))
    return Task(key=job.job_id, kind="measure", fn=fn, args=(job,) if args is None else args,
                lane=measure_lane(resources, cpus), timed=True, timeout_s=timeout_s, worker=worker,
                resources=dict(resources or {}), context=context)


def call_task(key: str, kind: TaskKind, fn: Callable[..., Any], *args: Any, timeout_s: float = 3600.0,
              threads: int = 1, context: Any = None) -> Task:
    """An untimed task (build a variant, export an artifact) sharing the host's cores with others of its kind."""
    worker = WorkerKind(name=f"{kind}-{threads}t", env=tuple(thread_env(threads).items()))
    return Task(key=key, kind=kind, fn=fn, args=args, timeout_s=timeout_s, worker=worker, context=context)


def job_result(result: TaskResult) -> JobResult:
    """A measurement task's JobResult, with where it ran; a task that died becomes a failed JobResult."""
    if result.ok and isinstance(result.value, JobResult):
        job = result.value
    else:
        details = {"error_detail": result.detail} if result.detail else {}
        job = JobResult(job_id=result.key, status="failed", error=result.error or "no result", details=details)
    job.details["ran_on"] = result.where
    return job
