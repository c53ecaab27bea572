"""Running one task inside a worker process (a warm local worker or a Ray worker).

In a worker that runs tasks itself (builds, exports) peak RSS is made per task as far as a long-lived
process allows: before each task the kernel's high-water mark (VmHWM) is reset to the current RSS by writing
5 to /proc/self/clear_refs, after the previous task's garbage is collected and returned to the OS. What
earlier tasks left resident still counts, so measurements run in forked children instead (``forked``).
Where the reset is refused (not Linux, or a kernel without it), the worker says so and the executor gives
each such task's successor a fresh process.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebench.errors import summarize
from edgebench.measure.memory import status_mb

CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel does not allow it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # give freed heap back: the reset starts from what is in use
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float | None:
    """Resident set size of this process in MiB (None where /proc is missing)."""
    return status_mb("VmRSS")


@dataclass
class Outcome:
    """What one task did in a worker; plain data so it crosses a pipe or Ray's object store."""

    status: str
    value: Any = None
    error: str | None = None
    detail: str | None = None
    started: float = 0.0
    ended: float = 0.0
    rss_mb: float | None = None
    peak_reset: bool = False
    host: str = ""
    #: the Ray node that ran it (None outside Ray)
    node: str | None = None
    pid: int = 0
    #: what edgebench's own loggers warned during the task (the worker's log is not the user's console)
    warnings: list[str] = field(default_factory=list)


class _Warnings(logging.Handler):
    """Collects the messages of the WARNING-and-above records edgebench logs during one task."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if line not in self.lines:
            self.lines.append(line)


def run_task(fn: Callable[..., Any], args: tuple[Any, ...], reset_peak: bool = True) -> Outcome:
    """Run ``fn(*args)`` here; an exception becomes a failed outcome carrying its traceback.

    ``reset_peak=False`` where the process is new to this task (a forked child): its high-water mark already
    starts at what it has resident, and the reset's garbage collection would cost a forked child tens of
    milliseconds of copied pages (75-80 ms per measurement on the ONNX Runtime worker); and for an untimed task
    (a build, an export), whose peak nobody reads: in a worker that has imported torch and litert-torch the
    collection took 0.4 s, longer than most of the default run's exports themselves.
    """
    peak_reset = reset_peak_rss() if reset_peak else True
    warned, logger = _Warnings(), logging.getLogger("edgebench")
    logger.addHandler(warned)
    started = time.time()
    try:
        value = fn(*args)
        outcome = Outcome("ok", value=value)
    except Exception as exc:  # any task error is data for the sweep, not a reason to stop the worker
        outcome = Outcome("failed", error=summarize(exc), detail=traceback.format_exc())
    except SystemExit as exc:  # a plug-in that calls sys.exit: that task fails, saying so, and the worker lives on
        outcome = Outcome("failed", error=f"the task called sys.exit({exc.code})", detail=traceback.format_exc())
    finally:
        logger.removeHandler(warned)
    outcome.started, outcome.ended = started, time.time()
    outcome.warnings = warned.lines
    outcome.rss_mb, outcome.peak_reset = current_rss_mb(), peak_reset
    outcome.host, outcome.pid = socket.gethostname(), os.getpid()
    return outcome
