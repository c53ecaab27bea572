"""The embedded executor: a small pool of warm, isolated worker processes on this machine.

Workers are spawned (not forked: no copies of torch's thread pools), import what they need once, and
take tasks over a pipe. Isolation is per process: a crash (SIGSEGV), a hang past the task's timeout or
an exception fails only that task, with the signal or traceback and the worker's stderr tail recorded;
the worker of a failed task is replaced by a fresh one for the next task. A worker is recycled after
``max_tasks_per_worker`` tasks or once its RSS exceeds ``max_rss_mb``, so a leak cannot creep into
later peak-RSS figures. Worker kinds are kept apart (one per runtime and thread count), so a runtime's
resident memory never shows up in another runtime's peak RSS.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import multiprocessing.spawn
import os
import pickle
import re
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from edgebench.executor.base import HOST, Executor, Lane, LaneScheduler, Task, TaskResult, WorkerKind
from edgebench.executor.forked import STACK_DUMP_SIGNAL, crash_error, exit_reason
from edgebench.executor.host_lanes import HostLanes
from edgebench.executor.inprocess import Outcome
from edgebench.executor.process_tree import kill_tree
from edgebench.executor.warm_worker import ready, worker_main
from edgebench.job import Placement
from edgebench.measure.worker import stderr_tail
from edgebench.registry import main_script_registers

log = logging.getLogger(__name__)

@dataclass
class _Worker:
    kind: WorkerKind
    process: multiprocessing.process.BaseProcess
    conn: Connection
    log_path: Path
    tasks_done: int = 0
    last_used: float = field(default_factory=time.monotonic)
    task: Task | None = None
    dispatched: float = 0.0
    deadline: float = float("inf")
    log_offset: int = 0


def _ask_to_stop(worker: _Worker) -> None:
    """Send ``worker`` the empty message that ends its loop (it may already be gone)."""
    with contextlib.suppress(OSError):
        worker.conn.send_bytes(b"")


def _stop(worker: _Worker, grace_s: float = 2.0) -> None:
    """Ask ``worker`` to exit, and kill it if it does not within ``grace_s``."""
    _ask_to_stop(worker)
    worker.process.join(grace_s)
    if worker.process.is_alive():
        kill_tree(worker.process.pid)
        worker.process.join(grace_s)
    worker.conn.close()


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.process.is_alive():
            kill_tree(worker.process.pid)
        worker.process.join(2)


def _tail(path: Path, offset: int) -> str:
    """What the worker wrote to its log since ``offset`` (this task's output), its last lines."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return stderr_tail(fh.read()) or ""
    except OSError:
        return ""


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` set while a worker is spawned, then as it was: a spawned child imports the
    driver's main module before ``worker_main`` runs, and a user's script that imports torch there would size
    torch's OpenMP pool from the driver's environment (two builds of two threads each on two cores trained 3x
    slower than one thread each)."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _main_script_only_where_needed() -> Iterator[None]:
    """While a worker is spawned: leave the driver's main script out of what the child imports first, unless the
    script registered a plug-in of its own. A script that imports pandas and torch made every ONNX Runtime
    worker's peak RSS 265 MiB instead of 109 (the same artifact), so memory figures would follow the caller."""
    if main_script_registers():
        yield
        return
    original = multiprocessing.spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    multiprocessing.spawn.get_preparation_data = without_main
    try:
        yield
    finally:
        multiprocessing.spawn.get_preparation_data = original


#: how often a measurement waiting for cores held by another edgebench process asks again
HOST_POLL_S = 0.2

#: the longest single wait for a worker: a timeout of days is waited for in steps, since the wait's poll takes at
#: most 2**31 ms (a longer one raised OverflowError and left the run "running")
MAX_WAIT_S = 3600.0

#: idle workers kept besides one per untimed slot: the measurement kinds of a sweep (torch, ONNX Runtime, LiteRT,
#: hls4ml, OpenVINO...) each keep their warm worker between jobs
MAX_IDLE_KINDS = 6

#: the kind of the tasks that start a timed task's worker ahead of it (never yielded as results)
WARM_UP = "warm-up"
WARM_UP_TIMEOUT_S = 300.0


class LocalExecutor(Executor):
    """Warm worker processes on this machine, one lane per host (and one per board driven from here).

    Args:
        workers: untimed tasks (builds, exports) run at once on the host; default: one per core.
        max_tasks_per_worker: a worker is replaced after this many tasks.
        max_rss_mb: a worker whose RSS is above this after a task is replaced.
        log_dir: where each worker's stdout/stderr goes (converter output, crash stacks); default: a
            temporary directory removed by ``close``.
    """

    def __init__(
        self,
        workers: int | None = None,
        max_tasks_per_worker: int = 50,
        max_rss_mb: float = 2048.0,
        log_dir: Path | None = None,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_rss_mb = max_rss_mb
        self._own_log_dir = log_dir is None
        self.log_dir = Path(tempfile.mkdtemp(prefix="edgebench-workers-")) if log_dir is None else Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.scheduler = LaneScheduler(capacity=lambda lane: self.workers if lane.name == HOST else 1,
                                       host=HostLanes((HOST,)))
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []
        self._seq = itertools.count(1)
        self._host = socket.gethostname()
        self._processes: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _stop_all, self._processes)  # no orphaned workers

    # ---- worker processes -------------------------------------------------------------------------
    def _spawn(self, kind: WorkerKind) -> _Worker:
        # the driver's pid in the name: two runs sharing a run directory never write into each other's logs
        name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', kind.name)}-{os.getpid()}-{next(self._seq)}.log"
        log_path = self.log_dir / name
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, name=f"edgebench-{kind.name}", daemon=False,
            args=(child_conn, kind.preload, str(log_path), os.getpid(), kind.cpus, kind.fork_per_task),
        )
        with _environment(dict(kind.env)), _main_script_only_where_needed():
            process.start()
        child_conn.close()
        worker = _Worker(kind, process, parent_conn, log_path)
        self._processes.append(worker)
        log.debug("started worker %s pid %d", kind.name, process.pid)
        return worker

    def _retire(self, worker: _Worker, kill: bool = False) -> None:
        if kill:
            if worker.process.is_alive():
                kill_tree(worker.process.pid)
            worker.process.join(5)
            worker.conn.close()
        else:
            _stop(worker)
        self._processes.remove(worker)

    def _worker_for(self, kind: WorkerKind) -> _Worker:
        for worker in [w for w in self._idle if not w.process.is_alive()]:  # died while idle (OOM killer)
            self._idle.remove(worker)
            self._retire(worker, kill=True)
        for worker in self._idle:
            if worker.kind == kind:
                self._idle.remove(worker)
                return worker
        # idle workers of other kinds cost only memory (100-400 MiB each), a respawn costs seconds of imports:
        # keep one per kind of a usual sweep, retiring the least recently used beyond that
        while len(self._idle) >= self.workers + MAX_IDLE_KINDS:
            oldest = min(self._idle, key=lambda w: w.last_used)
            self._idle.remove(oldest)
            self._retire(oldest)
        return self._spawn(kind)

    # ---- Executor ---------------------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        self.scheduler.add(task)

    def run(self, tasks: Iterable[Task]) -> Iterator[TaskResult]:
        """As :meth:`Executor.run`, with each timed worker kind started ahead: a worker's start-up (seconds of
        runtime imports) is untimed work, so it shares the cores with builds and exports instead of holding
        them alone as the first measurement of its kind would."""
        tasks = list(tasks)
        if any(not t.timed for t in tasks):  # something to overlap with
            for kind in dict.fromkeys(t.worker for t in tasks if t.timed):
                if not any(w.kind == kind for w in self._processes):
                    self.submit(Task(key=f"{WARM_UP}:{kind.name}", kind=WARM_UP, fn=ready, lane=Lane(HOST),
                                     timeout_s=WARM_UP_TIMEOUT_S, worker=kind))
        for result in super().run(tasks):
            if result.task.kind != WARM_UP:
                yield result
            elif not result.ok:  # the measurement of this kind starts its own worker and reports what fails
                log.debug("warm-up of %s failed: %s", result.key, result.error)

    def _dispatch(self, task: Task, lane: Lane) -> TaskResult | None:
        try:
            payload = pickle.dumps((task.fn, task.args, task.timed))  # only a measurement's peak RSS is read
        except Exception as exc:
            return TaskResult(task, "failed", error=f"the task cannot be sent to a worker: {exc}")
        worker = self._worker_for(task.worker)
        worker.task, worker.dispatched = task, time.monotonic()
        worker.deadline = worker.dispatched + task.timeout_s
        worker.log_offset = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        task.attempts += 1
        with contextlib.suppress(OSError):  # the worker died while idle: the crash path reports it
            worker.conn.send_bytes(payload)
        self._busy.append(worker)
        return None

    def results(self) -> Iterator[TaskResult]:
        while len(self.scheduler):
            for task, lane in self.scheduler.start_ready():
                refused = self._dispatch(task, lane)
                if refused is not None:
                    self.scheduler.finished(task)
                    yield refused
            if not self._busy:  # only a measurement waiting for cores another process holds
                time.sleep(HOST_POLL_S)
                continue
            timeout = min(MAX_WAIT_S, max(0.0, min(w.deadline for w in self._busy) - time.monotonic()))
            if self.scheduler.waiting_for_host:
                timeout = min(timeout, HOST_POLL_S)
            wait([w.conn for w in self._busy] + [w.process.sentinel for w in self._busy], timeout)
            for worker in list(self._busy):
                result = self._collect(worker)
                if result is not None:
                    self._busy.remove(worker)
                    self.scheduler.finished(result.task)
                    yield result

    def _collect(self, worker: _Worker) -> TaskResult | None:
        """The result of ``worker``'s task if it has one now (returned, crashed or timed out)."""
        task = worker.task
        assert task is not None
        if worker.conn.poll():
            try:
                outcome: Outcome = pickle.loads(worker.conn.recv_bytes())
            except (EOFError, OSError):
                return self._crashed(worker, task)
            return self._returned(worker, task, outcome)
        if not worker.process.is_alive():
            return self._crashed(worker, task)
        if time.monotonic() >= worker.deadline:
            return self._timed_out(worker, task)
        return None

    def _returned(self, worker: _Worker, task: Task, outcome: Outcome) -> TaskResult:
        wall = time.monotonic() - worker.dispatched
        worker.tasks_done += 1
        worker.task, worker.last_used = None, time.monotonic()
        reason = None
        if outcome.status != "ok":
            reason = "its task raised: the runtime may have been left half set up"
        elif worker.tasks_done >= self.max_tasks_per_worker:
            reason = f"after {worker.tasks_done} tasks"
        elif outcome.rss_mb is not None and outcome.rss_mb > self.max_rss_mb:
            reason = f"RSS {outcome.rss_mb:.0f} MiB > {self.max_rss_mb:g} MiB"
        elif task.kind == "measure" and not outcome.peak_reset:
            reason = "peak RSS cannot be reset here: one measurement per process"
        if reason:
            log.debug("recycling worker %s pid %d: %s", worker.kind.name, worker.process.pid, reason)
            self._retire(worker)
        else:
            self._idle.append(worker)
        return TaskResult(task, "ok" if outcome.status == "ok" else "failed", value=outcome.value,
                          error=outcome.error, detail=outcome.detail,
                          where=Placement(executor="local", host=outcome.host, pid=outcome.pid),
                          started=outcome.started, ended=outcome.ended, wall_s=wall, warnings=tuple(outcome.warnings))

    def _failed(self, worker: _Worker, task: Task, summary: str) -> TaskResult:
        tail = _tail(worker.log_path, worker.log_offset)
        error = crash_error(summary, tail)
        log.warning("task %s failed: %s", task.key, summary)
        return TaskResult(task, "failed", error=error, detail=tail or None,
                          where=Placement(executor="local", host=self._host, pid=worker.process.pid),
                          wall_s=time.monotonic() - worker.dispatched)

    def _crashed(self, worker: _Worker, task: Task) -> TaskResult:
        worker.process.join(5)
        result = self._failed(worker, task, exit_reason(worker.process.exitcode))
        self._retire(worker, kill=True)
        return result

    def _timed_out(self, worker: _Worker, task: Task) -> TaskResult:
        try:  # the stack of the hung task goes to the log, and so into the failure's detail
            os.kill(worker.process.pid, STACK_DUMP_SIGNAL)
            time.sleep(0.3)
        except ProcessLookupError:
            pass
        kill_tree(worker.process.pid)
        worker.process.join(5)
        limit = "run.job_timeout_s; bench, profile: --timeout-s" if task.kind == "measure" else "run.build_timeout_s"
        result = self._failed(worker, task, f"timed out after {task.timeout_s:g} s (worker killed; the limit: {limit})")
        self._retire(worker, kill=True)
        return result

    def close(self) -> None:
        self.scheduler.close()
        for worker in self._idle:  # all asked first, then joined: their exits overlap
            _ask_to_stop(worker)
        for worker in list(self._processes):
            self._retire(worker, kill=worker in self._busy)
        self._idle.clear()
        self._busy.clear()
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
