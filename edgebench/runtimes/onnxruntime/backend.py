"""ONNX Runtime CPU backend (the CPU execution provider, fixed thread count)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.onnxruntime import ONNXRUNTIME
from edgebench.runtimes.onnxruntime.mixed_precision import METADATA_KEY
from edgebench.runtimes.onnxruntime.profile import node_placement, profile_onnxruntime
from edgebench.runtimes.onnxruntime.session import (
    CPU_PROVIDER,
    ORT_DEFAULTS,
    GraphOptions,
    create_ort_session,
    input_feed,
    session_crash_hint,
)


class OnnxRuntimeSession(Session):
    """Wraps an ``InferenceSession``; the input/output names are read once at load."""

    def __init__(self, session, artifact: Path, threads: int, precision: str = "fp32",  # ort.InferenceSession
                 passes: GraphOptions = ORT_DEFAULTS) -> None:
        self._session, self._artifact, self._threads, self._precision = session, artifact, threads, precision
        self._passes = passes  # the graph optimisations of every second session (profiles, fp16 and placement checks)
        self._outputs = [session.get_outputs()[0].name]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        out = self._session.run(self._outputs, input_feed(self._session, inputs))[0]  # fp16 outputs read as fp32
        return out.astype(np.float32, copy=False) if out.dtype == np.float16 else out

    def timed_call(self, batch: np.ndarray) -> Callable[[], object]:
        """The session's own call on ``batch`` already in the input's type (an application feeds it ready-made)."""
        feed, run, outputs = input_feed(self._session, batch), self._session.run, self._outputs
        return lambda: run(outputs, feed)[0]

    def input_dims(self) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) else None for d in self._session.get_inputs()[0].shape)

    def _providers(self) -> list[tuple[str, dict[str, Any]]]:
        """This session's execution providers with their options (device id), for a second session like it."""
        options = self._session.get_provider_options()
        return [(name, options.get(name, {})) for name in self._session.get_providers()]

    def details(self) -> dict[str, Any]:
        """The exporter's quantization record (QAT scales, mixed-precision decision) when the artifact has one; for
        an fp16 artifact, whether ORT kept its weights in fp16 or computes in fp32; on a GPU provider, which nodes
        ORT ran on which provider (one it has no kernel for runs on the CPU)."""
        record = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        out: dict[str, Any] = {"quantization": json.loads(record)} if record else {}
        if self._precision == "fp16":
            from edgebench.runtimes.onnxruntime.fp16 import fp16_execution

            out["fp16"] = fp16_execution(self._artifact, self._threads, self._providers(), self._passes)
        if self._session.get_providers()[0] != CPU_PROVIDER:
            out["placement"] = node_placement(self._artifact, self._example(), self._threads, self._providers(),
                                              self._passes)
        return out

    def _example(self) -> np.ndarray:
        """Zeros of the input's shape (batch 1 where a dimension is symbolic): enough to see where nodes run."""
        shape = [d if isinstance(d, int) else 1 for d in self._session.get_inputs()[0].shape]
        return np.zeros(shape, np.float32)

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """ORT session profiling in a second session on the same providers."""
        return profile_onnxruntime(self._artifact, batch, self._threads, runs=runs, providers=self._providers(),
                                   passes=self._passes)


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """CPUExecutionProvider; int8 QDQ models run its VNNI kernels, fp16 models its fp16 kernels where it has them."""

    Options = GraphOptions
    name = "onnxruntime"
    formats = ("onnx",)
    needs = (ONNXRUNTIME,)

    def crash_hint(self, error: str) -> str | None:
        return session_crash_hint(self.name, error)

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        passes = GraphOptions(**settings.options)
        session = create_ort_session(artifact, settings.threads, [CPU_PROVIDER], passes)
        return OnnxRuntimeSession(session, artifact, settings.threads, settings.precision, passes)
