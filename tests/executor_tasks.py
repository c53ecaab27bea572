"""Task bodies for the executor tests: importable by name in spawned workers and in Ray workers."""

from __future__ import annotations

import os
import time

import numpy as np

from edgebench.measure.energy import EnergyMeter, EnergyReading
from edgebench.measure.memory import peak_rss_mb

_kept: list[np.ndarray] = []


def pid_after(seconds: float) -> int:
    """Sleep (a stand-in for a remote board's timed window) and say which process ran it."""
    time.sleep(seconds)
    return os.getpid()


def window_of(seconds: float) -> tuple[float, float]:
    """Hold a timed window of ``seconds`` and return its span in UNIX seconds."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def allocate_and_report_peak(megabytes: int, keep: bool = False) -> tuple[int, float]:
    """Touch ``megabytes`` of memory (kept alive if ``keep``) and return (pid, peak RSS MiB of this process)."""
    block = np.ones(megabytes * 1024 * 1024 // 8)
    if keep:
        _kept.append(block)
    del block
    return os.getpid(), peak_rss_mb()


def raise_noted(message: str) -> None:
    """Fail with a multi-line ``message`` and a Python 3.11 note (which a one-line summary must not pick)."""
    exc = ValueError(message)
    exc.add_note("a note added on the way up")
    raise exc


def torch_threads() -> int:
    """The size of torch's intra-op pool in this worker."""
    import torch

    return torch.get_num_threads()


#: pids of the processes that ran ``fill_once`` (a ``module:function`` preload entry)
_filled_by: list[int] = []


def fill_once() -> None:
    """A preload function: records the process that called it."""
    _filled_by.append(os.getpid())


def filled_by() -> tuple[int, list[int]]:
    """This process's pid and the pids that had called ``fill_once`` before it ran (a forked child: its worker's)."""
    return os.getpid(), list(_filled_by)


def imported(*modules: str) -> dict[str, bool]:
    """Which of ``modules`` this worker process has imported."""
    import sys

    return {name: name in sys.modules for name in modules}


def _meet(here: str, other: str, wait_s: float) -> None:
    """Write ``here``, then wait until the task that writes ``other`` has started too.

    Two tasks that really run at once meet within seconds; two that run one after the other never meet, and the
    task fails saying so, instead of a parallelism check that depends on how fast each worker started.
    """
    from pathlib import Path

    Path(here).touch()
    deadline = time.monotonic() + wait_s
    while not Path(other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} was not written within {wait_s} s: the other task never ran beside this one")
        time.sleep(0.02)


def pid_after_meeting(here: str, other: str, seconds: float, wait_s: float = 90.0) -> int:
    """``pid_after(seconds)`` once the task writing ``other`` runs too (see ``_meet``)."""
    _meet(here, other, wait_s)
    return pid_after(seconds)


def cores_after_meeting(here: str, other: str, wait_s: float = 90.0) -> set[int]:
    """The cores this process may run on, once the task writing ``other`` runs too (see ``_meet``)."""
    _meet(here, other, wait_s)
    return os.sched_getaffinity(0)


def measure_after_meeting(job: object, here: str, other: str, wait_s: float = 90.0) -> object:
    """Measure ``job`` once the task writing ``other`` runs too (see ``_meet``)."""
    from edgebench.measure.worker import execute

    _meet(here, other, wait_s)
    return execute(job)


def main_script_imported() -> bool:
    """Whether this spawned worker ran the driver's script (imported as ``__mp_main__``; the script sets
    ``SCRIPT_RAN``: without the script that name is the interpreter's own main module)."""
    import sys

    return getattr(sys.modules.get("__mp_main__"), "SCRIPT_RAN", False)


class ConstantMeter(EnergyMeter):
    """Stands for a user's energy meter (its module is not edgebench's): a fixed 1 J a window."""

    source = "estimated:constant"
    min_window_s = 0.0

    def start(self) -> None:
        pass

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=1.0, seconds=1.0, source=self.source)


class GreedyMeter(ConstantMeter):
    """A meter that holds 300 MiB while it reads (a long power log parsed into lists): the meter's, not the job's."""

    def stop(self) -> EnergyReading:
        held = np.ones(300 * 1024 * 1024 // 8)
        del held
        return super().stop()


def segfault() -> None:
    """Die by SIGSEGV, as a runtime's native code does."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def exit_with(code: int) -> None:
    """A plug-in's code that ends its process: ``sys.exit`` (argparse) or ``os._exit``."""
    import sys

    if code < 0:
        os._exit(0)
    sys.exit(code)


def warn_twice_and_fail(fail: bool) -> int:
    """Log a warning under edgebench's logger twice (as a prune step repeated) and one under another library's."""
    import logging

    for _ in range(2):
        logging.getLogger("edgebench.prune.build").warning("asked %d%%, removed %d%%", 10, 22)
    logging.getLogger("somelib").warning("not edgebench's")
    if fail:
        raise ValueError("after warning")
    return os.getpid()
