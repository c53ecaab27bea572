"""Opening ONNX Runtime sessions one way, for timing (the backends) and for per-layer profiling alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgebench.errors import REEXPORT_HINT, ArtifactError

if TYPE_CHECKING:  # imported where a session is opened: its import costs a worker that never opens one
    import onnxruntime as ort

#: ONNX Runtime's CPU execution provider: every session's fallback, and where a GPU provider leaves nodes it has no kernel for
CPU_PROVIDER = "CPUExecutionProvider"


#: ORT's graph optimisation levels by the names ``backend_options.onnxruntime.graph_optimization_level`` takes
LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


class GraphOptions(BaseModel):
    """``backend_options.onnxruntime`` (and ``onnxruntime_cuda``) of a target: which of ORT's graph optimisations
    every session of the backend applies. Every level by default, as an application's session does; a target may
    lower it or leave passes out by name where one fails on a model (ORT 1.32's NCHWc layout pass crashes loading
    some fp16 models: README, "Runtimes")."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    graph_optimization_level: Literal["all", "extended", "basic", "disabled"] = Field(
        "all", description="ORT's GraphOptimizationLevel: all (ORT's default, with the CPU's NCHWc layout), "
                           "extended, basic or disabled")
    disabled_optimizers: tuple[str, ...] = Field(
        (), description="graph passes left out by name (e.g. NchwcTransformer, where it crashes loading a model)")


#: ORT's own defaults: every level, no pass left out
ORT_DEFAULTS = GraphOptions()


def session_crash_hint(backend: str, error: str) -> str | None:
    """The way round a crash while ORT builds its session (where its graph passes run), for ``backend``'s targets."""
    if "_create_inference_session" not in error:
        return None
    return (f"ONNX Runtime died building its session, where its graph optimisation passes run: a target with "
            f"backend_options: {{{backend}: {{disabled_optimizers: [NchwcTransformer]}}}} (or graph_optimization_level: "
            f"extended; `edgebench bench --option disabled_optimizers=[NchwcTransformer]`) may load the file (README, "
            f"Runtimes)")


def make_session_options(threads: int, passes: GraphOptions = ORT_DEFAULTS) -> ort.SessionOptions:
    """Session options used by every ORT backend: fixed intra-op threads, sequential graph, ``passes``' level."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[passes.graph_optimization_level])
    return options


def open_session(artifact: Path, options: ort.SessionOptions, providers: list[Any],
                 passes: GraphOptions = ORT_DEFAULTS) -> ort.InferenceSession:
    """``ort.InferenceSession`` of ``artifact`` without ``passes``' disabled optimisers (an argument of the session,
    not of its options)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(artifact), options, providers=providers,
                                disabled_optimizers=list(passes.disabled_optimizers) or None)


def input_feed(session: ort.InferenceSession, batch: np.ndarray) -> dict[str, np.ndarray]:
    """``batch`` as the session's one input takes it: a file another tool made may take float16 (an fp16 model with
    fp16 I/O)."""
    first = session.get_inputs()[0]
    return {first.name: batch.astype(np.float16 if first.type == "tensor(float16)" else np.float32, copy=False)}


def create_ort_session(artifact: Path, threads: int, providers: list[str],
                       passes: GraphOptions = ORT_DEFAULTS) -> ort.InferenceSession:
    """Open ``artifact`` with ORT, turning a missing or corrupt file into an ArtifactError."""
    if not artifact.is_file():
        raise ArtifactError(f"ONNX model not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        return open_session(artifact, make_session_options(threads, passes), providers, passes)
    except Exception as exc:  # ORT raises its own exception types for bad protobufs
        said = str(exc).replace(f"Load model from {artifact} failed:", "")  # the path once, and the reason in a summary
        raise ArtifactError(f"ONNX Runtime cannot load {artifact}: {said} ({REEXPORT_HINT})") from exc
