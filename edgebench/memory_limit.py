"""A bound on how much address space a call into a library may add to this process.

torch-pruning's channel mapping grew without end on some graphs (an op it follows wrongly makes each pass expand
its index lists): 24 GiB, then the kernel's OOM killer ended the run with no word of why. Inside
:func:`bounded_growth` an allocation past the bound fails where it is made, as a ``MemoryError`` (or torch's own
allocation error), which the caller turns into a one-line refusal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psutil

#: address space a bounded call may add: far above what tracing a CNN of batch 1 takes
DEFAULT_GROWTH_BYTES = 8 * 2**30


@contextlib.contextmanager
def bounded_growth(growth_bytes: int | None = None) -> Iterator[None]:
    """Within the block, the process's address space (``RLIMIT_AS``) may grow by ``growth_bytes`` (default
    :data:`DEFAULT_GROWTH_BYTES`); a lower limit already set is kept, and a platform without the limit (Windows)
    or that refuses to set it runs the block unbounded."""
    growth_bytes = DEFAULT_GROWTH_BYTES if growth_bytes is None else growth_bytes
    try:
        import resource
    except ImportError:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = psutil.Process().memory_info().vms + growth_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        bounded = True
    except (ValueError, OSError):  # a platform that will not lower it (macOS): unbounded, as before
        bounded = False
    try:
        yield
    finally:
        if bounded:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
