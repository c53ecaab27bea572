"""LiteRT: litert-torch conversion (fp32, fp16 weights), ai-edge-quantizer int8 and the ai-edge-litert backend on the
digits CNN."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch", reason="the 'litert' extra (litert-torch) is not installed")
pytest.importorskip("ai_edge_litert", reason="the 'litert' extra (ai-edge-litert) is not installed")

from edgebench.data.digits import digits
from edgebench.errors import ArtifactError, UnsupportedModelError
from edgebench.job import Job, MeasureSettings
from edgebench.measure.worker import execute
from edgebench.models import create_model
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.train import evaluate, train
from edgebench.variants import QuantSpec, TrainSpec


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, object]:
    splits = digits(seed=0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, width=0.5)
    train(model, splits, TrainSpec(epochs=3, batch_size=64, lr=0.05))
    return model.eval(), splits


@pytest.fixture(scope="module")
def artifacts(trained: tuple[torch.nn.Module, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model, splits = trained
    out = tmp_path_factory.mktemp("tflite")
    exporter = get_exporter("tflite")
    assert exporter.available() is None
    paths = {}
    for precision in ("fp32", "fp16", "int8"):
        t0 = time.perf_counter()
        paths[precision] = exporter.export(model, QuantSpec(precision=precision, calibration_samples=128),
                                           splits.x_train, out / f"digits-{precision}.tflite")
        print(f"tflite {precision} conversion: {time.perf_counter() - t0:.2f} s")  # reported with -s
    return paths


def test_fp32_matches_pytorch(trained: tuple, artifacts: dict[str, Path]) -> None:
    model, splits = trained
    session = get_backend("litert").load(artifacts["fp32"], BackendSettings(threads=1))
    x = splits.x_test[:16]
    expected = model(torch.from_numpy(x)).detach().numpy()
    got = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_xnnpack_sparse_inference_says_why_the_digits_cnn_does_not_qualify(artifacts: dict[str, Path]) -> None:
    check = get_backend("litert").load(artifacts["fp32"], BackendSettings(threads=1)).details()
    check = check["xnnpack_sparse_inference"]
    assert check["candidate"] is False
    assert any("no DENSIFY" in reason for reason in check["unmet"])  # litert-torch writes dense weights
    assert any("3 input channels" in reason for reason in check["unmet"])  # a 1-channel 8x8 input
    assert any("no 1x1 CONV_2D" in reason for reason in check["unmet"]) and check["pointwise_convs"] == []


def test_int8_is_quantized_smaller_and_accurate(trained: tuple, artifacts: dict[str, Path]) -> None:
    model, splits = trained
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(artifacts["int8"])).get_input_details()[0]
    assert details["dtype"] == np.int8 and details["quantization"][0] > 0
    assert artifacts["int8"].stat().st_size < 0.5 * artifacts["fp32"].stat().st_size

    session = get_backend("litert").load(artifacts["int8"], BackendSettings(threads=1))
    x, y = splits.x_test, splits.y_test
    n = len(x)
    logits = np.concatenate([session.run(x[i : i + 1]) for i in range(n)])
    int8_acc = float((logits.argmax(1) == y[:n]).mean())
    fp32_acc = evaluate(model, x[:n], y[:n])
    assert fp32_acc > 0.8
    assert abs(int8_acc - fp32_acc) < 0.05
    ref = model(torch.from_numpy(x[:n])).detach().numpy()
    assert 0 < np.abs(logits - ref).max() < 0.5 * np.abs(ref).max()  # quantized, not garbage
    # the timed call feeds the interpreter the input quantized once and returns its int8 output, which run()
    # dequantizes: the same inference, without the Python conversions in the timed window
    call = session.timed_call(x[:1])
    out = session.timed_call(x[:1])()
    assert out.dtype == np.int8 and np.array_equal(call(), out)
    scale, zero_point = Interpreter(model_path=str(artifacts["int8"])).get_output_details()[0]["quantization"]
    np.testing.assert_allclose((out.astype(np.float32) - zero_point) * scale, session.run(x[:1]), rtol=0, atol=1e-6)


def test_int8_from_the_sweeps_fp32_file_is_the_int8_converted_on_its_own(
        trained: tuple, artifacts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep hands the int8 export the variant's fp32 file, and nothing is converted again; without it the
    exporter converts one itself: the same bytes either way (conversion and min-max calibration are deterministic)."""
    import edgebench.runtimes.litert.export as litert_export

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted the model although the fp32 file was given")

    monkeypatch.setattr(litert_export, "_float_converted", no_conversion)
    model, splits = trained
    quant = QuantSpec(precision="int8", calibration_samples=128)
    derived = get_exporter("tflite").export(model, quant, splits.x_train, tmp_path / "derived.tflite",
                                            fp32_source=artifacts["fp32"])
    assert derived.read_bytes() == artifacts["int8"].read_bytes()


def test_nhwc_model_gets_transposed_input(trained: tuple, tmp_path: Path) -> None:
    import litert_torch

    model, splits = trained
    litert_torch.config.show_progress = False
    nhwc_model = litert_torch.to_channel_last_io(model, args=[0]).eval()
    sample = torch.from_numpy(splits.x_train[:1]).permute(0, 2, 3, 1).contiguous()
    path = tmp_path / "nhwc.tflite"
    litert_torch.convert(nhwc_model, (sample,)).export(str(path))

    x = splits.x_test[:1]  # NCHW, as the harness always passes
    got = get_backend("litert").load(path, BackendSettings(threads=1)).run(x)
    np.testing.assert_allclose(got, model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


def test_worker_measures_the_int8_artifact(trained: tuple, artifacts: dict[str, Path], tmp_path: Path) -> None:
    model, splits = trained
    eval_path, ref_path = tmp_path / "eval.npz", tmp_path / "ref.npz"
    np.savez(eval_path, x=splits.x_test, y=splits.y_test)
    np.savez(ref_path, logits=model(torch.from_numpy(splits.x_test[:16])).detach().numpy())
    job = Job(job_id="j", variant_id="v", target="local-litert", backend="litert", artifact=str(artifacts["int8"]),
              precision="int8", eval_data=str(eval_path), reference=str(ref_path),
              measure=MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, precision=None))
    result = execute(job)
    assert result.status == "ok", result.error
    assert result.accuracy is not None and result.accuracy > 0.8 and result.n_eval == len(splits.y_test)
    assert result.max_abs_diff is not None and result.max_abs_diff > 0
    assert result.latency_ms["p50"] > 0 and "ai_edge_litert" in result.runtime


def test_fp16_file_holds_fp16_weights_and_is_measured_on_itself(trained: tuple, artifacts: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model, splits = trained
    weights = [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1]
    stored = [t for t in Interpreter(model_path=str(artifacts["fp16"])).get_tensor_details() if t["dtype"] == np.float16]
    assert sorted(int(np.prod(t["shape"])) for t in stored) == sorted(p.numel() for p in weights)
    saved = artifacts["fp32"].stat().st_size - artifacts["fp16"].stat().st_size
    assert saved > 0.9 * 2 * sum(p.numel() for p in weights)  # two bytes fewer per weight

    eval_path, ref_path = tmp_path / "eval.npz", tmp_path / "ref.npz"
    np.savez(eval_path, x=splits.x_test, y=splits.y_test)
    with torch.no_grad():
        ref = model(torch.from_numpy(splits.x_test)).numpy()
    np.savez(ref_path, logits=ref[:16])
    job = Job(job_id="j", variant_id="v", target="local-litert", backend="litert", artifact=str(artifacts["fp16"]),
              precision="fp16", eval_data=str(eval_path), reference=str(ref_path),
              measure=MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, precision=None))
    result = execute(job)
    assert result.status == "ok", result.error
    assert result.details["fp16_weight_tensors"] == len(weights)
    fp32_accuracy = float((ref.argmax(1) == splits.y_test).mean())
    assert result.accuracy is not None and abs(result.accuracy - fp32_accuracy) <= 0.01  # fp16 rounding: near-ties
    assert result.max_abs_diff is not None and 0 < result.max_abs_diff < 0.01 * np.abs(ref).max()


def test_fp16_model_with_pointwise_convs_loads_and_reads_their_fp16_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 1),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 4)).eval()
    with torch.no_grad():
        model[2].weight[:, :4] = 0  # half of the 1x1 weights zero
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    path = get_exporter("tflite").export(model, QuantSpec(precision="fp16"), x, tmp_path / "pointwise.tflite")
    session = get_backend("litert").load(path, BackendSettings(threads=1))
    details = session.details()
    assert details["fp16_weight_tensors"] == 3
    assert [c["zero_fraction"] for c in details["xnnpack_sparse_inference"]["pointwise_convs"]] == [0.5]
    with torch.no_grad():
        np.testing.assert_allclose(session.run(x[:1]), model(torch.from_numpy(x[:1])).numpy(), atol=1e-2)


def test_fixed_batch_model_explains_offline_limit(artifacts: dict[str, Path]) -> None:
    from edgebench.errors import ArtifactError

    with pytest.raises(ArtifactError, match="fixed batch of 1"):
        get_backend("litert").load(artifacts["fp32"], BackendSettings(threads=1, batch_size=8))


#: int8 paths: "calibrated" is the exporter's (ai-edge-quantizer on the fp32 file); "pt2e" is the PT2E graph that
#: quantization-trained models take (there holding trained scales), here calibrated by its observers
INT8_PATHS = ("calibrated", "pt2e")


def _int8_and_pytorch_logits(model: torch.nn.Module, shape: tuple[int, ...], out: Path,
                             path: str = "calibrated") -> tuple[np.ndarray, np.ndarray]:
    """``model``'s LiteRT int8 logits (calibrated on 64 random images) by one of ``INT8_PATHS`` and its own, on 8 of
    those images."""
    import edgebench.runtimes.litert.export as litert_export

    x = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
    if path == "calibrated":
        get_exporter("tflite").export(model, QuantSpec(precision="int8", calibration_samples=64), x, out)
    else:
        from litert_torch.quantize.quant_config import QuantConfig

        example = torch.from_numpy(x[:1])
        prepared, quantizer = litert_export._prepared(model, example, x)
        litert_export._import_litert_torch().convert(litert_export._converted(prepared), (example,),
                                                     quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(str(out))
    session = get_backend("litert").load(out, BackendSettings(threads=1))
    got = np.concatenate([session.run(x[i : i + 1]) for i in range(8)])
    with torch.no_grad():
        return got, model(torch.from_numpy(x[:8])).numpy()


@pytest.mark.parametrize(("path", "bound"), [("calibrated", 0.02), ("pt2e", 0.05)])
def test_int8_of_a_model_with_dropout_agrees_with_pytorch(path: str, bound: float, tmp_path: Path) -> None:
    """An eval-mode Dropout before the classifier is a no-op; litert-torch's PT2E int8 conversion of it once left the
    logits off by a quarter of their scale (edgebench drops it from the exported graph before quantizing)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3),
                                torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(16, 4)).eval()
    got, want = _int8_and_pytorch_logits(model, (3, 6, 8), tmp_path / "dropout.tflite", path)
    # int8 rounding of weights, activations and logits; measured 0.7 % of the logits' scale (calibrated)
    assert np.abs(got - want).max() <= bound * np.abs(want).max()


@pytest.mark.parametrize("activation", [torch.nn.ELU(), torch.nn.Mish()])
def test_int8_of_an_activation_lowered_to_a_select_agrees_with_pytorch(activation: torch.nn.Module,
                                                                       tmp_path: Path) -> None:
    """ELU and Mish lower to GREATER + SELECT: the calibrated range of that boolean mask failed edgebench's range
    floor ("numpy boolean subtract ... not supported") for every variant of such a model."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), activation, torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()
    got, want = _int8_and_pytorch_logits(model, (3, 6, 8), tmp_path / "select.tflite", "calibrated")
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_int8_of_a_transposed_conv_with_a_batchnorm_loads_and_agrees_with_pytorch(tmp_path: Path) -> None:
    """A decoder block (ConvTranspose2d + BatchNorm2d with statistics) had no int8 file: the unfused BN's constant
    got per-axis scales LiteRT refused ("num_scales must be 1 ... Tensor 3"). The BN is folded into the layer."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                                torch.nn.ConvTranspose2d(8, 4, 2, stride=2), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    with torch.no_grad():
        bn = model[3]
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    got, want = _int8_and_pytorch_logits(model, (3, 8, 8), tmp_path / "decoder.tflite", "calibrated")
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    assert isinstance(model[3], torch.nn.BatchNorm2d)  # the user's model is left as it was


class _DeadGate(torch.nn.Module):
    """A squeeze-and-excitation gate whose ReLU never fires (its bias far below its inputs, as a pruned one may be):
    the calibration sees that tensor at exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.gate = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 1)
        self.excite, self.fc = torch.nn.Conv2d(4, 8, 1), torch.nn.Linear(8, 4)
        with torch.no_grad():
            self.gate.bias.fill_(-100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = x * torch.sigmoid(self.excite(torch.relu(self.gate(x.mean((2, 3), keepdim=True)))))
        return self.fc(x.mean((2, 3)))


def test_int8_of_a_tensor_that_never_moves_loads_on_xnnpack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dead gate's tensor gets a scale XNNPACK accepts and the logits agree with PyTorch's; with
    ai-edge-quantizer's own floor (scale 4e-12) XNNPACK refuses the file, and the error says the built-in kernels
    load it and which option measures it with them, not to re-export it."""
    import edgebench.runtimes.litert.export as litert_export

    torch.manual_seed(0)
    model = _DeadGate().eval()
    got, want = _int8_and_pytorch_logits(model, (3, 6, 6), tmp_path / "floored.tflite")
    assert np.abs(got - want).max() <= 0.02 * np.abs(want).max()  # measured 0.4 %

    monkeypatch.setattr(litert_export, "_with_scale_floor", lambda qsvs: qsvs)
    with pytest.raises(ArtifactError) as err:
        _int8_and_pytorch_logits(model, (3, 6, 6), tmp_path / "unfloored.tflite")
    message = str(err.value)
    assert message.startswith(f"XNNPACK cannot run {tmp_path / 'unfloored.tflite'} (failed to create XNNPACK runtime")
    assert "set backend_options: {litert: {xnnpack: false}}" in message and "re-export" not in message
    builtin = get_backend("litert").load(tmp_path / "unfloored.tflite", BackendSettings(options={"xnnpack": False}))
    assert builtin.run(np.zeros((1, 3, 6, 6), np.float32)).shape == (1, 4)


class _PreActivationDense(torch.nn.Module):
    """DenseNet's pre-activation block on a conv's output: the conv feeds both the concatenation and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv = torch.nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize(("path", "bound"), [("calibrated", 0.04), ("pt2e", 0.15)])
def test_int8_keeps_a_batchnorm_apart_from_a_conv_whose_output_is_also_concatenated(path: str, bound: float,
                                                                                      tmp_path: Path) -> None:
    """PT2E folds such a BN into the conv, which the concatenation then reads normalised (edgebench puts a clone
    between them before quantizing); the calibrated path quantizes litert-torch's fp32 graph, where the BN is
    folded into nothing the concatenation reads."""
    torch.manual_seed(0)
    model = _PreActivationDense().eval()
    with torch.no_grad():  # a trained BN: far from the identity
        model.bn.running_mean.uniform_(-2, 2), model.bn.running_var.uniform_(0.05, 0.2)
        model.bn.weight.uniform_(0.5, 2), model.bn.bias.uniform_(-1, 1)
    got, want = _int8_and_pytorch_logits(model, (3, 6, 6), tmp_path / "dense.tflite", path)
    # measured: 1.4 % (calibrated) and 7.8 % (PT2E) of the logits' scale; with the BN folded, PT2E's was 4.5x it
    assert np.abs(got - want).max() <= bound * np.abs(want).max()


def test_int8_conversion_skips_the_move_to_eval_rewrite_only_where_it_would_change_nothing(
        trained: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchao's move-to-eval rewrite traces its patterns on every call (about 1 s of a PT2E int8 conversion, the
    path of quantization-trained models); a graph exported in eval mode has nothing for it to rewrite, one exported
    in train mode has."""
    import edgebench.runtimes.litert.export as litert_export

    block = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    example = (torch.rand(1, 1, 6, 6),)
    assert not litert_export._training_mode_ops(torch.export.export(block.eval(), example).module())
    assert litert_export._training_mode_ops(torch.export.export(block.train(), example).module())

    model, splits = trained
    x = torch.from_numpy(splits.x_test[:1].astype(np.float32))
    skipped = litert_export._converted(litert_export._prepared(model.eval(), x, splits.x_train[:32])[0])
    monkeypatch.setattr(litert_export, "_training_mode_ops", lambda graph: True)
    rewritten = litert_export._converted(litert_export._prepared(model.eval(), x, splits.x_train[:32])[0])
    assert torch.equal(skipped(x)[0], rewritten(x)[0])


class _LinearExcitation(torch.nn.Module):
    """SE-ResNet's squeeze-and-excitation as commonly written: Linear layers, then ``view`` and ``expand_as``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc1, self.fc2 = torch.nn.Linear(8, 2), torch.nn.Linear(2, 8)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        b, c, _, _ = x.size()
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3)))))).view(b, c, 1, 1)
        return self.head((x * w.expand_as(x)).mean((2, 3)))


def test_a_broadcast_expand_is_dropped_only_where_the_op_broadcasts_to_the_same_shape() -> None:
    from edgebench.runtimes.litert.export import _without_broadcast_expands

    class Kept(torch.nn.Module):  # expanded to feed a conv, which does not broadcast: the expand must stay
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.conv2d(x.expand(1, 2, 4, 4), torch.ones(1, 2, 1, 1))

    example = (torch.randn(1, 1, 4, 4),)
    graph = torch.export.export(Kept(), example).module()
    assert _without_broadcast_expands(graph) == 0
    excitation = _LinearExcitation().eval()
    graph = torch.export.export(excitation, (torch.randn(1, 3, 6, 6),)).module()
    assert _without_broadcast_expands(graph) == 1
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(graph(x), excitation(x))  # the multiply broadcasts to the same result


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_squeeze_and_excitation_with_expand_as_converts_and_agrees_with_pytorch(precision: str, tmp_path: Path) -> None:
    """litert-torch alone fails the fp32 conversion ('tfl.mul' op operands don't have broadcast-compatible shapes) and
    writes an int8 file whose BROADCAST_TO does not load."""
    torch.manual_seed(0)
    model = _LinearExcitation().eval()
    if precision == "int8":
        got, want = _int8_and_pytorch_logits(model, (3, 6, 6), tmp_path / "se.tflite")
        assert np.abs(got - want).max() <= 0.03 * np.abs(want).max()  # int8 rounding: measured 0.7 %
        return
    x = np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32)
    path = get_exporter("tflite").export(model, QuantSpec(precision="fp32"), x, tmp_path / "se.tflite")
    session = get_backend("litert").load(path, BackendSettings(threads=1))
    got = np.concatenate([session.run(x[i : i + 1]) for i in range(8)])
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-5)


class _LayerScaleBlock(nn.Module):
    """A ConvNeXt block: depthwise 7x7, LayerNorm and an MLP over the channels-last map, then a per-channel layer
    scale (trained: not uniform). The converter folds the scale into ``fc2``, leaving its bias shaped [1, 1, 1, C],
    which ai-edge-quantizer quantizes with C scales on an axis of size 1: LiteRT refuses such a file."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, 2)
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.ln = nn.LayerNorm(16)
        self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(64, 16)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1) * 0.1)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.fc2(torch.relu(self.fc1(self.ln(self.dw(x).permute(0, 2, 3, 1))))).permute(0, 3, 1, 2)
        return self.head((x + self.gamma * y).mean((2, 3)))


def test_an_int8_file_litert_cannot_load_fails_its_export_naming_why(tmp_path: Path, monkeypatch) -> None:
    """It failed only at measurement, as if the runtime had broken; the export now fails with LiteRT's reason and
    leaves no file a later run would measure. The file is the layer-scale block's int8 without the bias reshape
    that makes it loadable (the next test), as every such model's was before it."""
    from edgebench.runtimes.litert import export

    monkeypatch.setattr(export, "_with_flat_fc_biases", lambda fp32_path, out_path: False)
    torch.manual_seed(0)
    calibration = np.random.default_rng(0).random((16, 3, 32, 32), dtype=np.float32)
    with pytest.raises(ArtifactError, match=r"ai-edge-quantizer wrote an int8 \.tflite LiteRT cannot load \(.*scale"):
        get_exporter("tflite").export(_LayerScaleBlock().eval(), QuantSpec(precision="int8", calibration_samples=16),
                                      calibration, tmp_path / "m-int8.tflite")
    assert not (tmp_path / "m-int8.tflite").exists()


def test_a_torchscript_program_is_refused_before_training_and_an_exported_one_is_not(tmp_path: Path) -> None:
    """litert-torch converts through torch.export, which cannot trace TorchScript: its export failed after the run's
    checks ('ScriptModule has not been initialized'); the exporter's refusal says so before any training."""
    from edgebench.models.weights import load_program

    model = create_model("digits_cnn", num_classes=10, in_channels=1, width=0.5).eval()
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 1, 8, 8)), tmp_path / "net.ts")
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(model, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},)),
                      tmp_path / "net.pt2")
    exporter = get_exporter("tflite")
    assert exporter.refuses(load_program(tmp_path / "net.ts", "torchscript"), (1, 8, 8)) == (
        "a TorchScript program cannot go through torch.export (LiteRT's converter): give the model's code and a state "
        "dict, or a torch.export (.pt2) program")
    assert exporter.refuses(load_program(tmp_path / "net.pt2", "exported_program"), (1, 8, 8)) is None
    assert exporter.refuses(model, (1, 8, 8)) is None


class _FunctionalMaxPool(nn.Module):
    """``F.adaptive_max_pool2d`` written in forward, as a model's own code calls it (no layer to find by type)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_max_pool2d(x, self.size)


@pytest.mark.parametrize("pool, cells", [(nn.AdaptiveMaxPool2d(1), 1), (_FunctionalMaxPool((3, 2)), 6),
                                         (_FunctionalMaxPool((4, 4)), 16)],
                         ids=["global-layer", "functional-windows-divide", "functional-uneven-windows"])
def test_adaptive_max_pools_convert_to_ops_litert_lowers(pool: nn.Module, cells: int, tmp_path: Path) -> None:
    """litert-torch 0.10 has no lowering for aten.adaptive_max_pool2d ('Lowering not found'): every LiteRT export
    of a model with a global max pool, as a layer or as F.adaptive_max_pool2d in forward, failed after training.
    The exporter rewrites it: max_pool2d where the 6x6 map divides into the output, per-window amax where it does
    not (4x4 of 6: windows [0,2) [1,3) [3,5) [4,6) overlap). The file gives the model's logits in fp32 and int8."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), pool, nn.Flatten(), nn.Linear(4 * cells, 3)).eval()
    import litert_torch

    with pytest.raises(Exception, match="adaptive_max_pool2d"):  # what the rewrite is for: litert-torch alone fails
        litert_torch.convert(model, (torch.zeros(1, 1, 8, 8),))
    exporter = get_exporter("tflite")
    assert exporter.refuses(model, (1, 8, 8)) is None
    calibration = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    expected = model(torch.from_numpy(calibration[:4])).detach().numpy()
    for precision, tolerance in (("fp32", 1e-5), ("int8", 0.05)):
        path = exporter.export(model, QuantSpec(precision=precision, calibration_samples=32), calibration,
                               tmp_path / f"{precision}.tflite")
        session = get_backend("litert").load(path, BackendSettings())
        got = np.concatenate([session.run(calibration[i:i + 1]) for i in range(4)])
        assert np.abs(got - expected).max() < tolerance * max(1.0, np.abs(expected).max()), precision


def test_a_layer_scale_folded_into_a_linear_gets_an_int8_file_litert_loads(tmp_path: Path) -> None:
    """The ConvNeXt block had no LiteRT int8 (the test above); with the folded bias reshaped to [C] before
    quantizing, its int8 file loads and gives the model's logits, and the fp32 file is untouched by it."""
    torch.manual_seed(0)
    model = _LayerScaleBlock().eval()
    calibration = np.random.default_rng(0).random((32, 3, 32, 32), dtype=np.float32)
    exporter = get_exporter("tflite")
    fp32 = exporter.export(model, QuantSpec(precision="fp32"), calibration, tmp_path / "fp32.tflite")
    int8 = exporter.export(model, QuantSpec(precision="int8", calibration_samples=32), calibration,
                           tmp_path / "int8.tflite", fp32_source=fp32)
    expected = model(torch.from_numpy(calibration[:4])).detach().numpy()
    for path, tolerance in ((fp32, 1e-5), (int8, 0.05)):
        session = get_backend("litert").load(path, BackendSettings())
        got = np.concatenate([session.run(calibration[i:i + 1]) for i in range(4)])
        assert np.abs(got - expected).max() < tolerance * max(1.0, np.abs(expected).max()), path.name


class _PreActBlock(nn.Module):
    """A pre-activation residual block (BN and ReLU before each conv; a 1x1 projection where the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.project = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.project(out) if self.project is not None else x
        return self.conv2(torch.relu(self.bn2(self.conv1(out)))) + shortcut


def test_a_channels_last_model_converts_to_the_same_function(tmp_path: Path) -> None:
    """A factory may return its model moved to torch.channels_last (a common speed habit). litert-torch converted
    such weights wrongly and silently: a trained pre-activation ResNet's .tflite scored chance (0.25 against 0.79
    in PyTorch and ONNX Runtime), logits 1.23 off. Here: an identity block then a strided one, BatchNorm statistics
    not the identity's; the file must give the logits of the model as written."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), _PreActBlock(16, 16, 1), _PreActBlock(16, 32, 2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    model = model.eval().to(memory_format=torch.channels_last)
    calibration = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    path = get_exporter("tflite").export(model, QuantSpec(precision="fp32"), calibration, tmp_path / "fp32.tflite")
    session = get_backend("litert").load(path, BackendSettings())
    expected = model(torch.from_numpy(calibration)).detach().numpy()
    got = np.concatenate([session.run(calibration[i:i + 1]) for i in range(4)])
    assert np.abs(got - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last)  # the user's model untouched


def _assert_fp32_and_int8_files_agree(model: nn.Module, calibration: np.ndarray, tmp_path: Path) -> None:
    """The model's fp32 .tflite and the int8 quantized from it give its logits on four images (to 1e-5 and 5 % of
    their scale)."""
    exporter = get_exporter("tflite")
    expected = model(torch.from_numpy(calibration[:4])).detach().numpy()
    fp32 = exporter.export(model, QuantSpec(precision="fp32"), calibration, tmp_path / "fp32.tflite")
    int8 = exporter.export(model, QuantSpec(precision="int8", calibration_samples=len(calibration)), calibration,
                           tmp_path / "int8.tflite", fp32_source=fp32)
    for path, tolerance in ((fp32, 1e-5), (int8, 0.05)):
        session = get_backend("litert").load(path, BackendSettings())
        got = np.concatenate([session.run(calibration[i:i + 1]) for i in range(4)])
        assert np.abs(got - expected).max() < tolerance * max(1.0, np.abs(expected).max()), path.name


class _Resized(nn.Module):
    """A conv, then ``F.interpolate`` with PyTorch's default (legacy ``nearest``) mode to ``size``/``scale``."""

    def __init__(self, out_pixels: int, **resize: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.resize = resize
        self.fc = nn.Linear(4 * out_pixels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        resized = torch.nn.functional.interpolate(torch.relu(self.conv(x)), **self.resize)
        return self.fc(resized.view(resized.size(0), -1))  # a view: the resize's output is contiguous in PyTorch


@pytest.mark.parametrize(("resize", "pixels", "rows"), [
    ({"scale_factor": 0.5}, 8 * 8, [0, 2, 4, 6, 8, 10, 12, 14]),
    ({"size": (7, 5)}, 7 * 5, [0, 2, 4, 6, 9, 11, 13]),
    ({"scale_factor": 2}, 32 * 32, None),
], ids=["half", "uneven-size", "integer-upsampling"])
def test_a_nearest_resize_converts_to_the_pixels_pytorch_reads(resize: dict, pixels: int, rows: list | None,
                                                              tmp_path: Path) -> None:
    """litert-torch writes PyTorch's legacy ``nearest`` as LiteRT's half-pixel nearest resize (PyTorch's
    ``nearest-exact``): rows 1, 3, 5... of a halving where PyTorch reads 0, 2, 4 (floor(i * 16 / 8)); to 7 rows of 16,
    floor(i * 16 / 7) = 0, 2, 4, 6, 9, 11, 13 against floor((i + 0.5) * 16 / 7) = 1, 3, 5, 8, 10, 12, 14. A model
    downsampling that way got a .tflite 8.05 off its logits and nothing failed. Integer upsampling reads the same
    pixels both ways and keeps LiteRT's own op."""
    from edgebench.runtimes.litert.export import _NEAREST, _misconverted, _source_rows

    torch.manual_seed(0)
    model = _Resized(pixels, **resize).eval()
    calibration = np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    assert _misconverted(model, torch.from_numpy(calibration[:1])) == (rows is not None)
    if rows is not None:  # the rows read off PyTorch's op are the ones its definition gives
        graph = torch.export.export(model, (torch.from_numpy(calibration[:1]),)).module()
        (node,) = [n for n in graph.graph.nodes if n.op == "call_function" and n.target in _NEAREST]
        assert _source_rows(node)[0].tolist() == rows
    _assert_fp32_and_int8_files_agree(model, calibration, tmp_path)


@pytest.mark.parametrize("pool", [nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
                                  nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                                  nn.AvgPool2d((3, 5), (1, 2), padding=(1, 2), count_include_pad=False)],
                         ids=["square", "ceil-mode", "rectangular"])
def test_an_average_pool_leaving_its_padding_uncounted_gets_an_int8_file(pool: nn.Module, tmp_path: Path) -> None:
    """litert-torch lowers such a pool to a StableHLO reduce_window that ai-edge-quantizer cannot calibrate: the
    int8 export failed ("Failed to get quantization parameters for tensor: STABLEHLO_REDUCE_WINDOW..."). Written as
    the pool that counts the padding over the pool of an all-ones image (each window's share of real pixels), both
    files give the model's logits; at the border of a 3x3 window with padding 1, 4 of 9 pixels are real, so
    counting the padding alone would read 4/9 of the value there."""
    from edgebench.runtimes.litert.export import _misconverted

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), pool, nn.Flatten())
    calibration = np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    features = model(torch.zeros(1, 3, 16, 16)).shape[1]
    model = nn.Sequential(*model, nn.Linear(features, 3)).eval()
    assert _misconverted(model, torch.from_numpy(calibration[:1]))
    _assert_fp32_and_int8_files_agree(model, calibration, tmp_path)


@pytest.mark.parametrize("size", [5, 4], ids=["odd-window", "even-window"])
def test_a_local_response_norm_gets_an_int8_file(size: int, tmp_path: Path) -> None:
    """LRN (AlexNet) pools the squares of neighbouring channels with a (size, 1, 1) ``avg_pool3d``, which litert-torch
    lowers to a reduce_window ai-edge-quantizer cannot calibrate: no int8 file. Written as a 1x1 convolution whose
    weights are 1/size over each window (exact), both files give the model's logits. The known answer of the band:
    channel i of the pooled map averages padded channels i..i+size-1."""
    from edgebench.runtimes.litert.export import _misconverted, _without_channel_pools

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.LocalResponseNorm(size, alpha=0.5),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    calibration = 4 * np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)
    example = torch.from_numpy(calibration[:1])
    assert _misconverted(model, example)
    graph = torch.export.export(model, (example,)).module()
    assert _without_channel_pools(graph) == 1
    band = next(b for name, b in graph.named_buffers() if name.startswith("_channel_window"))
    assert band.shape == (8, 8 + size - 1, 1, 1) and torch.equal(band[2, 2:2 + size, 0, 0], torch.full((size,), 1 / size))
    assert band[2].sum() == pytest.approx(1.0) and int((band[2] != 0).sum()) == size
    torch.testing.assert_close(graph(example), model(example), rtol=1e-5, atol=1e-6)
    _assert_fp32_and_int8_files_agree(model, calibration, tmp_path)


class _SignBranch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x  # data-dependent: torch.fx cannot trace it


def test_a_model_fx_cannot_trace_is_converted_as_it_is_with_the_reason_logged(caplog) -> None:
    """The BN fold's trace failure was swallowed: a decoder's int8 file then failed with no hint why it was not folded."""
    from edgebench.runtimes.litert.export import _with_transposed_bns_folded

    model = _SignBranch()
    with caplog.at_level("WARNING", logger="edgebench.runtimes.litert.export"):
        assert _with_transposed_bns_folded(model) is model
    assert any("cannot trace" in r.getMessage() and "control flow" in r.getMessage() for r in caplog.records)


def test_an_op_litert_cannot_lower_is_named_with_the_models_line(tmp_path: Path) -> None:
    """torch.median failed every LiteRT export after training with "Lowering not found: aten.median.dim" and an FX
    graph dump the job's one-line error cut off mid-word."""
    from layer_nets import RowMedianNet, line_marked

    with pytest.raises(UnsupportedModelError) as refused:
        get_exporter("tflite").export(RowMedianNet().eval(), QuantSpec(precision="fp32"),
                                      np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32), tmp_path / "m.tflite")
    assert str(refused.value) == (
        f"LiteRT's converter has no conversion for aten.median.dim (called at {Path(__file__).parent / 'layer_nets.py'}:"
        f"{line_marked(RowMedianNet, 'MEDIAN_LINE')}): write that step of the model with ops it converts, or leave the "
        "LiteRT targets out of the experiment")
