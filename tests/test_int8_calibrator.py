"""The int8 calibrator setting: validated in the experiment, in int8 artifacts' identity only, applied by the
ONNX exporter (entropy ranges, float logits, weight codes -64..64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from experiment_files import default_with
from torch import nn

from edgebench.config import load_experiment
from edgebench.errors import ConfigError
from edgebench.models import create_model
from edgebench.plan import at_precision, plan_fp32_variants
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.variants import QuantSpec


def _experiment(tmp_path: Path, quantization: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "quantization": quantization}))
    return path


def test_calibrator_is_validated_with_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"quantization.calibrator.*'minmax', 'entropy' or 'percentile'"):
        load_experiment(_experiment(tmp_path, {"calibrator": "kl"}))
    assert load_experiment(_experiment(tmp_path, {"calibrator": "percentile"})).quantization.calibrator == "percentile"
    with pytest.raises(ValueError, match="int8 static quantization only"):
        QuantSpec(precision="fp32", calibrator="minmax")


def test_calibrator_changes_int8_artifacts_only(tmp_path: Path) -> None:
    minmax = load_experiment(_experiment(tmp_path, {"calibrator": "minmax"}))
    entropy = load_experiment(_experiment(tmp_path, {"calibrator": "entropy"}))
    base = plan_fp32_variants(minmax)[0]
    for precision in ("fp32", "fixed", "int8_dynamic"):
        spec = at_precision(base, precision, minmax)
        assert spec.id == at_precision(base, precision, entropy).id  # (the ids themselves: test_variant_ids.py)
    int8 = at_precision(base, "int8", minmax)
    assert int8.quant.calibrator == "minmax" and int8.id != at_precision(base, "int8", entropy).id


def test_quantize_settings_entropy_ranges_float_logits_and_7bit_weights(tmp_path: Path) -> None:
    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, width=0.5).eval()
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    x[0] *= 20  # one outlier image: minmax stretches its ranges to it, entropy clips it
    export_fp32_onnx(model, torch.from_numpy(x[:1]), tmp_path / "fp32.onnx")
    scales = {}
    for calibrator in ("minmax", "entropy"):
        settings = quantize_qdq(tmp_path / "fp32.onnx", tmp_path / f"{calibrator}.onnx", x, calibrator=calibrator)
        assert settings["calibrator"] == calibrator and settings["reduce_range"] and settings["float_logits"]
        graph = onnx.load(str(tmp_path / f"{calibrator}.onnx")).graph
        scales[calibrator] = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer
                              if i.name == "input_scale"}["input_scale"]
        producer = {o: n.op_type for n in graph.node for o in n.output}
        assert producer[graph.output[0].name] == "Gemm"  # logits leave the Gemm as float, not through Q/DQ
        weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("weight_quantized")]
        assert weights and all(np.abs(w.astype(int)).max() <= 64 for w in weights)  # reduce_range, not 127
    assert scales["entropy"] < 0.5 * scales["minmax"]  # a real KL search, not minmax's full range


@pytest.mark.parametrize("count", [100, 97])
def test_histogram_calibrators_take_any_number_of_images(tmp_path: Path, count: int) -> None:
    """100 images (not a multiple of the 32-image batch) and a prime 97: ORT's histogram calibrators stack the
    batches' outputs, so the reader feeds batches of one size (25, and 1) and every calibrator writes the file."""
    from edgebench.runtimes.onnxruntime.calibration import ArrayCalibrationReader
    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, width=0.5).eval()
    x = np.random.default_rng(0).standard_normal((count, 1, 8, 8)).astype(np.float32)
    reader = ArrayCalibrationReader(x, "x")
    sizes = []
    while (chunk := reader.get_next()) is not None:
        sizes.append(len(chunk["x"]))
    assert sizes == ([25] * 4 if count == 100 else [1] * 97)
    export_fp32_onnx(model, torch.from_numpy(x[:1]), tmp_path / "fp32.onnx")
    for calibrator in ("minmax", "entropy", "percentile"):
        quantize_qdq(tmp_path / "fp32.onnx", tmp_path / f"{calibrator}.onnx", x, calibrator=calibrator)
        assert (tmp_path / f"{calibrator}.onnx").is_file()


def test_a_target_whose_int8_ignores_the_calibrator_is_named(tmp_path: Path) -> None:
    """LiteRT's int8 is ai-edge-quantizer's min and max: with calibrator entropy its int8 rows would otherwise say
    entropy about a minmax file. ONNX Runtime takes every calibrator; with minmax nothing is said."""
    from edgebench.plan import ignored_calibrator
    from edgebench.targets import get_target

    targets = [(None, get_target("local-cpu")), (None, get_target("local-litert"))]
    entropy = load_experiment(default_with(tmp_path, "e.yaml", quantization={"precisions": ["fp32", "int8"],
                                                                               "calibrator": "entropy"}))
    assert ignored_calibrator(entropy, targets) == [
        "local-litert/litert: int8 is calibrated by minmax, not quantization.calibrator 'entropy' (which ONNX "
        "Runtime's int8 uses)"]
    minmax = load_experiment(default_with(tmp_path, "m.yaml", quantization={"precisions": ["fp32", "int8"]}))
    assert ignored_calibrator(minmax, targets) == []


def test_litert_int8_records_the_calibrator_its_file_was_made_with(tmp_path: Path) -> None:
    """With calibrator entropy, LiteRT's int8 measurements were stored as entropy, and each calibrator made another
    byte-identical file; they record minmax and share minmax's file, while ONNX Runtime's int8 keeps entropy."""
    from edgebench.plan import plan_jobs
    from edgebench.targets import get_target

    def int8_jobs(calibrator: str) -> dict[str, object]:
        exp = load_experiment(default_with(tmp_path, f"{calibrator}.yaml", targets=["local-cpu", "local-litert"],
                                           quantization={"precisions": ["int8"], "calibrator": calibrator}))
        jobs, _ = plan_jobs(exp, plan_fp32_variants(exp), [(s, get_target(s.name)) for s in exp.targets])
        return {f"{j.backend}/{j.variant.label}": j for j in jobs if j.variant.quant.precision == "int8"}

    entropy, minmax = int8_jobs("entropy"), int8_jobs("minmax")
    litert = [k for k in entropy if k.startswith("litert/")]
    assert litert and all(entropy[k].settings["calibrator"] == "minmax" for k in litert)
    assert all(entropy[k].artifact_key == minmax[k].artifact_key for k in litert)  # one file, not one per calibrator
    ort = [k for k in entropy if k.startswith("onnxruntime/")]
    assert ort and all(entropy[k].settings["calibrator"] == "entropy" for k in ort)
    assert all(entropy[k].artifact_key != minmax[k].artifact_key for k in ort)


def test_dynamic_int8_weights_are_7_bit_too(tmp_path: Path) -> None:
    """Dynamic int8 had full 8-bit weight codes (+-127): on x86 without VNNI ONNX Runtime adds u8 x s8 pairs in
    saturating int16, which they can overflow (the calibrated path is 7-bit for this reason)."""
    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx, quantize_int8_dynamic

    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, width=0.5).eval()
    export_fp32_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "fp32.onnx")
    quantize_int8_dynamic(tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx")
    graph = onnx.load(str(tmp_path / "dynamic.onnx")).graph
    weights = [onnx.numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(w.astype(int)).max()) for w in weights) <= 64


def _int8_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each int8 weight initializer of an ONNX file with the scale its dequantization multiplies it by."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    scales = {name: inits[name.removesuffix("_quantized") + "_scale"] for name, a in inits.items() if a.dtype == np.int8
              and a.ndim >= 2}
    return {name: (inits[name], scale) for name, scale in scales.items()}


def test_int8_weight_codes_run_minus_64_to_64_per_channel_calibrated_and_per_tensor_dynamic(tmp_path: Path) -> None:
    """ONNX Runtime's reduce_range gives weight codes -64..64 (129 levels, scale max|w| / 64), not -127..127: a
    pair of u8 x s8 products then stays below int16's 32767 (2 x 255 x 64). Calibrated int8 has a scale per output
    channel, dynamic int8 one per weight tensor. Codes by hand: QuantizeLinear rounds w / scale half to even."""
    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx, quantize_int8_dynamic

    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0] = torch.tensor([[1.0, -0.5, 0.25], [0.125, 0.0, -1.0], [0.3, 0.7, -0.9]])
        model[0].weight[1, 0, 0, :] = torch.tensor([0.02, -0.01, 0.005])
        model[0].weight[2, 0, 1, 1] = -2.0
    x = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    export_fp32_onnx(model, torch.from_numpy(x[:1]), tmp_path / "fp32.onnx")
    quantize_qdq(tmp_path / "fp32.onnx", tmp_path / "static.onnx", x)
    quantize_int8_dynamic(tmp_path / "fp32.onnx", tmp_path / "dynamic.onnx")
    conv = np.zeros((3, 1, 3, 3), dtype=np.int8)
    conv[0, 0] = [[64, -32, 16], [8, 0, -64], [19, 45, -58]]  # scale 1/64: 0.3 -> 19.2, 0.7 -> 44.8, -0.9 -> -57.6
    conv[1, 0, 0] = [64, -32, 16]  # scale 0.02/64
    conv[2, 0, 1, 1] = -64  # scale 2/64
    static = [(codes, scale) for codes, scale in _int8_weights(tmp_path / "static.onnx").values() if codes.ndim == 4]
    assert len(static) == 1 and np.array_equal(static[0][0], conv)
    np.testing.assert_allclose(static[0][1], [1 / 64, 0.02 / 64, 2 / 64], rtol=1e-6)
    dynamic = _int8_weights(tmp_path / "dynamic.onnx")
    assert len(dynamic) == 2 and all(scale.size == 1 for _, scale in dynamic.values())  # conv and linear: one each
    codes, scale = next(v for v in dynamic.values() if v[0].ndim == 4)
    by_hand = np.zeros((3, 1, 3, 3), dtype=np.int8)  # one scale, 2/64: the small channel keeps one code
    by_hand[0, 0] = [[32, -16, 8], [4, 0, -32], [10, 22, -29]]  # 0.3 -> 9.6, 0.7 -> 22.4, -0.9 -> -28.8
    by_hand[1, 0, 0] = [1, 0, 0]  # 0.02 -> 0.64, -0.01 -> -0.32, 0.005 -> 0.16
    by_hand[2, 0, 1, 1] = -64
    assert np.array_equal(codes, by_hand) and float(scale) == 2 / 64


def test_batch_norms_are_rewritten_beside_nodes_without_inputs(tmp_path) -> None:
    """A graph with a Constant node (no inputs) beside a BatchNormalization: the normalisation becomes Mul and Add
    with the same outputs (a node without inputs had stopped the rewrite with a ValueError)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgebench.runtimes.onnxruntime.calibration import batch_norms_as_scale_shift

    rng = np.random.default_rng(0)
    params = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in
              (("w", rng.uniform(0.5, 1.5, 3)), ("b", rng.normal(size=3)), ("m", rng.normal(size=3)),
               ("v", rng.uniform(0.5, 2.0, 3)))]
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2.0).reshape(()))),
         helper.make_node("Mul", ["x", "two"], ["x2"]),
         helper.make_node("BatchNormalization", ["x2", "w", "b", "m", "v"], ["y"], name="bn", epsilon=1e-3)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])], initializer=params)
    path = tmp_path / "bn.onnx"
    onnx.save(onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])),
              str(path))
    x = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert batch_norms_as_scale_shift(path) == 1
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Constant", "Mul", "Mul", "Add"]
    np.testing.assert_allclose(ort.InferenceSession(str(path)).run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)


def test_a_layer_norm_over_channels_height_and_width_stays_float_in_static_int8(tmp_path: Path) -> None:
    """ONNX Runtime's per-channel quantizer failed on a LayerNorm over (C, H, W) of an NCHW map ("The truth value of
    an array with more than one element is ambiguous"): every int8 ONNX of such a model was a failed job. It stays
    float; the convs around it are int8, and the int8 model still computes the float one's outputs."""
    import onnxruntime as ort

    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LayerNorm([4, 8, 8]), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    export_fp32_onnx(model, torch.from_numpy(x[:1]), tmp_path / "fp32.onnx")
    quantize_qdq(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", x)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    made = {o: n for n in graph.node for o in n.output}
    norm = next(n for n in graph.node if n.op_type == "LayerNormalization")
    assert norm.input[1] in {t.name for t in graph.initializer}  # its (4, 8, 8) scale is read as float
    assert sum(n.op_type == "Conv" and made[n.input[1]].op_type == "DequantizeLinear" for n in graph.node) == 2
    float_out, int8_out = (ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0] for f in ("fp32.onnx", "int8.onnx"))
    assert np.abs(int8_out - float_out).max() < 0.1 * np.abs(float_out).max()
