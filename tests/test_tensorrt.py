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
