"""Opening ONNX Runtime sessions one way, for timing (the backends) and for per-layer profiling alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgebench.errors import REEXPORT_HINT, ArtifactError

if TYPE_CHECKING:  # imported where a session is opened: its import costs a worker that never opens one
    import onnxruntime as ort

#: ONNX Runtime's CPU execution provider: every session's fallback, and where a GPU provider leaves nodes it has no kernel for
CPU_PROVIDER = "CPUExecutionProvider"


def make_session_options(threads: int) -> ort.SessionOptions:
    """Session options used by every ORT backend: fixed intra-op threads, sequential graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def create_ort_session(artifact: Path, threads: int, providers: list[str]) -> ort.InferenceSession:
    """Open ``artifact`` with ORT, turning a missing or corrupt file into an ArtifactError."""
    import onnxruntime as ort

    if not artifact.is_file():
        raise ArtifactError(f"ONNX model not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        return ort.InferenceSession(str(artifact), make_session_options(threads), providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad protobufs
        raise ArtifactError(f"ONNX Runtime cannot load {artifact}: {exc} ({REEXPORT_HINT})") from exc
