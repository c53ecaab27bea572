"""Opening ONNX Runtime sessions one way, for timing (the backends) and for per-layer profiling alike."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebench.errors import REEXPORT_HINT, ArtifactError

if TYPE_CHECKING:  # imported where a session is opened: its import costs a worker that never opens one
    import onnxruntime as ort

#: ONNX Runtime's CPU execution provider: every session's fallback, and where a GPU provider leaves nodes it has no kernel for
CPU_PROVIDER = "CPUExecutionProvider"


#: ORT's graph optimisation levels by the names ``backend_options.onnxruntime.graph_optimization_level`` takes
LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class GraphPasses:
    """Which of ORT's graph optimisations a session applies: every level by default, as an application's session
    does; a target may lower the level or leave passes out by name where one fails on a model (ORT 1.32's NCHWc
    layout pass crashes loading some fp16 models: README, "Runtimes")."""

    level: str = "all"
    disabled: tuple[str, ...] = ()

    @classmethod
    def of(cls, options: dict[str, Any]) -> GraphPasses:
        """From a target's validated ``backend_options.onnxruntime`` (or ``onnxruntime_cuda``)."""
        return cls(options.get("graph_optimization_level", "all"), tuple(options.get("disabled_optimizers", ())))


#: ORT's own defaults: every level, no pass left out
ORT_DEFAULTS = GraphPasses()


def make_session_options(threads: int, passes: GraphPasses = ORT_DEFAULTS) -> ort.SessionOptions:
    """Session options used by every ORT backend: fixed intra-op threads, sequential graph, ``passes``' level."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[passes.level])
    return options


def open_session(artifact: Path, options: ort.SessionOptions, providers: list[Any],
                 passes: GraphPasses = ORT_DEFAULTS) -> ort.InferenceSession:
    """``ort.InferenceSession`` of ``artifact`` without ``passes``' disabled optimisers (an argument of the session,
    not of its options)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(artifact), options, providers=providers,
                                disabled_optimizers=list(passes.disabled) or None)


def create_ort_session(artifact: Path, threads: int, providers: list[str],
                       passes: GraphPasses = ORT_DEFAULTS) -> ort.InferenceSession:
    """Open ``artifact`` with ORT, turning a missing or corrupt file into an ArtifactError."""
    if not artifact.is_file():
        raise ArtifactError(f"ONNX model not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        return open_session(artifact, make_session_options(threads, passes), providers, passes)
    except Exception as exc:  # ORT raises its own exception types for bad protobufs
        raise ArtifactError(f"ONNX Runtime cannot load {artifact}: {exc} ({REEXPORT_HINT})") from exc
