"""Running a task in a child forked from a clean worker, so the task's memory is its own.

A measurement worker imports its runtime once and then never runs a task itself: each task runs in a
child forked from it, which exits afterwards. The kernel starts a forked child's high-water mark (VmHWM)
at what it has resident, the worker's imports, so its peak RSS is the runtime's import plus what this
task added, whatever tasks the worker ran before (a reset of the high-water mark in a long-lived process
keeps whatever the earlier tasks left resident). The worker passes the child's pickled outcome on unread,
so its own heap does not grow with results.

A child killed by a signal takes the worker down with the same signal, and a child that exits without a
result takes it down with the same code, so the executor records a crash exactly as before; a request for
the stacks of a hung task is passed on to the child. A Ray worker, whose death Ray reports without the signal
or the stack, survives its child instead: the crash becomes a failed outcome with the same error and the child's
output (its faulthandler stack). The child dies of a fatal signal by the default action after faulthandler's
dump, never by a handler it inherited (Ray's took its Ray worker down with it).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import itertools
import os
import pickle
import signal
import socket
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from typing import Any

from edgebench.executor.inprocess import Outcome, run_task

PR_SET_PDEATHSIG = 1
#: the executor sends this to a hung worker before killing it: the worker writes every thread's stack
STACK_DUMP_SIGNAL = signal.SIGUSR1
#: the child's exit code when it failed before it could send a result
NO_RESULT_EXIT = 70
#: the signals faulthandler dumps the stack for
FATAL_SIGNALS = (signal.SIGSEGV, signal.SIGFPE, signal.SIGABRT, signal.SIGBUS, signal.SIGILL)

_child_pid = 0


def outcome_bytes(outcome: Outcome) -> bytes:
    """``outcome`` pickled; a value that cannot be pickled becomes a failed outcome saying so."""
    try:
        return pickle.dumps(outcome)
    except Exception as exc:  # e.g. a build returning an open file
        return pickle.dumps(Outcome("failed", error=f"the task's result cannot be sent back: {exc}",
                                    started=outcome.started, ended=outcome.ended))


def forward_stack_dumps() -> None:
    """In the worker: pass a stack-dump request on to the running child (the worker's own stack says nothing)."""

    def forward(signum: int, _frame: object) -> None:
        if _child_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(_child_pid, signum)

    signal.signal(STACK_DUMP_SIGNAL, forward)


def run_forked(fn: Callable[..., Any], args: tuple[Any, ...], cpus: frozenset[int] | None = None,
               survive: bool = False) -> bytes:
    """Run ``fn(*args)`` in a forked child, pinned to ``cpus`` when given (a Ray worker serves other tasks after
    this one: only the child is pinned); return its pickled :class:`Outcome` (see the module docstring). With
    ``survive`` a child that dies is a failed outcome, not this process's death."""
    global _child_pid
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    output = tempfile.TemporaryFile() if survive else None  # noqa: SIM115 - closed below, after the child is gone
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(fn, args, write_fd, cpus, None if output is None else output.fileno())
    os.close(write_fd)
    _child_pid = pid
    try:
        with os.fdopen(read_fd, "rb") as source:
            payload = source.read()
        _, status = os.waitpid(pid, 0)
    finally:
        _child_pid = 0
    if output is not None:
        with output:
            output.seek(0)
            written = output.read()
        with os.fdopen(os.dup(2), "wb") as stderr:  # into this worker's own log, as a local worker's child writes
            stderr.write(written)
        if payload and not os.WIFSIGNALED(status):
            return payload
        return pickle.dumps(_crashed(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status),
                                     written))
    if os.WIFSIGNALED(status):
        _die_by(os.WTERMSIG(status))
    if not payload:
        os._exit(os.WEXITSTATUS(status) or NO_RESULT_EXIT)
    return payload


def _crashed(code: int, output: bytes) -> Outcome:
    """The outcome of a child that ended with ``code`` (-signal) and no result, having written ``output``."""
    from edgebench.measure.worker import stderr_tail

    tail = stderr_tail(output) or ""
    return Outcome("failed", error=crash_error(exit_reason(code or NO_RESULT_EXIT), tail), detail=tail or None,
                   host=socket.gethostname(), pid=os.getpid())


def exit_reason(code: int | None) -> str:
    """Why a worker (or a measurement's forked child) ended with exit ``code`` (-signal) and no result."""
    if code is not None and code < 0:
        sig = signal.Signals(-code)
        return f"worker killed by {sig.name} ({signal.strsignal(sig)})"
    if code in (0, NO_RESULT_EXIT):  # the worker, or a measurement's forked child, ended without writing a result
        return f"worker exited with code {code}: the task's process ended without a result (os._exit in its code?)"
    return f"worker exited with code {code}"


def crash_error(reason: str, tail: str) -> str:
    """``reason`` with where the dead process was: the innermost frame of a faulthandler stack in ``tail`` (what it
    wrote last) and, where that frame is Python's standard library's, the innermost one outside it that called it (a
    plug-in's ctypes call was named at ctypes' own string_at alone, not at the plug-in's line); else its last lines."""
    lines = tail.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if "most recent call first" in line), None)
    if start is None:
        last = " | ".join(line.strip() for line in lines[-3:])
        return f"{reason}: {last}" if last else reason
    frames = [line.strip() for line in itertools.takewhile(lambda line: line.strip().startswith("File "), lines[start:])]
    stdlib = f'File "{sysconfig.get_paths()["stdlib"]}{os.sep}'
    innermost = frames[0] if frames else lines[start].strip() if start < len(lines) else ""  # "<no Python frame>"
    caller = next((frame for frame in frames if not frame.startswith(stdlib)), None)
    where = f"{innermost}, called from {caller}" if frames and caller and caller != innermost else innermost
    return f"{reason}: {where}" if where else reason


def _child(fn: Callable[..., Any], args: tuple[Any, ...], write_fd: int, cpus: frozenset[int] | None,
           output_fd: int | None) -> None:
    """The child's whole life: run the task, write the outcome, exit without the worker's clean-up."""
    code = NO_RESULT_EXIT
    try:
        with contextlib.suppress(OSError, AttributeError):  # dies with its worker (a timeout kills the worker)
            ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if output_fd is not None:
            os.dup2(output_fd, 1)
            os.dup2(output_fd, 2)
        faulthandler.disable()  # puts back the handlers it found: then the default action replaces them
        for signum in FATAL_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        # to fd 2, the output the worker reads back (a Ray worker's sys.stderr may be another file)
        faulthandler.enable(file=2, all_threads=True)  # the stack, then death by the signal itself
        faulthandler.register(STACK_DUMP_SIGNAL, file=2, all_threads=True)
        try:
            if cpus:  # before the task starts a runtime's threads: they inherit the mask
                os.sched_setaffinity(0, cpus)
        except OSError as exc:
            outcome = Outcome("failed", error=f"cannot pin the task to cores {sorted(cpus or ())}: {exc} (this "
                              f"process may use cores {sorted(os.sched_getaffinity(0))})")
        else:
            outcome = run_task(fn, args, reset_peak=False)  # a new process: its high-water mark started at the fork
        outcome.pid = os.getppid()  # where it ran, for the executor: the warm worker (a child lives one task)
        with os.fdopen(write_fd, "wb") as sink:
            sink.write(outcome_bytes(outcome))
        code = 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_by(signum: int) -> None:
    """End this worker by ``signum``, as its child ended, with nothing of its own written to the log."""
    faulthandler.disable()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):  # their handlers cannot be set (nor changed from the default)
        signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal whose default is not to terminate
