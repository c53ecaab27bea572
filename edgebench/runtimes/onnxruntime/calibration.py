"""int8 QDQ quantization for ONNX Runtime with a chosen activation-range calibrator.

``minmax`` takes each activation's observed extremes: one outlier among the calibration
images stretches the scale for every input. ``entropy`` (KL divergence of the histogram,
as TensorRT's calibrator) and ``percentile`` (the 99.999th percentile of |x|) clip the
rare tail instead (as PyTorch's PT2E histogram observer does); which one is best is
measured by ``scripts/study_int8_calibration.py``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.variants import DEFAULT_CALIBRATOR, Calibrator

#: images per calibration call: the exported graph has a dynamic batch, and histograms are built per call
CALIBRATION_BATCH = 32


class ArrayCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over a float32 NCHW array, in batches of one size: the largest
    divisor of the image count up to ``batch`` (ORT's histogram calibrators stack the batches' outputs into one
    array, which fails on a short last batch: 100 images in batches of 32 did)."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = CALIBRATION_BATCH) -> None:
        images = np.ascontiguousarray(images, dtype=np.float32)
        n = len(images)
        batch = max(d for d in range(1, max(1, min(batch, n)) + 1) if n % d == 0) if n else batch
        self._batches: Iterator[np.ndarray] = iter([images[i : i + batch] for i in range(0, n, batch)])
        self._input = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {self._input: chunk}


def _entropy_ranges(prepped: Path, reader: ArrayCalibrationReader, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Activation ranges by KL-divergence search over a 2048-bin histogram (TensorRT's recipe).

    ``quantize_static`` builds its entropy histogram with 128 bins and 128 quantized bins, so its
    search has a single candidate: the full range, the same scales as minmax (measured here). The
    calibrator is therefore run directly with more bins and its ranges passed as tensor overrides.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(prepped, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": 2048, "num_quantized_bins": 128})
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print progress
        calibrator.collect_data(reader)
        ranges = calibrator.compute_data()
    return {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
            for name, (lo, hi) in ((n, ranges[n].range_value) for n in ranges.data)}


def batch_norms_as_scale_shift(path: Path) -> int:
    """Rewrite, in the ONNX file at ``path``, each inference BatchNormalization as a Mul and an Add by its per-channel
    scale and shift (the same values); return how many went.

    A BatchNormalization that no convolution absorbed (a pre-activation network's, after a concatenation: DenseNet)
    sits between a DequantizeLinear and a QuantizeLinear in the QDQ file, and OpenVINO 2026.4's CPU plugin crashed
    compiling that (SIGSEGV at a fixed batch, whether or not its own weights were quantized); the Mul and Add
    compile, and ONNX Runtime runs them as it ran the normalisation."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.input, *graph.value_info]
             if v.type.tensor_type.HasField("shape")}
    nodes, count = [], 0
    for node in graph.node:
        x, *params = node.input if node.op_type == "BatchNormalization" else ("", "")  # a Constant has no input
        if node.op_type != "BatchNormalization" or len(node.output) != 1 or not all(p in constants for p in params) \
                or ranks.get(x, 0) < 2:
            nodes.append(node)
            continue
        weight, bias, mean, var = (constants[p].astype(np.float64) for p in params)
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = weight / np.sqrt(var + epsilon)
        broadcast = (-1,) + (1,) * (ranks[x] - 2)  # per channel: axis 1 of (N, C, ...)
        names = (f"{node.name}_scale", f"{node.name}_shift", f"{node.output[0]}_scaled")
        graph.initializer.extend([numpy_helper.from_array(scale.reshape(broadcast).astype(np.float32), names[0]),
                                  numpy_helper.from_array((bias - mean * scale).reshape(broadcast).astype(np.float32),
                                                          names[1])])
        nodes += [helper.make_node("Mul", [x, names[0]], [names[2]], name=f"{node.name}_mul"),
                  helper.make_node("Add", [names[2], names[1]], list(node.output), name=f"{node.name}_add")]
        count += 1
    if count:
        del graph.node[:]
        graph.node.extend(nodes)
        read = {name for node in nodes for name in node.input}
        kept = [t for t in graph.initializer if t.name in read]  # the normalisations' own four are read no more
        del graph.initializer[:]
        graph.initializer.extend(kept)
        onnx.save(model, str(path))
    return count


def multi_axis_layer_norms(model_path: Path) -> list[str]:
    """The LayerNormalization nodes whose scale spans more than one axis (a (C, H, W) LayerNorm of an NCHW map):
    ONNX Runtime 1.32's per-channel QDQ quantizer fails on each ("The truth value of an array with more than one
    element is ambiguous", adjusting its weight scale for the int32 bias), so they stay float."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    ranks = {t.name: len(t.dims) for t in graph.initializer}
    return [n.name for n in graph.node
            if n.op_type == "LayerNormalization" and len(n.input) > 1 and ranks.get(n.input[1], 0) > 1]


def output_op_types(model_path: Path) -> list[str]:
    """Op types of the nodes that produce the graph outputs (the logits)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    outputs = {o.name for o in graph.output}
    return sorted({n.op_type for n in graph.node if outputs & set(n.output)})


def quantize_qdq(
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    *,
    calibrator: Calibrator = DEFAULT_CALIBRATOR,
    per_channel: bool = True,
    reduce_range: bool = True,
    symmetric_activations: bool = False,
    signed_activations: bool = False,
    float_logits: bool = True,
    nodes_to_quantize: list[str] | None = None,
    nodes_to_exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Static int8 QDQ model of ``fp32_path`` calibrated on ``calibration`` (NCHW float32 images).

    Defaults are edgebench's artifact settings, each measured by the calibration study:
    s8 per-channel weights with codes -64..64 (``reduce_range``: x86 CPUs without VNNI multiply u8 x s8 pairs
    into saturating 16-bit sums, which codes up to 127 overflow), u8 asymmetric activations, and
    float logits (``float_logits``: quantizing the output clips every logit outside the range the
    calibration images reached). Returns the settings used, to be recorded with the artifact.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = {"calibrator": calibrator, "per_channel": per_channel, "reduce_range": reduce_range,
                "symmetric_activations": symmetric_activations, "signed_activations": signed_activations,
                "float_logits": float_logits, "calibration_images": len(calibration)}
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    extra: dict[str, Any] = {"ActivationSymmetric": symmetric_activations}
    if float_logits:
        extra["OpTypesToExcludeOutputQuantization"] = output_op_types(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
        batch_norms_as_scale_shift(prepped)
        if per_channel and (float_norms := multi_axis_layer_norms(prepped)):
            nodes_to_exclude = [*(nodes_to_exclude or []), *float_norms]
        method = CalibrationMethod.Percentile if calibrator == "percentile" else CalibrationMethod.MinMax
        if calibrator == "entropy":
            extra["TensorQuantOverrides"] = _entropy_ranges(prepped, ArrayCalibrationReader(calibration, input_name),
                                                            Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepped),
                str(out_path),
                ArrayCalibrationReader(calibration, input_name),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                nodes_to_quantize=nodes_to_quantize,
                nodes_to_exclude=nodes_to_exclude,
                extra_options=extra,
            )
    return settings
