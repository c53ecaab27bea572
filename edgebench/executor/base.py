"""The executor interface: tasks in, results out as they finish, with timing kept honest by lanes.

A task is one unit of work of a sweep (build a variant, export an artifact, measure an artifact on a
target) given as a picklable module-level callable and its arguments. Every task names the lane it
occupies: the cores of a host, or a board. A *timed* task (a measurement) holds its lane alone, so no
other task runs on those cores during its timed window; untimed tasks (builds, exports) share a lane up
to its capacity. Lanes are granted first come, first served: a task that must wait holds back the tasks
queued after it on the same lane, so a measurement is never starved by a stream of exports. A task that
carries on another's work (an int8 export of the fp32 file another export wrote) takes that task's place in
line: on a host, untimed work queued before a measurement is done before it, on both cores.
"""

from __future__ import annotations

import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from edgebench.executor.host_lanes import HostLanes
    from edgebench.job import HostLane

from edgebench.job import Placement

log = logging.getLogger(__name__)

#: what a task does, in its caller's words ("build", "export", "measure", ...); "measure" tasks are the ones
#: whose peak RSS is read, so a worker that cannot reset its high-water mark is not reused after one
TaskKind = str


class TaskContext(Protocol):
    """What a caller attaches to a task to recognise its result: one type per task kind (``edgebench.sweep``)."""

    kind: ClassVar[TaskKind]

    def describe(self) -> str:
        """A few words for progress displays and logs."""
        ...

#: the lane of tasks that run on the machine of the sweep itself (any machine with free cores under Ray)
HOST = "host"


@dataclass(frozen=True)
class Lane:
    """What a running task occupies: a host's cores (all, or a pinned set) or a board.

    Two lanes conflict when they have the same name and their core sets overlap; ``cpus=None``
    means every core of that host, so it conflicts with any lane of the same name.
    """

    name: str = HOST
    cpus: frozenset[int] | None = None

    def overlaps(self, other: Lane) -> bool:
        """Whether a task on ``self`` and one on ``other`` would share cores."""
        if self.name != other.name:
            return False
        return self.cpus is None or other.cpus is None or bool(self.cpus & other.cpus)

    def __str__(self) -> str:
        return self.name if self.cpus is None else f"{self.name}[cpus {','.join(map(str, sorted(self.cpus)))}]"


@dataclass(frozen=True)
class WorkerKind:
    """Which warm worker process may run a task: processes are never shared between kinds.

    One kind per (runtime, threads): a runtime's thread pools are sized from the environment when it
    is imported, and a worker that never imported another runtime reports a peak RSS of its own.
    """

    name: str = "default"
    env: tuple[tuple[str, str], ...] = ()
    #: modules imported when the worker starts, outside any timed window; ``module:function`` also calls
    #: ``function()`` (a registry filled once in the worker, not in every child forked from it)
    preload: tuple[str, ...] = ()
    #: cores the worker process is pinned to (a target pinned apart); None = wherever the OS puts it
    cpus: frozenset[int] | None = None
    #: every task runs in a child forked from the worker, which only imports ``preload``: what a task leaves
    #: behind never shows in the next one's peak RSS (measurement workers)
    fork_per_task: bool = False


@dataclass
class Task:
    """One unit of work: ``fn(*args)`` run in a worker, on ``lane``, within ``timeout_s``."""

    key: str
    kind: TaskKind
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    lane: Lane = Lane()
    timed: bool = False
    timeout_s: float = 300.0
    worker: WorkerKind = WorkerKind()
    #: Ray custom resources the task needs, e.g. {"board:jetson-a": 1}; the local executor uses the lane
    resources: dict[str, float] = field(default_factory=dict)
    #: what the caller wants back with the result (e.g. the planned job); never sent to a worker
    context: TaskContext | None = None
    #: keys of tasks that must have finished ok first (the export a measurement reads)
    after: tuple[str, ...] = ()
    #: the key of one of ``after`` whose work this task carries on (an int8 export of the fp32 file that export
    #: writes): it is queued in that task's place in line, not behind the measurements queued since
    continues: str | None = None
    #: its place in line, given when it is first queued
    line: int | None = None
    attempts: int = 0
    #: what the host-wide lane lock did for a timed task (how long it waited, or why there was none)
    host_lane: HostLane | None = None

    def __post_init__(self) -> None:
        if self.context is not None and self.context.kind != self.kind:
            raise ValueError(f"task {self.key} of kind {self.kind} carries a {self.context.kind} context")


@dataclass
class TaskResult:
    """What became of a task: its return value, or why it failed, and where and when it ran."""

    task: Task
    status: Literal["ok", "failed"]
    value: Any = None
    error: str | None = None
    #: the full Python traceback, or the worker's stderr tail for a crash or a hang
    detail: str | None = None
    where: Placement | None = None
    started: float | None = None
    ended: float | None = None
    #: seconds from handing the task to a worker until its result was back
    wall_s: float | None = None
    #: failed because its node or board left the cluster, not because of the job: worth running again
    lost: bool = False
    #: not run because a task it needed failed (``error`` says which, and why)
    blocked: bool = False
    #: what edgebench warned in the worker while it ran the task (a build that could not do all that was asked)
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The task's key."""
        return self.task.key

    @property
    def ok(self) -> bool:
        """Whether the task returned a value."""
        return self.status == "ok"


class Executor(ABC):
    """Runs tasks and yields their results as they finish.

    Tasks may be submitted while results are being consumed (a measurement once its export is
    back), and every submitted task yields exactly one result: a crash, a timeout or a lost node
    becomes a failed result, never a missing one.
    """

    @abstractmethod
    def submit(self, task: Task) -> None:
        """Queue ``task``; it starts when its lane allows."""

    @abstractmethod
    def results(self) -> Iterator[TaskResult]:
        """Yield results as tasks finish, until no task is queued or running."""

    @abstractmethod
    def close(self) -> None:
        """Stop every worker this executor started."""

    def run(self, tasks: Iterable[Task]) -> Iterator[TaskResult]:
        """Submit ``tasks`` and yield their results as they finish.

        A task whose ``after`` names other tasks is submitted once they all finished ok; when one of them
        failed, the task is not run and yields a failed result that says which and why.
        """
        waiting: list[Task] = []
        done: dict[str, TaskResult] = {}

        def release() -> Iterator[TaskResult]:
            while True:
                blocked = next(((t, done[k]) for t in waiting for k in t.after if k in done and not done[k].ok), None)
                if blocked is None:
                    break
                task, cause = blocked
                waiting.remove(task)
                # a chain of blocked tasks names the task that failed, not every link in between, and carries its
                # traceback: the jobs it blocked are what the store keeps
                error = cause.error if cause.blocked else f"{cause.task.kind} {cause.key} failed: {cause.error}"
                done[task.key] = TaskResult(task, "failed", error=error, detail=cause.detail, lost=cause.lost,
                                            blocked=True)
                yield done[task.key]
            for task in [t for t in waiting if all(k in done for k in t.after)]:
                waiting.remove(task)
                if task.continues in done:
                    task.line = done[task.continues].task.line
                self.submit(task)

        waiting.extend(tasks)
        yield from release()
        for result in self.results():  # dependents submitted by release() are picked up by the same loop
            done[result.key] = result
            yield result
            yield from release()
        for task in waiting:  # a prerequisite that was not among the tasks
            yield TaskResult(task, "failed", error=f"prerequisites never ran: {', '.join(task.after)}")

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Running:
    task: Task
    lane: Lane


class LaneScheduler:
    """Decides which queued tasks may start now, in queue order, without sharing a timed task's cores.

    Args:
        capacity: how many untimed tasks a lane runs at once.
        lanes_of: the lanes a task may run on, best first (one lane locally; any node with cores under Ray).
        host: the host-wide locks a timed task must also hold, so other edgebench processes' timed windows
            never overlap this one's (None: this process only).
    """

    def __init__(self, capacity: Callable[[Lane], int],
                 lanes_of: Callable[[Task], list[Lane]] = lambda task: [task.lane],
                 host: HostLanes | None = None) -> None:
        self.capacity = capacity
        self.lanes_of = lanes_of
        self.host = host
        self.queue: list[Task] = []
        self.running: dict[int, _Running] = {}
        self._lines = itertools.count()

    def add(self, task: Task, front: bool = False) -> None:
        """Queue ``task``: at the front for a retry, which keeps its place in line; a task that already has a
        place (``Task.continues``) ahead of the tasks queued after it; any other at the back."""
        if front:
            self.queue.insert(0, task)
        elif task.line is not None:
            at = next((i for i, queued in enumerate(self.queue) if (queued.line or 0) > task.line), len(self.queue))
            self.queue.insert(at, task)
        else:
            task.line = next(self._lines)
            self.queue.append(task)

    def __len__(self) -> int:
        return len(self.queue) + len(self.running)

    def _admits(self, task: Task, lane: Lane, polled: set[int]) -> bool:
        overlapping = [r for r in self.running.values() if r.lane.overlaps(lane)]
        if task.timed:
            if overlapping or self.host is None:
                return not overlapping
            polled.add(id(task))
            return self.host.acquire(task, lane)
        if any(r.task.timed for r in overlapping):
            return False
        return sum(r.lane == lane for r in overlapping) < self.capacity(lane)

    def start_ready(self) -> list[tuple[Task, Lane]]:
        """Remove and return the tasks that may start now, each with the lane granted to it."""
        started: list[tuple[Task, Lane]] = []
        held: list[Lane] = []  # lanes a waiting task has claimed: later tasks may not overtake it there
        waiting: list[Task] = []
        polled: set[int] = set()  # timed tasks that asked for the host's locks in this pass
        for task in self.queue:
            lanes = [lane for lane in self.lanes_of(task) if not any(lane.overlaps(h) for h in held)]
            granted = next((lane for lane in lanes if self._admits(task, lane, polled)), None)
            if granted is None:
                held.extend(lanes)
                waiting.append(task)
                continue
            self.running[id(task)] = _Running(task, granted)
            started.append((task, granted))
        self.queue = waiting
        if self.host is not None:
            # a task this process does not let ask now (one ahead of it, or running, shares its cores) gives up its
            # ticket: kept, it held other processes' place in line while the task ahead waited behind it, and both
            # waited for ever (a pinned core-1 measurement that took a ticket beside another run, then a whole-host
            # one ahead of it in the queue: every edgebench process on the host hung)
            for task in waiting:
                if task.timed and id(task) not in polled:
                    self.host.release(task)
        return started

    def finished(self, task: Task) -> None:
        """Free the lane ``task`` held (and its host-wide locks, noting the wait on the task)."""
        self.running.pop(id(task), None)
        if self.host is not None and task.timed:
            task.host_lane = self.host.note(task)
            self.host.release(task)

    def close(self) -> None:
        """Free the host-wide locks and tickets of every task still running or queued (the executor is closing)."""
        if self.host is not None:
            self.host.release_all()

    @property
    def waiting_for_host(self) -> bool:
        """Whether a queued timed task waits for cores another process holds (poll again soon)."""
        return self.host is not None and any(t.timed for t in self.queue)

    def take_queued(self, predicate: Callable[[Task], bool]) -> list[Task]:
        """Remove and return the queued (not running) tasks matching ``predicate``."""
        taken = [task for task in self.queue if predicate(task)]
        self.queue = [task for task in self.queue if not predicate(task)]
        if self.host is not None:
            for task in taken:
                self.host.release(task)
        return taken
