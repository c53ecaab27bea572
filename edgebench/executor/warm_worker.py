"""The child side of a warm local worker: a spawned process that runs tasks sent over a pipe.

Kept free of heavy imports at module level. Its environment (thread counts) is set by ``LocalExecutor`` when it
spawns the process, before the driver's main module or any runtime is imported: runtimes size their thread pools
from it at import time.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import gc
import importlib
import multiprocessing.util
import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from edgebench.executor.forked import PR_SET_PDEATHSIG, STACK_DUMP_SIGNAL, forward_stack_dumps, outcome_bytes, run_forked
from edgebench.executor.inprocess import Outcome, run_task


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the sweep's process dies (a `kill -9` of the driver).

    The kernel ties this to the thread that started the worker: executors are driven from one thread
    that lives as long as the sweep.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the worker still exits on the pipe's EOF
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _redirect_output(log_path: str) -> None:
    """Send fd 1 and 2 (runtimes and converters write there from C/C++) to this worker's log."""
    log_file = open(log_path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the worker
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)


def ready() -> None:
    """A warm-up task: nothing to do, the worker imported its ``preload`` before taking it (see ``LocalExecutor``)."""


def _exit_now() -> None:
    """End the worker without the interpreter's teardown: unloading torch, TensorFlow and the like took ~0.7 s of
    CPU per worker at the end of every run. multiprocessing's own exit clean-up still runs: a semaphore a library
    made in a task is unlinked here, not reported as leaked by the driver's resource tracker."""
    multiprocessing.util._exit_function()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def worker_main(conn: Connection, preload: tuple[str, ...], log_path: str, parent_pid: int,
                cpus: frozenset[int] | None = None, fork_per_task: bool = False) -> None:
    """Serve tasks until the pipe closes or an empty message asks the worker to stop (then exit at once).

    With ``fork_per_task`` every task runs in a child forked from this worker (``forked``), which itself only
    ever imports ``preload``: a measurement's peak RSS then never carries what an earlier task left behind.
    """
    _die_with_parent(parent_pid)
    if cpus:  # before any runtime starts its threads: they inherit the mask
        os.sched_setaffinity(0, cpus)
    _redirect_output(log_path)
    faulthandler.enable()  # a SIGSEGV/SIGABRT leaves the Python stack in the log before the process dies
    if fork_per_task:
        forward_stack_dumps()
    else:
        faulthandler.register(STACK_DUMP_SIGNAL, all_threads=True)
    for entry in preload:
        module, _, function = entry.partition(":")
        try:
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
        except Exception:  # the task that needs it will fail with the real error
            traceback.print_exc()
    if fork_per_task:  # a forked child's collections then skip the imported objects instead of copying their pages
        gc.freeze()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            data = b""
        if not data:
            _exit_now()
        try:
            fn, args, timed = pickle.loads(data)
        except Exception as exc:
            payload = outcome_bytes(Outcome("failed", error=f"cannot unpickle the task: {exc}",
                                            detail=traceback.format_exc()))
        else:
            payload = run_forked(fn, args) if fork_per_task else outcome_bytes(run_task(fn, args, reset_peak=timed))
        sys.stdout.flush()
        sys.stderr.flush()
        conn.send_bytes(payload)
