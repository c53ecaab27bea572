"""Pinned side-by-side lanes (``measurement.parallel_lanes``): one single-thread measurement per core at once.

A single-thread measurement leaves the host's other cores idle. Measuring on each core at once is honest only
when a measurement does not slow its neighbour: separate physical cores (an SMT sibling shares the core's
execution units), and caches and memory bandwidth that the two do not fight over. So before a run uses the
lanes it checks both: no two lane cores may be SMT siblings (from the kernel's CPU topology), and the same
artifact is timed on the first core alone, beside busy neighbours (the same artifact run in a loop on every
other lane core), and alone again; the lanes are refused, with the figures, when the p50 beside the
neighbours differs from the p50 alone by more than the measurement's precision (or when the two windows alone
differ by that much: then the machine's own noise cannot tell). Every process is pinned with
``os.sched_setaffinity`` to its one core.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebench.job import MeasureSettings, thread_env

if TYPE_CHECKING:
    from edgebench.prune.allocation.latency.table import LayerShape

#: how long a neighbour may take to load its session before the check gives up on it
NEIGHBOUR_START_S = 60.0
#: weights up to this size stay in a core's own cache (L2 is 1-2 MiB a core on the machines measured here)
CACHED_BYTES = 1 << 20


@dataclass(frozen=True)
class SideBySide:
    """The interference check's verdict and figures (p50 in ms; None where not measured)."""

    cores: tuple[int, ...]
    ok: bool
    reason: str
    alone_ms: float | None = None
    beside_ms: float | None = None
    alone_again_ms: float | None = None

    @property
    def slowdown(self) -> float | None:
        """p50 beside the neighbours over the p50 alone (the two windows alone, averaged)."""
        if self.alone_ms is None or self.beside_ms is None or self.alone_again_ms is None:
            return None
        return self.beside_ms / ((self.alone_ms + self.alone_again_ms) / 2)


def lane_cores() -> list[int]:
    """The cores this process may run on (its affinity mask), one lane each."""
    return sorted(os.sched_getaffinity(0))


def smt_siblings(cores: list[int], root: Path = Path("/sys/devices/system/cpu")) -> list[tuple[int, int]]:
    """Pairs of ``cores`` that are SMT siblings (hyper-threads of one physical core), from the kernel's topology."""
    pairs = []
    for core in cores:
        path = root / f"cpu{core}" / "topology" / "thread_siblings_list"
        if not path.is_file():
            continue
        siblings = set(_cpu_list(path.read_text()))
        pairs += [(core, other) for other in cores if other > core and other in siblings]
    return pairs


def _cpu_list(text: str) -> list[int]:
    """``0-3,8`` -> [0, 1, 2, 3, 8] (the kernel's CPU list format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high or low) + 1)) if low else []
    return out


def _session(core: int, artifact: str, backend: str, options: dict[str, Any]) -> Any:
    os.sched_setaffinity(0, {core})
    os.environ.update(thread_env(1))
    from edgebench.runtimes.base import BackendSettings, get_backend

    return get_backend(backend).load(Path(artifact), BackendSettings(threads=1, options=options))


def _timed(core: int, artifact: str, backend: str, options: dict[str, Any], batch: np.ndarray,
           timing: dict[str, Any], out: Any) -> None:
    """Child process: the artifact's p50 (ms) on ``core``, put on ``out``."""
    from edgebench.measure.harness import time_session

    session = _session(core, artifact, backend, options)
    try:
        out.put(float(np.median(time_session(session, batch, MeasureSettings(**timing)).samples_ns)) / 1e6)
    finally:
        session.close()


def _busy(core: int, artifact: str, backend: str, options: dict[str, Any], batch: np.ndarray, running: Any,
          stop: Any) -> None:
    """Child process: run the artifact on ``core`` in a loop until ``stop`` is set (a busy neighbour)."""
    session = _session(core, artifact, backend, options)
    running.set()
    while not stop.is_set():
        session.run(batch)
    session.close()


def _p50_on(ctx: Any, core: int, args: tuple[Any, ...]) -> float:
    out = ctx.Queue()
    child = ctx.Process(target=_timed, args=(core, *args, out), daemon=True)
    child.start()
    try:
        return float(out.get(timeout=600))
    finally:
        child.join(timeout=10)


def stand_in(weight_bytes: int) -> tuple[LayerShape, tuple[int, ...]]:
    """The layer the check times for a model of ``weight_bytes`` fp32 weights, and its input's shape: a small conv,
    which stays in a core's own cache, or a square Gemm reading as many weight bytes, for a model whose weights do
    not fit there: a busy neighbour slows most what streams through the shared cache and memory (in a test session a
    VGG-16 at CIFAR shape passed the small conv's check yet ran 5 % slower beside one)."""
    from edgebench.prune.allocation.latency.table import LayerShape

    if weight_bytes <= CACHED_BYTES:
        return LayerShape("Conv", 32, 32, (3, 3), (1, 1), (1, 1), (16, 16)), (1, 32, 16, 16)
    side = math.ceil(math.sqrt(weight_bytes / 4))
    return LayerShape("Gemm", side, side), (1, side)


def interference_check(cores: list[int], artifact: Path, backend: str, batch: np.ndarray, timing: MeasureSettings,
                       options: dict[str, Any] | None = None) -> SideBySide:
    """Whether single-thread measurements on ``cores`` at once are as precise as one alone (module docstring)."""
    lanes = tuple(cores)
    if len(cores) < 2:
        return SideBySide(lanes, False, f"only {len(cores)} core available to this process: nothing to run beside")
    siblings = smt_siblings(cores)
    if siblings:
        pairs = ", ".join(f"{a}+{b}" for a, b in siblings)
        return SideBySide(lanes, False, f"cores {pairs} are SMT siblings (one physical core's hyper-threads share "
                          "its execution units): pin lanes to one thread per physical core")
    precision = timing.precision or 0.01
    ctx = mp.get_context("spawn")
    args = (str(artifact), backend, dict(options or {}), batch, timing.model_dump())
    first, others = cores[0], cores[1:]
    alone = _p50_on(ctx, first, args)
    running = [ctx.Event() for _ in others]
    stop = ctx.Event()
    neighbours = [ctx.Process(target=_busy, args=(core, *args[:4], ready, stop), daemon=True)
                  for core, ready in zip(others, running)]
    for process in neighbours:
        process.start()
    try:
        if not all(ready.wait(NEIGHBOUR_START_S) for ready in running):
            return SideBySide(lanes, False, f"a busy neighbour did not start within {NEIGHBOUR_START_S:.0f} s")
        time.sleep(0.2)  # the neighbours past their first runs
        beside = _p50_on(ctx, first, args)
    finally:
        stop.set()
        for process in neighbours:
            process.join(timeout=10)
            with contextlib.suppress(Exception):
                process.kill()
    again = _p50_on(ctx, first, args)
    figures = f"p50 alone {alone:.4f} / {again:.4f} ms, beside busy neighbours on cores " \
              f"{','.join(map(str, others))} {beside:.4f} ms"
    if abs(again / alone - 1) > precision:
        return SideBySide(lanes, False, f"the machine's own noise exceeds the precision {precision:.1%} "
                          f"(two windows alone differ by {again / alone - 1:+.1%}; {figures}): cannot tell "
                          "whether neighbours interfere", alone, beside, again)
    slowdown = beside / ((alone + again) / 2) - 1
    if abs(slowdown) > precision:
        return SideBySide(lanes, False, f"a busy neighbour moves the p50 by {slowdown:+.1%}, more than the "
                          f"precision {precision:.1%} ({figures})", alone, beside, again)
    return SideBySide(lanes, True, f"p50 beside busy neighbours within {slowdown:+.1%} of alone ({figures})",
                      alone, beside, again)
