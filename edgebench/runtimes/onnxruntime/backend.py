"""ONNX Runtime CPU backend (the CPU execution provider, fixed thread count)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import ArtifactError
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.onnxruntime import ONNXRUNTIME
from edgebench.runtimes.onnxruntime.mixed_precision import METADATA_KEY


class OnnxRuntimeSession(Session):
    """Wraps an ``InferenceSession``; the input/output names are read once at load."""

    def __init__(self, session, artifact: Path, threads: int) -> None:  # onnxruntime.InferenceSession
        self._session, self._artifact, self._threads = session, artifact, threads
        self._input = session.get_inputs()[0].name
        self._outputs = [session.get_outputs()[0].name]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        return self._session.run(self._outputs, {self._input: inputs})[0]

    def details(self) -> dict[str, Any]:
        """The exporter's quantization record (QAT scales, mixed-precision decision) when the artifact has one."""
        record = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        return {"quantization": json.loads(record)} if record else {}

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """ORT session profiling in a second session on the same providers."""
        from edgebench.runtimes.onnxruntime.profile import profile_onnxruntime

        return profile_onnxruntime(self._artifact, batch, self._threads, runs=runs,
                                   providers=self._session.get_providers())


def make_session_options(threads: int):
    """Session options used by every ORT backend: fixed intra-op threads, sequential graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def create_ort_session(artifact: Path, threads: int, providers: list[str]):
    """Open ``artifact`` with ORT, turning a missing or corrupt file into an ArtifactError."""
    import onnxruntime as ort

    if not artifact.is_file():
        raise ArtifactError(f"ONNX model not found: {artifact}; re-run the export stage (edgebench run)")
    try:
        return ort.InferenceSession(str(artifact), make_session_options(threads), providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad protobufs
        raise ArtifactError(f"ONNX Runtime cannot load {artifact}: {exc}. Delete it and re-export.") from exc


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """CPUExecutionProvider; int8 QDQ models run its VNNI kernels."""

    name = "onnxruntime"
    formats = ("onnx",)
    needs = (ONNXRUNTIME,)

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        session = create_ort_session(artifact, settings.threads, ["CPUExecutionProvider"])
        return OnnxRuntimeSession(session, artifact, settings.threads)
