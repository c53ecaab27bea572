"""OpenVINO CPU backend: one compiled model per batch size, threads and streams from the target.

OpenVINO compiles a static-shape model faster than a dynamic one, so the batch
the target asks for is fixed at load; a call with another batch (the accuracy
pass's last chunk) compiles that shape once more and keeps it. The target's
``threads`` become ``INFERENCE_NUM_THREADS``; ``backend_options.openvino.streams``
(default 1: single-stream latency) becomes ``NUM_STREAMS``. OpenVINO gives each stream at least one
thread, so more streams than threads run as that many streams.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgebench.errors import require_module
from edgebench.profile.table import LayerProfile, not_available
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.onnxruntime.mixed_precision import read_decision
from edgebench.runtimes.openvino import OPENVINO
from edgebench.runtimes.openvino.compile import STREAMS, THREADS, compile_config, compile_for_batch, infer, read_onnx
from edgebench.runtimes.openvino.ir import partial_dims

log = logging.getLogger(__name__)

class OpenVinoSession(Session):
    """A synchronous infer request per compiled batch size; numpy float32 images in (NCHW, or NHWC for an IR
    that takes them so), float32 logits out."""

    def __init__(self, core: Any, model: Any, settings: BackendSettings, artifact: Path) -> None:
        self._core, self._model, self._settings, self._artifact = core, model, settings, artifact
        self._config = compile_config(settings)
        self._requests: dict[int, Any] = {}
        self._request(settings.batch_size)

    def _request(self, batch: int) -> Any:
        if batch not in self._requests:
            self._requests[batch] = compile_for_batch(self._core, self._model, batch, self._config).create_infer_request()
        return self._requests[batch]

    def run(self, inputs: np.ndarray) -> np.ndarray:
        request = self._request(inputs.shape[0])
        infer(request, inputs)
        return request.get_output_tensor(0).data.astype(np.float32, copy=True)

    def input_dims(self) -> tuple[int | None, ...]:
        return partial_dims(self._model.input(0).get_partial_shape())

    def details(self) -> dict[str, Any]:
        """OpenVINO version, the compiled streams/threads, and the precisions its kernels actually run in."""
        import openvino as ov

        compiled = next(iter(self._requests.values())).get_compiled_model()
        precisions: dict[str, int] = {}
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str).startswith(("Convolution", "FullyConnected", "GroupConvolution")):
                runtime = info["runtimePrecision"].astype(str)
                precisions[runtime] = precisions.get(runtime, 0) + 1
        record = read_decision(self._artifact) if self._artifact.suffix == ".onnx" else None  # an IR has none
        return {
            "openvino": ov.__version__,
            "threads": int(compiled.get_property(THREADS)),
            "streams": int(compiled.get_property(STREAMS)),
            "conv_fc_runtime_precisions": precisions,
            **({"quantization": record} if record else {}),
        }

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """The CPU plugin's performance counters, from a second compiled model with PERF_COUNT on."""
        from edgebench.runtimes.openvino.profile import profile_openvino

        if self._artifact.suffix != ".onnx":
            return not_available("openvino", "an OpenVINO IR has no ONNX graph to map its nodes to the model's layers")
        return profile_openvino(self._artifact, batch, self._settings, runs=runs)

    def close(self) -> None:
        self._requests.clear()


@BACKENDS.register("openvino")
class OpenVinoBackend(Backend):
    """ONNX artifacts (fp32, QDQ int8) on OpenVINO's CPU plugin; OpenVINO IR files other tools wrote, as given."""

    class Options(BaseModel):
        """``backend_options.openvino`` of a target."""

        model_config = ConfigDict(extra="forbid")
        streams: int = Field(1, ge=1, description="NUM_STREAMS (parallel inference requests); at most threads")
        performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] | None = Field(
            None, description="PERFORMANCE_HINT (OpenVINO's three modes); threads and streams are set explicitly, "
                              "so none is needed")

    name = "openvino"
    formats = ("onnx", "openvino")  # the first is what edgebench exports for it
    needs = (OPENVINO,)
    builds_from_fp32 = ("fp16",)  # the inference precision hint on the fp32 ONNX

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        ov = require_module("openvino", "openvino", "backend 'openvino'")
        options = self.Options.model_validate(settings.options)
        settings = BackendSettings(settings.threads, settings.batch_size, settings.device, settings.precision,
                                   options.model_dump(exclude_none=True))
        core = ov.Core()
        return OpenVinoSession(core, read_onnx(core, artifact), settings, artifact)
