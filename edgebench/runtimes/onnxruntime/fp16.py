"""fp16 ONNX: every float tensor of the fp32 model in fp16 (inputs and logits stay fp32), and what ONNX Runtime makes
of it.

ORT's providers run fp16 where they have fp16 kernels (CUDA, ARM CPUs with fp16 arithmetic). Where a provider has
none for an operator, ORT's graph optimiser inserts casts around it and runs it in fp32; on an x86 CPU that is every
Conv and Gemm, so such a session stores fp16 and computes fp32. :func:`fp16_execution` reads the session's own
optimised graph to say which happened, so a measured "fp16" point says whether any fp16 arithmetic ran.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgebench.runtimes.onnxruntime.session import ORT_DEFAULTS, GraphOptions, make_session_options, open_session


def convert_fp16(fp32_path: Path, out_path: Path) -> None:
    """Write ``fp32_path`` with fp16 weights and activations to ``out_path``; the model's input and output keep
    fp32 (a Cast at each end), so the harness feeds and reads it like the fp32 model."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True))
    model.topological_sort()  # the converter appends the input's Cast after the nodes that read it: invalid ONNX
    onnx.save(model.model, str(out_path))


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
