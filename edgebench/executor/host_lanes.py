"""Lanes across processes: timed windows of separate edgebench processes on one host never overlap.

An executor keeps its own measurements apart (``LaneScheduler``); two edgebench processes on one machine
(two CI jobs, a run started twice) know nothing of each other. So a timed task also holds host-wide lock
files: one per core of its lane (every core for an unpinned lane), or one per board. Waiting is first
come, first served across processes: a waiter takes a ticket (a file it keeps locked, named by the time it
started waiting), and a lane goes to the oldest live ticket once its lock files are free, so a process
that measures back to back cannot starve another. Locks and tickets are ``flock`` locks: the kernel drops
them when their process dies, and a ticket nobody holds is cleared by the next waiter.

The directory is ``$EDGEBENCH_LOCK_DIR`` or ``<tmp>/edgebench-lanes`` (shared by every user, sticky). Where it
cannot be used, timed tasks run without it and say so in their results.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edgebench.executor.base import HOST, Lane, Task
from edgebench.job import HostLane

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "EDGEBENCH_LOCK_DIR"


@dataclass(eq=False)
class LockHolder:
    """What holds lane locks outside the executor's tasks (the pipeline's side-by-side check); ``key`` names it in
    the waits it causes, as a task's key does."""

    key: str


def open_lock_dir(directory: Path) -> None:
    """Make ``directory`` (sticky and writable by every user when this process creates it) and check that this
    process can create files in it; OSError when it cannot."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # only its creator may; everyone else just uses it
        os.chmod(directory, 0o1777)
    probe = directory / f".probe-{os.getpid()}"
    probe.touch()
    probe.unlink()


def default_lock_dir() -> Path:
    """``$EDGEBENCH_LOCK_DIR``, else ``edgebench-lanes`` in the system's temporary directory."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "edgebench-lanes")


@dataclass
class _Claim:
    """One task's claim on the host: its ticket while it waits, its locks while it runs."""

    names: list[str]
    since: float = field(default_factory=time.monotonic)
    ticket: Path | None = None
    ticket_handle: IO[str] | None = None
    locks: list[IO[str]] = field(default_factory=list)
    holder: str = ""
    warned: bool = False
    #: its wait was a warning (the first for its holder): its end is too; later ones are INFO, as their waits
    loud: bool = False


def _open(path: Path) -> IO[str]:
    handle = open(path, "a+")  # noqa: SIM115 - held for as long as the lock or ticket lives
    with contextlib.suppress(OSError):  # a file another user created stays theirs; theirs is 0o666 too
        os.chmod(path, 0o666)
    return handle


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class HostLanes:
    """Host-wide locks for the timed tasks of one executor (see the module docstring).

    Args:
        host_lanes: lane names that stand for this machine's cores (``host``; under Ray the driver's node).
        directory: where the lock files live.
    """

    def __init__(self, host_lanes: tuple[str, ...] = (HOST,), directory: Path | None = None) -> None:
        self.host_lanes = host_lanes
        self.directory = directory or default_lock_dir()
        self.unavailable: str | None = None
        try:
            open_lock_dir(self.directory)
        except OSError as exc:
            self.unavailable = f"host lane locks unavailable ({self.directory}: {exc.strerror or exc})"
            log.warning("%s: timed windows of other edgebench processes may overlap this run's", self.unavailable)
        self._claims: dict[int, _Claim] = {}
        self._holders_named: set[str] = set()  # holders a wait was warned about (later waits: INFO)
        self.waited: dict[str, float] = {}

    def names(self, lane: Lane) -> list[str]:
        """The lock files a timed task on ``lane`` holds: its cores on this host, or the lane itself (a board)."""
        if lane.name in self.host_lanes:
            cores = sorted(lane.cpus) if lane.cpus else range(os.cpu_count() or 1)
            return [f"cpu{core}" for core in cores]
        return [re.sub(r"[^A-Za-z0-9_.-]", "_", lane.name)]

    def acquire(self, task: Task | LockHolder, lane: Lane) -> bool:
        """Take ``lane``'s lock files for ``task`` if it is their turn; False leaves the task waiting (call again)."""
        if self.unavailable:
            return True
        claim = self._claims.get(id(task))
        if claim is None:
            claim = self._claims[id(task)] = _Claim(self.names(lane))
            self._take_ticket(claim)
        if not self._first_in_line(claim) or not self._lock_all(claim):
            self._show_wait(task, claim)
            return False
        waited = time.monotonic() - claim.since
        self._drop_ticket(claim)
        if claim.warned:
            log.log(logging.WARNING if claim.loud else logging.INFO, "%s got the host's cores after waiting %.1f s",
                    task.key, waited)
        self.waited[task.key] = waited
        return True

    def release(self, task: Task | LockHolder) -> None:
        """Free what ``task`` holds or waits with (its locks, or its ticket)."""
        claim = self._claims.pop(id(task), None)
        if claim is not None:
            self._free(claim)

    def release_all(self) -> None:
        """Free every lock and ticket this object holds: an executor closed with tasks still queued or running (a
        caller that stopped reading results) must not keep them while its process lives, or every later executor
        in the same process (a test session, a notebook) would wait behind its own ticket forever."""
        for claim in self._claims.values():
            self._free(claim)
        self._claims.clear()

    def _free(self, claim: _Claim) -> None:
        for handle in claim.locks:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        claim.locks = []
        self._drop_ticket(claim)

    def note(self, task: Task) -> HostLane:
        """What a result records about the host lane: the wait, or why there was no lock."""
        if self.unavailable:
            return HostLane(lock="none", why=self.unavailable)
        return HostLane(lock="held", waited_s=round(self.waited.pop(task.key, 0.0), 3))

    # ---- tickets and locks ------------------------------------------------------------------------
    def _take_ticket(self, claim: _Claim) -> None:
        stamp = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        claim.ticket = self.directory / f"ticket-{stamp}-{'+'.join(claim.names)}"
        claim.ticket_handle = _open(claim.ticket)
        fcntl.flock(claim.ticket_handle, fcntl.LOCK_EX)

    def _drop_ticket(self, claim: _Claim) -> None:
        if claim.ticket_handle is not None:
            claim.ticket_handle.close()
            claim.ticket_handle = None
        if claim.ticket is not None:
            claim.ticket.unlink(missing_ok=True)
            claim.ticket = None

    def _first_in_line(self, claim: _Claim) -> bool:
        """Whether no live ticket older than ``claim``'s waits for one of its lock files."""
        assert claim.ticket is not None
        mine = claim.ticket.name
        for other in self.directory.glob("ticket-*"):
            if other.name >= mine or not set(other.name.split("-", 4)[-1].split("+")) & set(claim.names):
                continue
            with contextlib.suppress(OSError), open(other, "a") as handle:
                if _try_lock(handle):  # nobody holds it: its waiter died
                    other.unlink(missing_ok=True)
                    continue
            claim.holder = f"an earlier waiter (edgebench pid {other.name.split('-')[2]})"
            return False
        return True

    def _lock_all(self, claim: _Claim) -> bool:
        """All of ``claim``'s lock files, or none (no lock is held while waiting for another)."""
        taken = []
        for name in claim.names:
            handle = _open(self.directory / f"{name}.lock")
            if not _try_lock(handle):
                handle.seek(0)
                claim.holder = handle.read().strip() or "another process"
                handle.close()
                for held in taken:
                    fcntl.flock(held, fcntl.LOCK_UN)
                    held.close()
                return False
            taken.append(handle)
        for handle in taken:
            handle.seek(0)
            handle.truncate()
            handle.write(f"edgebench pid {os.getpid()}")
            handle.flush()
        claim.locks = taken
        return True

    def _show_wait(self, task: Task | LockHolder, claim: _Claim) -> None:
        """Say a task waits for another process's timed windows: a warning the first time per holder, then at INFO
        (a sweep beside another run waited once per job: 236 warning lines in one `compare --remeasure`)."""
        if not claim.warned:
            claim.warned = True
            first = claim.loud = claim.holder not in self._holders_named
            self._holders_named.add(claim.holder)
            log.log(logging.WARNING if first else logging.INFO,
                    "%s waits for the host's cores (%s): held by %s; timed windows of two processes never overlap%s",
                    task.key, ", ".join(claim.names), claim.holder,
                    " (later waits for it are logged at INFO)" if first else "")
