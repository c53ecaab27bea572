"""OpenVINO runtime: the ONNX artifacts (fp32 and QDQ int8) through the worker, threads/streams from settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("openvino", reason="the 'openvino' extra is not installed")

from edgebench.errors import ArtifactError
from edgebench.executor.runners import runner_for
from edgebench.job import Job, MeasureSettings
from edgebench.measure.worker import execute
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.targets import get_target
from edgebench.variants import QuantSpec

FAST = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, max_time_s=2.0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 4)).eval()
    tmp = tmp_path_factory.mktemp("ov")
    x = np.random.default_rng(0).standard_normal((64, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.savez(tmp / "eval.npz", x=x, y=logits.argmax(1))  # labels = fp32 predictions: fp32 accuracy must be 1
    np.savez(tmp / "ref.npz", logits=logits[:16])
    exporter = get_exporter("onnx")
    paths = {p: exporter.export(model, QuantSpec(precision=p, calibration_samples=64), x, tmp / f"{p}.onnx")
             for p in ("fp32", "int8")}
    return {**paths, "eval": tmp / "eval.npz", "ref": tmp / "ref.npz"}


def _job(artifacts: dict[str, Path], precision: str) -> Job:
    return Job(job_id=precision, variant_id="v", target="local-openvino", backend="openvino", precision=precision,
               artifact=str(artifacts[precision]), eval_data=str(artifacts["eval"]), reference=str(artifacts["ref"]),
               measure=FAST)


def test_fp32_matches_pytorch_with_target_threads_and_streams(artifacts: dict[str, Path]) -> None:
    result = execute(_job(artifacts, "fp32"))
    assert result.status == "ok", result.error
    assert result.accuracy == 1.0 and result.max_abs_diff < 1e-4
    assert result.latency_ms["p50"] > 0 and len(result.samples_ns) >= FAST.min_iters
    assert result.details["threads"] == 1 and result.details["streams"] == 1
    assert result.details["conv_fc_runtime_precisions"] == {"f32": 3}  # fp32 really runs in fp32


def test_int8_qdq_runs_integer_kernels(artifacts: dict[str, Path]) -> None:
    result = execute(_job(artifacts, "int8"))
    assert result.status == "ok", result.error
    precisions = result.details["conv_fc_runtime_precisions"]
    assert set(precisions) & {"u8", "i8"}, precisions  # the convolutions execute quantized
    assert 0 < result.max_abs_diff < 0.5 and result.accuracy >= 0.85


def test_other_batch_sizes_and_streams_setting(artifacts: dict[str, Path]) -> None:
    session = get_backend("openvino").load(artifacts["fp32"], BackendSettings(threads=2, batch_size=4,
                                                                              options={"streams": 2}))
    x = np.load(artifacts["eval"])["x"]
    full = session.run(x[:4])
    assert full.shape == (4, 4) and full.dtype == np.float32
    np.testing.assert_allclose(session.run(x[:3]), full[:3], atol=1e-5)  # a second compiled shape
    assert session.details()["streams"] == 2


class _PreActivationDense(nn.Module):
    """DenseNet's pre-activation: a BatchNorm after a concatenation, which no convolution absorbs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.grow = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.norm, self.fc = nn.BatchNorm2d(12), nn.Linear(12, 4)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)
            self.norm.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        return self.fc(torch.relu(self.norm(torch.cat([self.grow(a), a], 1))).mean((2, 3)))


def test_an_int8_batch_norm_no_conv_absorbs_compiles_and_runs_on_openvino(tmp_path: Path) -> None:
    """OpenVINO 2026.4's CPU plugin crashed (SIGSEGV) compiling the int8 QDQ file of such a model at a fixed batch,
    so each of its int8 measurements failed (a DenseNet's, in a battery of user models). The normalisation is
    written as a Mul and an Add of the same constants: the file compiles, and OpenVINO's logits are ONNX Runtime's
    (run in a child process: a crash must fail the test, not end the test run)."""
    import collections
    import subprocess
    import sys

    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    model = _PreActivationDense().eval()
    x = np.random.default_rng(0).random((32, 3, 8, 8)).astype(np.float32)
    path = get_exporter("onnx").export(model, QuantSpec(precision="int8", calibration_samples=32), x,
                                       tmp_path / "int8.onnx")
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert "BatchNormalization" not in ops and ops["Mul"] >= 1 and ops["QuantizeLinear"] > 0
    np.save(tmp_path / "x.npy", x[:4])
    code = ("import numpy as np, sys; from pathlib import Path; from edgebench.runtimes.base import BackendSettings, "
            "get_backend; s = get_backend('openvino').load(Path(sys.argv[1]), BackendSettings(batch_size=4)); "
            "np.save(sys.argv[2], s.run(np.load(sys.argv[3])))")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "ov.npy"), str(tmp_path / "x.npy")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = ort.InferenceSession(str(path)).run(None, {"input": x[:4]})[0]
    np.testing.assert_allclose(np.load(tmp_path / "ov.npy"), expected, atol=0.02)
    with torch.no_grad():
        assert np.abs(expected - model(torch.from_numpy(x[:4])).numpy()).max() < 0.1  # int8 of logits up to ~0.6


def test_missing_artifact_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="ONNX model not found"):
        get_backend("openvino").load(tmp_path / "nope.onnx", BackendSettings())


def test_local_openvino_target_is_available() -> None:
    target = get_target("local-openvino")
    assert target.backends == ["openvino"] and target.threads == 1
    assert runner_for(target).available() is None


def test_an_op_openvino_cannot_convert_is_named_not_cut_off(tmp_path: Path) -> None:
    """A conv with padding_mode='circular' exports as ONNX Pad in mode 'wrap', which OpenVINO's ONNX reader has no
    conversion for. Its error is a multi-line report whose first line says only "Check 'false' failed"; the ops
    after the Pad fail too, on the shapes it leaves. The failure names the Pad and why, and lists the others."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 3)).eval()
    images = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    path = get_exporter("onnx").export(model, QuantSpec(), images, tmp_path / "wrap.onnx")
    assert get_backend("onnxruntime").load(path, BackendSettings()).run(images[:1]).shape == (1, 3)  # a valid file
    with pytest.raises(ArtifactError) as info:
        get_backend("openvino").load(path, BackendSettings())
    message = str(info.value)
    assert message.startswith("OpenVINO's ONNX reader cannot convert Pad (Unsupported padding mode: [wrap])")
    assert "which fail on what it leaves" in message and "\n" not in message


def test_onnx_runtimes_own_ops_are_named_with_the_format_openvino_reads(tmp_path: Path) -> None:
    """ONNX Runtime's quantizer in QOperator format writes com.microsoft ops (QLinearGlobalAveragePool) that
    OpenVINO's reader has no rule for: the failure names them and the QDQ format, not a re-export."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    fp32 = tmp_path / "fp32.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), fp32, dynamo=False, input_names=["x"])
    images = np.random.default_rng(0).random((4, 1, 1, 8, 8), dtype=np.float32)

    class Reader:
        batches = iter([{"x": image} for image in images])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    qoperator = tmp_path / "qoperator.onnx"
    quantize_static(str(fp32), str(qoperator), Reader(), quant_format=QuantFormat.QOperator)
    with pytest.raises(ArtifactError) as info:
        get_backend("openvino").load(qoperator, BackendSettings())
    message = str(info.value)
    assert message.startswith("OpenVINO's ONNX reader has no conversion for com.microsoft.QGemm, "
                              "com.microsoft.QLinearGlobalAveragePool in qoperator.onnx")
    assert "QuantFormat.QOperator; one in QDQ format OpenVINO reads" in message and "re-export" not in message
