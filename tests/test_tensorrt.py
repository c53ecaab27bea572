"""TensorRT: engines from the ONNX artifact (fp32/fp16/int8). Skips with the reason where TensorRT is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.tensorrt.export import onnx_has_qdq
from edgebench.runtimes.tensorrt.qdq import write_tensorrt_qdq
from edgebench.variants import QuantSpec

REASON = get_backend("tensorrt").available()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10)).eval()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)


def test_qdq_detection_picks_explicit_int8(images: np.ndarray, tmp_path: Path) -> None:
    onnx = get_exporter("onnx")
    fp32 = onnx.export(small_cnn(), QuantSpec(precision="fp32"), images, tmp_path / "fp32.onnx")
    int8 = onnx.export(small_cnn(), QuantSpec(precision="int8", calibration_samples=32), images, tmp_path / "int8.onnx")
    assert not onnx_has_qdq(fp32)
    assert onnx_has_qdq(int8)  # TensorRT builds it as explicit int8, without a calibrator


def test_qdq_for_tensorrt_is_signed_symmetric_and_keeps_the_calibrated_range(tmp_path: Path) -> None:
    """edgebench's int8 ONNX (uint8 activations, zero point 143 on a normalised input) rewritten as TensorRT reads
    Q/DQ: int8 zero points of 0, the scale widened by hand to cover [s(0 - z), s(255 - z)], and the model's answers
    those of the artifact (run both in ONNX Runtime)."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    rng = np.random.default_rng(1)
    images = (rng.standard_normal((128, 3, 8, 8)) * 0.5 + 0.6).astype(np.float32)  # not centred: zero point != 128
    model = small_cnn()
    int8 = get_exporter("onnx").export(model, QuantSpec(precision="int8", calibration_samples=128), images,
                                       tmp_path / "int8.onnx")
    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}
    assert write_tensorrt_qdq(int8, tmp_path / "trt.onnx") >= 2  # the input and the conv block's output at least
    graph = onnx.load(str(tmp_path / "trt.onnx")).graph
    after = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(after[n.input[2]].dtype == np.int8 and not after[n.input[2]].any() for n in qdq)
    # TensorRT dequantizes activation types only: the int32 biases are float constants now, of the same value
    biases = [n for n in onnx.load(str(int8)).graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in before and before[n.input[0]].dtype == np.int32]
    assert biases and all(n.output[0] not in {q.output[0] for q in qdq} for n in biases)
    conv_bias = biases[0]
    expected = before[conv_bias.input[0]] * before[conv_bias.input[1]].astype(np.float64)
    np.testing.assert_allclose(after[conv_bias.output[0]], expected, rtol=1e-6)
    scale, zero = float(before["input_scale"]), int(before["input_zero_point"])
    assert zero not in (0, 128) and before["input_zero_point"].dtype == np.uint8
    widened = [float(after[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    assert widened == [pytest.approx(scale * max(zero, 255 - zero) / 127, rel=1e-6)]

    def logits(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]

    # ONNX Runtime runs the rewritten graph as TensorRT reads it: its error against fp32 is the artifact's, a
    # little coarser (int8 holds half the codes of a uint8 range that starts at 0); a lost ReLU (the quantizer
    # drops it before a uint8 zero point of 0) was 18x the artifact's error here
    fp32 = model(torch.from_numpy(images)).detach().numpy()
    artifact_error = np.abs(logits(int8) - fp32).max()
    rewritten = logits(tmp_path / "trt.onnx")
    assert np.abs(rewritten - fp32).max() < 2.5 * artifact_error
    assert (rewritten.argmax(1) == fp32.argmax(1)).mean() >= 0.95


@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are present: the engine tests cover them")
def test_unavailable_reason_is_specific() -> None:
    assert "tensorrt" in REASON or "CUDA" in REASON or "GPU" in REASON
    assert get_exporter("tensorrt").available() == REASON


@pytest.mark.hardware
@pytest.mark.skipif(REASON is not None, reason=f"TensorRT path not testable here: {REASON}")
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 5e-2), ("int8", 0.5)])
def test_engine_matches_pytorch(precision: str, atol: float, images: np.ndarray, tmp_path: Path) -> None:
    model = small_cnn()
    engine = get_exporter("tensorrt").export(model, QuantSpec(precision=precision), images,
                                             tmp_path / f"m-{precision}.engine")
    record = json.loads(Path(f"{engine}.json").read_text())
    assert record["precision"] == precision and record["build_s"] > 0
    session = get_backend("tensorrt").load(engine, BackendSettings(device="cuda:0", precision=precision))
    expected = model(torch.from_numpy(images)).detach().numpy()
    for batch in (1, 8):  # the optimisation profile allows a dynamic batch
        got = session.run(images[:batch])
        session.sync()
        np.testing.assert_allclose(got, expected[:batch], atol=atol)


@pytest.mark.hardware
@pytest.mark.skipif(REASON is not None, reason=f"TensorRT path not testable here: {REASON}")
def test_onnx_built_on_device(images: np.ndarray, tmp_path: Path) -> None:
    model = small_cnn()
    onnx_path = get_exporter("onnx").export(model, QuantSpec(precision="int8", calibration_samples=32), images,
                                            tmp_path / "int8.onnx")
    session = get_backend("tensorrt").load(onnx_path, BackendSettings(device="cuda:0", precision="int8"))
    got = session.run(images[:4])
    assert (got.argmax(1) == model(torch.from_numpy(images[:4])).argmax(1).numpy()).mean() >= 0.75
