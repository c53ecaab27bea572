"""TensorRT backend: runs a serialized engine, or builds one from ONNX on the device itself.

Engines only run on the GPU/TensorRT version that built them, so remote Jetsons
receive the ONNX artifact and build at load (precision from the job; int8 from
the Q/DQ int8 ONNX). Buffers live in torch CUDA tensors; the copies and the
engine run on a stream of the session's own (on the legacy default stream
TensorRT adds synchronisations of its own to every enqueue), and ``sync`` waits
for that stream, so the harness's clock brackets the GPU work. TensorRT >= 8.5 uses the named-tensor API
(``execute_async_v3``), older JetPacks (Nano: 8.2) the bindings API.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.errors import ArtifactError
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.tensorrt import MAX_BATCH, TENSORRT
from edgebench.runtimes.torch import NVIDIA_DRIVER
from edgebench.runtimes.torch.cuda import torch_device

log = logging.getLogger(__name__)


class TensorRTSession(Session):
    """One execution context with the first input and output bound to GPU tensors."""

    def __init__(self, trt: Any, engine: Any, device: Any, build_s: float | None, onnx_path: Path | None) -> None:
        import torch

        self._trt, self._onnx_path = trt, onnx_path

        self._torch, self._engine, self._device = torch, engine, device
        self._details = {"engine_build_s": build_s, "tensorrt": trt.__version__}
        self._context = engine.create_execution_context()
        #: where the copies and the engine run (CUDA events recorded on it bracket the GPU work)
        self.stream = torch.cuda.Stream(device)
        self._v3 = hasattr(self._context, "execute_async_v3")
        names = [engine.get_tensor_name(i) if self._v3 else engine.get_binding_name(i)
                 for i in range(engine.num_io_tensors if self._v3 else engine.num_bindings)]
        if self._v3:
            is_input = [engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        else:
            is_input = [engine.binding_is_input(i) for i in range(len(names))]
        self._input = names[is_input.index(True)]
        self._output = names[is_input.index(False)]
        self._trt_dtype = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8}
        self._batch = 0
        self._x: Any = None
        self._y: Any = None

    def _dtype(self, name: str) -> Any:
        engine = self._engine
        kind = engine.get_tensor_dtype(name) if self._v3 else engine.get_binding_dtype(engine.get_binding_index(name))
        return self._trt_dtype[kind]

    def _shape(self, name: str) -> tuple[int, ...]:
        context = self._context
        if self._v3:
            return tuple(context.get_tensor_shape(name))
        return tuple(context.get_binding_shape(self._engine.get_binding_index(name)))

    def _bind(self, shape: tuple[int, ...]) -> None:
        """(Re)allocate the GPU buffers for a new batch size."""
        torch, context = self._torch, self._context
        if self._v3:
            accepted = context.set_input_shape(self._input, shape)
        else:
            accepted = context.set_binding_shape(self._engine.get_binding_index(self._input), shape)
        if not accepted:
            raise ArtifactError(f"the TensorRT engine does not take input shape {shape}: engines edgebench builds take "
                                f"batches of 1 to {MAX_BATCH} (measurement.batch_size)")
        self._x = torch.empty(shape, dtype=self._dtype(self._input), device=self._device)
        self._y = torch.empty(self._shape(self._output), dtype=self._dtype(self._output), device=self._device)
        if self._v3:
            context.set_tensor_address(self._input, self._x.data_ptr())
            context.set_tensor_address(self._output, self._y.data_ptr())
        self._batch = shape[0]

    def input_dims(self) -> tuple[int | None, ...]:
        engine = self._engine
        shape = engine.get_tensor_shape(self._input) if self._v3 else \
            engine.get_binding_shape(engine.get_binding_index(self._input))
        return tuple(int(d) if d >= 0 else None for d in shape)  # -1: a dynamic dimension

    def run(self, inputs: np.ndarray) -> np.ndarray:
        if inputs.shape[0] != self._batch:
            self._bind(tuple(inputs.shape))
        with self._torch.cuda.stream(self.stream):  # copies and engine in order on one stream
            self._x.copy_(self._torch.from_numpy(inputs), non_blocking=False)
            if self._v3:
                ok = self._context.execute_async_v3(self.stream.cuda_stream)
            else:
                ok = self._context.execute_async_v2([self._x.data_ptr(), self._y.data_ptr()], self.stream.cuda_stream)
            if not ok:
                raise RuntimeError("TensorRT execution failed (see the TensorRT log)")
            return self._y.float().cpu().numpy()

    def details(self) -> dict[str, Any]:
        """Engine build time on this device (None when a prebuilt engine was loaded)."""
        return self._details

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """IProfiler layer times; engine layers map to PyTorch layers when the engine was built from ONNX here."""
        from edgebench.profile.onnx_layers import OnnxLayerMap
        from edgebench.runtimes.tensorrt.profile import profile_tensorrt

        layers = OnnxLayerMap.from_file(self._onnx_path) if self._onnx_path is not None else None

        def run() -> None:
            self.run(batch)
            self.sync()

        return profile_tensorrt(self._trt, self._context, run, layers, runs=runs)

    def sync(self) -> None:
        self.stream.synchronize()


@BACKENDS.register("tensorrt")
class TensorRTBackend(Backend):
    """Serialized ``.engine`` files, or ``.onnx`` built on this GPU at load (fp32/fp16/int8)."""

    name = "tensorrt"
    formats = ("tensorrt", "onnx")
    builds_from_fp32 = ("fp16",)
    needs = (TENSORRT, NVIDIA_DRIVER)

    def available(self) -> str | None:
        from edgebench.runtimes.tensorrt.export import tensorrt_unavailable_reason

        return tensorrt_unavailable_reason()

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        from edgebench.runtimes.tensorrt.export import build_engine, import_tensorrt

        trt = import_tensorrt()
        if not artifact.is_file():
            raise ArtifactError(f"TensorRT input not found: {artifact}; re-run the export stage")
        if artifact.suffix == ".onnx":  # int8 needs the Q/DQ (int8) ONNX artifact: no calibration data here
            serialized, build_s = build_engine(artifact, settings.precision)
            log.info("built %s engine on the device in %.1f s (part of load_ms)", settings.precision, build_s)
        else:
            serialized, build_s = artifact.read_bytes(), None
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(serialized)
        if engine is None:
            raise ArtifactError(
                f"TensorRT cannot deserialize {artifact}: engines only run on the GPU and TensorRT version that "
                "built them; re-export on this machine or pass the ONNX artifact"
            )
        return TensorRTSession(trt, engine, torch_device(settings), build_s,
                               artifact if artifact.suffix == ".onnx" else None)
