"""Ending a worker together with every process it started.

A runtime may start helper processes (a compiler, a server, a converter's subprocess); killing only the
worker leaves them running after a timeout, holding cores and memory that later measurements then share.
The tree is frozen top-down before anything is killed, so no process can start another in between.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def _children(pid: int) -> list[int]:
    """``pid``'s direct children from /proc (Linux); none where /proc does not list them."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (a process already gone is skipped)."""
    frozen: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(current, signal.SIGSTOP)  # stopped, it cannot fork: its children list is final
            frozen.append(current)
            pending += [child for child in _children(current) if child not in frozen]
    for stopped in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)
