"""fp16 ONNX: every float tensor of the fp32 model in fp16 (inputs and logits stay fp32), and what ONNX Runtime makes
of it.

ORT's providers run fp16 where they have fp16 kernels (CUDA, ARM CPUs with fp16 arithmetic). Where a provider has
none for an operator, ORT's graph optimiser inserts casts around it and runs it in fp32; on an x86 CPU that is every
Conv and Gemm, so such a session stores fp16 and computes fp32. :func:`fp16_execution` reads the session's own
optimised graph to say which happened, so a measured "fp16" point says whether any fp16 arithmetic ran.

The converter clamps what fp16 cannot hold instead of rounding it: a weight past 65504 becomes 65504 (rounding gives
inf). Each tensor it clamped so is logged and recorded in the file's quantization metadata (``fp16_clamped``), which
every measurement of it reports. (It also lifts magnitudes below fp16's smallest subnormal, 2^-24, to it instead of
0: a change of under 6e-8, not named.)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes.onnxruntime.mixed_precision import stamp
from edgebench.runtimes.onnxruntime.session import ORT_DEFAULTS, GraphOptions, make_session_options, open_session

log = logging.getLogger(__name__)


def convert_fp16(fp32_path: Path, out_path: Path) -> None:
    """Write ``fp32_path`` with fp16 weights and activations to ``out_path``; the model's input and output keep
    fp32 (a Cast at each end), so the harness feeds and reads it like the fp32 model."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    fp32 = onnx.load(str(fp32_path))
    before = _float_tensors(fp32.graph)  # the converter changes the model in place
    model = OnnxModel(convert_float_to_float16(fp32, keep_io_types=True))
    model.topological_sort()  # the converter appends the input's Cast after the nodes that read it: invalid ONNX
    onnx.save(model.model, str(out_path))
    clamped = clamped_to_fp16(before, _float_tensors(model.model.graph))
    if clamped:
        stamp(out_path, {"fp16_clamped": clamped})
        log.warning("fp16 ONNX %s: weights fp16 cannot hold were clamped, not rounded: %s; its outputs can differ "
                    "from fp32 beyond fp16 rounding (scale those weights down or keep this model in fp32)",
                    out_path.name, "; ".join(clamped))


def _float_tensors(graph: Any) -> dict[str, np.ndarray]:
    """The graph's initializers and Constant nodes' values, by name."""
    from onnx import numpy_helper

    tensors = {t.name: t for t in graph.initializer}
    tensors |= {n.output[0]: a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"}
    return {name: numpy_helper.to_array(t) for name, t in tensors.items()}


def clamped_to_fp16(fp32: dict[str, np.ndarray], fp16: dict[str, np.ndarray]) -> list[str]:
    """The float32 tensors holding values past fp16's range that the converter clamped (70000 to 65504, where
    rounding gives inf), each as ``'name' value -> stored (n of size values)`` with its largest such value. Tensors
    left fp32 are skipped."""
    found = []
    for name, before in fp32.items():
        after = fp16.get(name)
        if before.dtype != np.float32 or after is None or after.dtype != np.float16:
            continue
        with np.errstate(over="ignore"):  # rounding past 65504 gives inf: the comparison wants it
            rounded = before.astype(np.float16)
        changed = (after != rounded) & np.isfinite(before) & (np.abs(before) > np.finfo(np.float16).max)
        if changed.any():
            i = int(np.argmax(np.abs(before[changed])))
            found.append(f"'{name}' {before[changed][i]:.3g} -> {after[changed][i]:.3g} "
                         f"({int(changed.sum())} of {before.size} values)")
    return found


def _fp16_initializers(graph: Any) -> int:
    import onnx

    return sum(1 for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)


def fp16_execution(artifact: Path, threads: int, providers: list[str | tuple[str, dict[str, Any]]],
                   passes: GraphOptions = ORT_DEFAULTS) -> dict[str, Any]:
    """How many of the artifact's fp16 initializers (weights, biases) ORT keeps in fp16 once it has optimised the graph for
    ``providers`` (the timed session's options), and what that means for the arithmetic."""
    import onnx

    in_file = _fp16_initializers(onnx.load(str(artifact), load_external_data=False).graph)
    with tempfile.TemporaryDirectory() as tmp:
        options = make_session_options(threads, passes)
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3  # saving an NCHWc-optimised graph logs a hardware-specific warning
        open_session(artifact, options, providers, passes)
        kept = _fp16_initializers(onnx.load(options.optimized_model_filepath, load_external_data=False).graph)
    if kept == 0:
        computes = "fp32: the provider has no fp16 kernels for these layers here, so ORT cast their weights to fp32"
    else:
        computes = "fp16" if kept == in_file else "mixed fp16/fp32 (ORT cast the layers it has no fp16 kernels for)"
    return {"fp16_initializers": in_file, "fp16_initializers_after_optimisation": kept, "computes": computes}
