"""CUDA backends (PyTorch CUDA, ONNX Runtime CUDA) and the NVML meter; GPU parts skip with the reason."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.executor.runners import runner_for
from edgebench.measure.energy import UnavailableMeter, create_meter
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.torch.cuda import cuda_unavailable_reason
from edgebench.targets import get_target
from edgebench.variants import QuantSpec

NO_GPU = cuda_unavailable_reason()
NO_ORT_CUDA = get_backend("onnxruntime_cuda").available()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=f"no CUDA GPU: {NO_GPU}")


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()


def test_reasons_agree_with_torch() -> None:
    assert (NO_GPU is None) == torch.cuda.is_available()
    if NO_GPU is not None:
        assert "CPU-only" in NO_GPU or "no CUDA GPU" in NO_GPU
        assert get_backend("torch_cuda").available() == NO_GPU
    reason = runner_for(get_target("local-cuda")).available()
    if reason is not None:  # every missing piece is named, with its backend
        assert any(name in reason for name in ("torch_cuda", "onnxruntime_cuda", "tensorrt"))


def test_onnxruntime_cuda_reason_names_the_package() -> None:
    import onnxruntime as ort

    assert (NO_ORT_CUDA is None) == ("CUDAExecutionProvider" in ort.get_available_providers())
    if NO_ORT_CUDA:
        assert "onnxruntime-gpu" in NO_ORT_CUDA


@needs_gpu
@pytest.mark.hardware
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_matches_cpu(precision: str, tmp_path: Path) -> None:
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    artifact = get_exporter("torch").export(model, QuantSpec(precision="fp32"), x, tmp_path / "m.pt")
    session = get_backend("torch_cuda").load(artifact, BackendSettings(device="cuda:0", precision=precision))
    got = session.run(x)
    session.sync()
    expected = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4 if precision == "fp32" else 2e-2)


@pytest.mark.hardware
@pytest.mark.skipif(NO_ORT_CUDA is not None, reason=f"ONNX Runtime CUDA: {NO_ORT_CUDA}")
def test_onnxruntime_cuda_matches_cpu(tmp_path: Path) -> None:
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    artifact = get_exporter("onnx").export(model, QuantSpec(precision="fp32"), x, tmp_path / "m.onnx")
    got = get_backend("onnxruntime_cuda").load(artifact, BackendSettings(device="cuda:0")).run(x)
    np.testing.assert_allclose(got, model(torch.from_numpy(x)).detach().numpy(), atol=1e-3)


@pytest.mark.hardware
@pytest.mark.skipif(NO_ORT_CUDA is not None, reason=f"ONNX Runtime CUDA: {NO_ORT_CUDA}")
def test_onnxruntime_cuda_records_node_placement_and_gives_no_host_timed_layer_profile(tmp_path: Path) -> None:
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    onnx = get_exporter("onnx")
    fp32 = onnx.export(model, QuantSpec(precision="fp32"), x, tmp_path / "fp32.onnx")
    int8 = onnx.export(model, QuantSpec(precision="int8", calibration_samples=16), x, tmp_path / "int8.onnx")
    backend = get_backend("onnxruntime_cuda")
    session = backend.load(fp32, BackendSettings(device="cuda:0"))
    assert list(session.details()["placement"]) == ["CUDAExecutionProvider"]  # a plain CNN runs wholly on the GPU
    profile = session.profile_layers(x[:1], runs=5)
    assert profile.status == "not available" and "on the host" in profile.reason
    placement = backend.load(int8, BackendSettings(device="cuda:0", precision="int8")).details()["placement"]
    assert any("Conv" in op for op in placement["CUDAExecutionProvider"]), placement  # Q/DQ around fp32 convs


@needs_gpu
@pytest.mark.hardware
def test_nvml_measures_gpu_energy() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py (extra 'cuda') not installed")
    meter = create_meter({"type": "nvml"})
    assert not isinstance(meter, UnavailableMeter), getattr(meter, "reason", "")
    a = torch.randn(4096, 4096, device="cuda")
    meter.start()
    end = time.perf_counter() + max(1.0, meter.min_window_s)
    while time.perf_counter() < end:
        a = a @ a
        a = a / a.norm()
    torch.cuda.synchronize()
    reading = meter.stop()
    assert reading.source in ("measured:nvml", "measured:nvml-power")
    assert reading.joules is not None and reading.joules / reading.seconds > 10  # a busy GPU draws > 10 W
