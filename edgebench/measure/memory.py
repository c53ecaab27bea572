"""Memory figures of the measuring process."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (``VmHWM``, ``VmRSS``) in MiB; None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    On Linux VmHWM is read from /proc: ``ru_maxrss`` survives exec, so a worker
    forked from a large parent would report the parent's peak instead of its own.
    """
    if (peak_mb := status_mb("VmHWM")) is not None:
        return peak_mb
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
