"""Tasks of a sweep: measurements (timed, alone on their lane) and builds/exports (untimed, shared lane)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebench.errors import ArtifactError, EdgebenchError, RuntimeCrashError
from edgebench.executor.base import HOST, Lane, Task, TaskContext, TaskKind, TaskResult, WorkerKind
from edgebench.job import Job, JobResult, thread_env
from edgebench.measure.worker import execute
from edgebench.plugins import PLUGINS_ENV
from edgebench.runtimes.base import get_backend

if TYPE_CHECKING:
    from edgebench.executor.runners import Runner

#: the cores of the machine that runs the task
HOST_LANE = Lane(HOST)


def measure_task(
    job: Job,
    timeout_s: float,
    *,
    lane: Lane = HOST_LANE,
    resources: dict[str, float] | None = None,
    fn: Callable[..., JobResult] = execute,
    args: tuple[Any, ...] | None = None,
    context: TaskContext | None = None,
) -> Task:
    """A timed task that measures ``job``: ``execute(job)`` in a warm worker of the job's runtime.

    Args:
        lane: what the measurement holds alone: this host's cores (all, or the ones the target is pinned
            to), or the board it runs on.
        resources: the board's Ray resources (e.g. ``{"board:jetson-a": 1}``), for the Ray executor.
        fn, args: another way to run the job: the target's runner (``runner.run``, over SSH on a board).
            Keep it in a module that does not import torch, or every measurement worker would carry it.
    """
    pinned = f"-cpus{'_'.join(map(str, sorted(lane.cpus)))}" if lane.cpus else ""
    # the runtime is imported once by the worker; each measurement runs in a child forked from it, so its peak
    # RSS is the runtime's import plus its own model and inference, whatever the worker measured before. The
    # backend registry is filled there too: in each child it took 0.16 s of every ONNX Runtime measurement.
    runtime = tuple(m for m in get_backend(job.backend).imports() if importlib.util.find_spec(m))  # a board's: not here
    env = thread_env(job.threads)
    plugins = "-plugins" if _needs_user_code(job) else ""
    if not plugins:  # the user's plug-in files (and what they import) stay out of its peak RSS
        env[PLUGINS_ENV] = ""
    worker = WorkerKind(name=f"measure-{job.backend}-{job.threads}t{pinned}{plugins}", env=tuple(env.items()),
                        preload=("edgebench.measure.worker", *runtime, "edgebench.runtimes.base:list_backends"),
                        cpus=lane.cpus, fork_per_task=True)
    return Task(key=job.job_id, kind="measure", fn=fn, args=(job,) if args is None else args, lane=lane,
                timed=True, timeout_s=timeout_s, worker=worker, resources=dict(resources or {}), context=context)


def _needs_user_code(job: Job) -> bool:
    """Whether measuring ``job`` may need the user's plug-in files: a backend or energy meter they register, or a
    pickled PyTorch module whose class lives in them."""
    from edgebench.measure.energy import METERS

    backend = get_backend(job.backend)
    meter = (job.energy or {}).get("type")
    components = [type(backend), *([METERS.get(meter)] if meter not in (None, "none") else [])]
    return "torch" in backend.formats or not all(
        (getattr(c, "__module__", "") or "").startswith("edgebench.") for c in components)


def call_task(key: str, kind: TaskKind, fn: Callable[..., Any], *args: Any, timeout_s: float = 3600.0,
              threads: int = 1, context: TaskContext | None = None, times: str | None = None) -> Task:
    """An untimed task (build a variant, export an artifact) sharing the host's cores with other untimed tasks.

    Builds and exports share warm workers (both import torch; nobody reads their peak RSS), so a sweep
    starts one torch process per core for them, not one per kind. A task that times a runtime (a latency
    prediction or allocation) gets workers of their own per ``times`` (its runtime, or what pins it): a runtime
    can run slower in a process that imported another (OpenVINO's copying call took 0.057 ms instead of 0.030 ms
    for its smallest model once ``onnxruntime`` was imported in the process, on an Intel Xeon guest), and exports
    import ONNX Runtime.
    """
    apart = f"-times-{times}" if times else ""
    worker = WorkerKind(name=f"untimed-{threads}t{apart}", env=tuple(thread_env(threads).items()))
    return Task(key=key, kind=kind, fn=fn, args=args, timeout_s=timeout_s, worker=worker, context=context)


def job_result(result: TaskResult) -> JobResult:
    """A measurement task's JobResult, with where it ran; a task that died becomes a failed JobResult."""
    if result.ok and isinstance(result.value, JobResult):
        job = result.value
    else:
        job = JobResult(job_id=result.key, status="failed", error=_with_crash_hint(result),
                        error_detail=result.detail)
    # waited for another edgebench process's window, or had no host lock: the result says so
    return job.model_copy(update={"ran_on": result.where, "host_lane": result.task.host_lane})


#: how the executor's errors begin where the worker process died or was killed for hanging, not raised
_DIED = ("worker killed by", "worker exited with code", "timed out after")


def measurement_failure(result: JobResult, what: str) -> EdgebenchError:
    """The error ``bench`` or ``profile`` ends with: the runtime crashed or hung (exit 4), or it refused the artifact
    or the input given for it (exit 2). ``what``: "measuring model.onnx on onnxruntime"."""
    error = result.error or "no result"
    kind = RuntimeCrashError if error.startswith(_DIED) else ArtifactError
    return kind(f"{what} failed: {error}")


def _with_crash_hint(result: TaskResult) -> str:
    """The failed task's error, with its runtime's way round the crash where the worker died of a signal."""
    error = result.error or "no result"
    job = next((a for a in result.task.args if isinstance(a, Job)), None)
    if job is None or not error.startswith(_DIED[0]):
        return error
    hint = get_backend(job.backend).crash_hint(error)
    return f"{error}; {hint}" if hint else error


def run_one(job: Job, timeout_s: float, runner: Runner | None = None, files: Sequence[Path] = ()) -> JobResult:
    """Measure one ``job`` (``edgebench bench``, ``edgebench profile``) from a fresh isolated worker process, where
    ``runner`` runs it (default: in that worker); a crash or hang is a failed result."""
    from edgebench.executor.local import LocalExecutor

    task = measure_task(job, timeout_s) if runner is None else measure_task(
        job, timeout_s, fn=runner.run, args=(job, list(files)))
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run([task])
    return job_result(result)
