"""LiteRT (TFLite) CPU backend: ai-edge-litert's Interpreter with XNNPACK and a fixed thread count.

int8 models keep int8 input/output tensors, so inputs are quantized and outputs
dequantized here with each tensor's scale and zero point (the harness always
passes float32 NCHW and expects float logits). Models converted with an NHWC
input (e.g. by another converter) get their input transposed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgebench.errors import REEXPORT_HINT, ArtifactError, require_module
from edgebench.input_layout import fits, in_input_layout
from edgebench.profile.table import LayerProfile
from edgebench.runtimes.base import BACKENDS, Backend, BackendSettings, Session
from edgebench.runtimes.litert import AI_EDGE_LITERT
from edgebench.runtimes.litert.sparse_inference import xnnpack_sparse_inference


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """float -> the tensor's integer dtype with its (scale, zero_point); float tensors pass through."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """The tensor's integers -> float32 logits; float tensors pass through."""
    if np.issubdtype(detail["dtype"], np.floating):
        return y.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTSession(Session):
    """One Interpreter; the input is resized when the batch differs from the model's (where the graph allows)."""

    def __init__(self, interpreter: Any, batch_size: int) -> None:
        self._interp = interpreter
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        self._details = {"xnnpack_sparse_inference": xnnpack_sparse_inference(interpreter)}
        fp16 = sum(1 for t in interpreter.get_tensor_details() if t["dtype"] == np.float16)
        if fp16:  # fp16 weights (the fp16 export): dequantized to fp32 by the CPU kernels
            self._details["fp16_weight_tensors"] = fp16
        if self._batch != batch_size:
            self._resize(batch_size)

    def details(self) -> dict[str, Any]:
        """Whether the model could run XNNPACK's sparse kernels, and why not; how many tensors the file holds in fp16."""
        return self._details

    def _resize(self, batch: int) -> None:
        shape = list(self._in["shape"])
        shape[0] = batch
        try:
            self._interp.resize_tensor_input(self._in["index"], shape)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            # litert-torch cannot convert a dynamic batch through Flatten, so most models are batch 1
            raise ArtifactError(
                f"this TFLite model has a fixed batch of {self._batch} and cannot run batch {batch} ({exc}); "
                "measure LiteRT in the single_stream scenario"
            ) from exc
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = batch

    def input_dims(self) -> tuple[int | None, ...]:
        return tuple(int(d) for d in self._in["shape"])

    def _layout(self, x: np.ndarray) -> np.ndarray:
        dims = self.input_dims()
        fed = in_input_layout(x, dims)  # the harness feeds the input's layout already; other callers feed NCHW
        if not fits(dims[1:], fed.shape[1:]):
            raise ArtifactError(f"input of shape {x.shape} fits neither NCHW nor NHWC {dims[1:]} of the TFLite model")
        return fed

    def _ready(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs`` as the input tensor takes them: its batch, layout and dtype (int8 quantized)."""
        if inputs.shape[0] != self._batch:
            self._resize(inputs.shape[0])
        return quantize_input(self._layout(inputs), self._in)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        self._interp.set_tensor(self._in["index"], self._ready(inputs))
        self._interp.invoke()
        return dequantize_output(self._interp.get_tensor(self._out["index"]), self._out)

    def timed_call(self, batch: np.ndarray) -> Callable[[], object]:
        """Copy the prepared input in, invoke, copy the output tensor out: what an application feeding the model
        its own dtype and layout pays. The Python conversions of ``run`` (numpy rounding and clipping of an int8
        input, the output details, dequantization: several microseconds, more than a small model's whole
        inference) stay out of the timed window."""
        ready = self._ready(batch)
        set_tensor, invoke, get_tensor = self._interp.set_tensor, self._interp.invoke, self._interp.get_tensor
        index_in, index_out = self._in["index"], self._out["index"]

        def call() -> np.ndarray:
            set_tensor(index_in, ready)
            invoke()
            return get_tensor(index_out)

        return call

    def profile_layers(self, batch: np.ndarray, runs: int) -> LayerProfile:
        """Not available from ai-edge-litert's Python API (see runtimes/litert/profile.py)."""
        from edgebench.runtimes.litert.profile import profile_litert

        return profile_litert()


def _load_failure(interpreter_module: Any, artifact: Path, exc: Exception, xnnpack: bool) -> str:
    """Why LiteRT cannot load ``artifact`` and what to do. Where XNNPACK refuses a file that LiteRT's built-in kernels
    load, a re-export would write the same file: the message says so and names the option that measures it."""
    detail = re.sub(r"(failed to create XNNPACK runtime)+", r"\1: ", str(exc)).strip()
    if xnnpack:
        builtin = interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter_module.Interpreter(model_path=str(artifact), experimental_op_resolver_type=builtin).allocate_tensors()
        except (ValueError, RuntimeError):
            pass
        else:
            return (f"XNNPACK cannot run {artifact} ({detail}); LiteRT's built-in kernels load it: to measure it with "
                    "them, set backend_options: {litert: {xnnpack: false}} on the target")
    return f"LiteRT cannot load {artifact}: {detail} ({REEXPORT_HINT})"


@BACKENDS.register("litert")
class LiteRTBackend(Backend):
    """ai-edge-litert Interpreter with XNNPACK (``xnnpack: false`` runs the built-in kernels instead)."""

    class Options(BaseModel):
        """``backend_options.litert`` of a target."""

        model_config = ConfigDict(extra="forbid")
        xnnpack: bool = Field(True, description="use the XNNPACK delegate (LiteRT's default CPU kernels)")

    name = "litert"
    formats = ("tflite",)
    needs = (AI_EDGE_LITERT,)

    def load(self, artifact: Path, settings: BackendSettings) -> Session:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        interpreter_module = require_module("ai_edge_litert.interpreter", "litert", "backend 'litert'", "ai-edge-litert")
        options = self.Options.model_validate(settings.options)
        if not artifact.is_file():
            raise ArtifactError(f"TFLite model not found: {artifact}; re-run the export stage")
        resolver_type = interpreter_module.OpResolverType
        resolver = resolver_type.AUTO if options.xnnpack else resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interpreter = interpreter_module.Interpreter(model_path=str(artifact), num_threads=settings.threads,
                                                         experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(_load_failure(interpreter_module, artifact, exc, options.xnnpack)) from exc
        return LiteRTSession(interpreter, settings.batch_size)
