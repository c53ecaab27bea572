"""The dynamo ONNX export with one torchlib registry per process writes what torch.onnx's own path writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from layer_nets import AttentionNet, RowMedianNet, line_marked
from torch import nn

from edgebench.errors import UnsupportedModelError
from edgebench.models.digits_cnn import digits_cnn
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.runtimes.onnxruntime.torchlib_registry import share_torchlib_registry
from edgebench.variants import QuantSpec

registration = pytest.importorskip("torch.onnx._internal.exporter._registration")


def test_a_shared_registry_exports_the_same_bytes_as_a_fresh_one(tmp_path: Path, monkeypatch) -> None:
    torch.manual_seed(0)
    model, example = digits_cnn().eval(), torch.randn(1, 1, 8, 8)
    assert share_torchlib_registry()
    shared = [tmp_path / "shared-1.onnx", tmp_path / "shared-2.onnx"]
    for path in shared:  # the first builds the registry, the second gets a copy of it
        export_fp32_onnx(model, example, path)
    unshared = registration.ONNXRegistry.from_torchlib.unshared
    monkeypatch.setattr(registration.ONNXRegistry, "from_torchlib", classmethod(unshared.__func__))
    monkeypatch.setattr("edgebench.runtimes.onnxruntime.export.share_torchlib_registry", lambda: False)
    export_fp32_onnx(model, example, tmp_path / "fresh.onnx")
    fresh = (tmp_path / "fresh.onnx").read_bytes()
    assert [path.read_bytes() == fresh for path in shared] == [True, True]
    assert [node.op_type for node in onnx.load(tmp_path / "fresh.onnx").graph.node].count("Conv") == 3


def test_an_op_registered_into_one_export_s_registry_does_not_leak_into_the_next() -> None:
    assert share_torchlib_registry()
    first = registration.ONNXRegistry.from_torchlib()
    target = torch.ops.aten.relu.default
    before = len(first.get_decomps(target))
    first.register_op(target, lambda x: x)  # what torch.onnx does with a custom_translation_table
    assert len(first.get_decomps(target)) == before + 1
    assert len(registration.ONNXRegistry.from_torchlib().get_decomps(target)) == before


def test_the_artifact_holds_the_graph_and_weights_not_the_exporters_debugging_notes(tmp_path: Path) -> None:
    """The dynamo exporter records each node's stack trace (the model file's path), module and FX node; left in, they
    outweighed a small model's weights and shipped the build machine's paths in the deployed file."""
    import inspect

    import numpy as np
    import onnxruntime as ort

    torch.manual_seed(0)
    model, example = digits_cnn().eval(), torch.randn(1, 1, 8, 8)
    export_fp32_onnx(model, example, tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    values = [*proto.graph.value_info, *proto.graph.input, *proto.graph.output]
    assert [len(n.metadata_props) for n in proto.graph.node] == [0] * len(proto.graph.node)
    assert sum(len(v.metadata_props) for v in values) == 0 and len(proto.graph.metadata_props) == 0
    assert inspect.getsourcefile(digits_cnn).encode() not in (tmp_path / "m.onnx").read_bytes()
    weights = sum(t.ByteSize() for t in proto.graph.initializer)
    assert (tmp_path / "m.onnx").stat().st_size < weights + 16_384  # the weights plus a graph's worth of bytes
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0],
                                   model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_the_fp16_file_is_valid_onnx_with_its_macs_counted(tmp_path: Path) -> None:
    """The fp16 converter appends the input's Cast after the nodes reading it; the file is sorted again, so the
    ONNX checker takes it and shape inference (which the graph's MAC count needs) sees every node."""
    from edgebench.models.graph_cost import graph_cost
    from edgebench.runtimes.onnxruntime.fp16 import convert_fp16

    torch.manual_seed(0)
    export_fp32_onnx(digits_cnn().eval(), torch.randn(1, 1, 8, 8), tmp_path / "fp32.onnx")
    convert_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    onnx.checker.check_model(onnx.load(tmp_path / "fp16.onnx"), full_check=True)
    fp16, fp32 = (graph_cost(tmp_path / f"{name}.onnx", "onnx", (1, 8, 8)) for name in ("fp16", "fp32"))
    assert fp16["macs"] == fp32["macs"] > 0


def test_fp16_weights_clamped_beyond_fp16s_range_are_named_in_a_warning_and_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """fp16's largest finite value is (2 - 2^-10) x 2^15 = 65504; ORT's converter clamps beyond it (70000 -> 65504
    where rounding gives inf), which moved these logits by ~6 % unannounced. Each such tensor is named with its value
    in one warning line and in the file's quantization record; a value fp16 rounds (the tie 1 + 2^-11 -> 1.0,
    65505 -> 65504) is not, nor one lifted from below the smallest subnormal 2^-24 (1e-8 -> 5.96e-8: a change of
    5e-8, which would name a tensor of almost any trained model)."""
    from edgebench.runtimes.onnxruntime.fp16 import convert_fp16
    from edgebench.runtimes.onnxruntime.mixed_precision import read_decision

    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    with torch.no_grad():
        model[0].weight[:, 0, 0, 0] = torch.tensor([1 + 2**-11, 70000.0, 65505.0])
        model[0].bias[:] = torch.tensor([1e-8, 3.0, 0.0])
    export_fp32_onnx(model, torch.randn(1, 1, 4, 4), tmp_path / "fp32.onnx")
    with caplog.at_level("WARNING", logger="edgebench.runtimes.onnxruntime.fp16"):
        convert_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(tmp_path / "fp16.onnx").graph.initializer}
    assert stored["0.weight"].ravel().tolist() == [1.0, 65504.0, 65504.0]  # the conversion itself is kept
    assert stored["0.bias"].ravel().tolist() == [2.0**-24, 3.0, 0.0]
    clamped = ["'0.weight' 7e+04 -> 6.55e+04 (1 of 3 values)"]
    assert read_decision(tmp_path / "fp16.onnx") == {"fp16_clamped": clamped}
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "\n" not in warning and all(c in warning for c in clamped)
    session = get_backend("onnxruntime").load(tmp_path / "fp16.onnx", BackendSettings(threads=1, precision="fp16"))
    assert session.details()["quantization"] == {"fp16_clamped": clamped}  # what each measurement stores

    caplog.clear()
    with torch.no_grad():
        model[0].weight[1] = 3.0
        model[0].bias[0] = 1.0
    export_fp32_onnx(model, torch.randn(1, 1, 4, 4), tmp_path / "fp32.onnx")
    with caplog.at_level("WARNING", logger="edgebench.runtimes.onnxruntime.fp16"):
        convert_fp16(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    assert read_decision(tmp_path / "fp16.onnx") is None
    assert not [r for r in caplog.records if r.name == "edgebench.runtimes.onnxruntime.fp16"]


class _BranchOnValue(nn.Module):
    """forward takes one of two branches by the features' sign: a trace keeps the one its example took."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean((2, 3))
        if y.mean() > 0:
            y = -y
        return self.fc(y)


def test_a_branch_on_a_tensors_value_is_refused_naming_the_line_not_exported_half(tmp_path: Path) -> None:
    """The TorchScript fallback kept the branch the example took, with its TracerWarning silenced: a wrong file."""
    import inspect

    from edgebench.errors import UnsupportedModelError

    line = inspect.getsourcelines(_BranchOnValue.forward)[1] + 2  # the `if`
    with pytest.raises(UnsupportedModelError, match=rf"branch at {re.escape(__file__)}:{line} "):
        export_fp32_onnx(_BranchOnValue().eval(), torch.randn(2, 1, 8, 8), tmp_path / "branch.onnx")
    assert not (tmp_path / "branch.onnx").exists()


class _ViewNet(nn.Module):
    """A conv net that flattens as much user code does, with x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.fc(x.view(x.size(0), -1))


def _dynamic_batch_program(net: nn.Module, path: Path) -> nn.Module:
    """``net`` saved as a .pt2 with a dynamic batch, as a user exports it, and loaded as edgebench loads weights."""
    from edgebench.models.weights import load_program

    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},)), path)
    return load_program(path, "exported_program")


def test_a_dynamic_batch_torch_export_program_exports_to_onnx_that_runs_at_every_batch(tmp_path: Path) -> None:
    """The dynamo export of a .pt2 program failed (its graph module sat under the wrapper's name "graph", a
    GraphModule's fx Graph) and the TorchScript fallback wrote x.size(0) as the example's 2: the file declared a
    dynamic batch and every ONNX job failed in ONNX Runtime (Gemm dimension mismatch)."""
    torch.manual_seed(0)
    net = _ViewNet().eval()
    program = _dynamic_batch_program(net, tmp_path / "net.pt2")
    export_fp32_onnx(program, torch.randn(2, 1, 8, 8), tmp_path / "net.onnx")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = torch.randn(batch, 1, 8, 8)
        with torch.no_grad():
            expected = net(x).numpy()
        np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-5)


def test_litert_converts_a_torch_export_program(tmp_path: Path) -> None:
    """LiteRT's conversion re-exports the model with torch.export; a .pt2 program's failed ("references nonexistent
    attribute stem of graph") and neither of its LiteRT jobs ran."""
    pytest.importorskip("litert_torch", reason="LiteRT export is the extra 'litert'")
    torch.manual_seed(0)
    net = _ViewNet().eval()
    program = _dynamic_batch_program(net, tmp_path / "net.pt2")
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    path = get_exporter("tflite").export(program, QuantSpec(), x, tmp_path / "net.tflite")
    session = get_backend("litert").load(path, BackendSettings(threads=1))
    with torch.no_grad():
        expected = net(torch.from_numpy(x[:1])).numpy()
    np.testing.assert_allclose(session.run(x[:1]), expected, atol=1e-5)


class _IntBatchReshape(nn.Module):
    """Reshapes by the batch read as a Python int: the TorchScript tracer writes the example's batch as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).reshape(int(x.size(0)), -1))


def test_a_fallback_export_that_runs_only_at_its_traced_batch_is_refused_not_stored(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """Where the dynamo exporter fails, the TorchScript exporter's file declares a dynamic batch whatever the tracer
    fixed: one that fails at another batch is refused in one line, and a flatten's file still exports."""
    from edgebench.errors import UnsupportedModelError

    exporter = torch.onnx.export

    def failing_dynamo(*args, dynamo: bool = True, **kwargs):
        if dynamo:
            raise RuntimeError("Failed to decompose the FX graph")
        return exporter(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", failing_dynamo)
    with pytest.raises(UnsupportedModelError, match=r"^ONNX export of _IntBatchReshape: the dynamo exporter failed "
                                                    r"\(Failed to decompose the FX graph\) and the TorchScript "
                                                    r"exporter's file, traced at batch 2, fails \(.+\) at batch 3; "):
        export_fp32_onnx(_IntBatchReshape().eval(), torch.randn(2, 1, 8, 8), tmp_path / "fixed.onnx")
    assert not (tmp_path / "fixed.onnx").exists()
    flat = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    export_fp32_onnx(flat, torch.randn(2, 1, 8, 8), tmp_path / "flat.onnx")
    session = ort.InferenceSession(str(tmp_path / "flat.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.ones((5, 1, 8, 8), np.float32)})[0].shape == (5, 3)



def test_an_attention_model_keeps_a_dynamic_batch_and_int8_calibrates_on_batches(tmp_path: Path) -> None:
    """torch.export fixed an attention model's batch at the one example image: static int8 calibration on 32 images
    then failed in ONNX Runtime ('Got: 32 Expected: 1'), as did the offline scenario."""
    model, x = AttentionNet().eval(), np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32)
    exporter = get_exporter("onnx")
    for quant in (QuantSpec(), QuantSpec(precision="int8", calibration_samples=32)):
        path = exporter.export(model, quant, x, tmp_path / f"{quant.precision}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert not isinstance(session.get_inputs()[0].shape[0], int)  # symbolic: any batch
        with torch.no_grad():
            expected = model(torch.from_numpy(x[:8])).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x[:8]})[0]
        assert got.shape == (8, 4) and np.abs(got - expected).max() < (1e-4 if quant.precision == "fp32" else 0.5)


def test_litert_refuses_the_same_branch_naming_the_line(tmp_path: Path) -> None:
    """LiteRT's torch.export failed with a GuardOnDataDependentSymNode message cut mid-sentence in the store."""
    pytest.importorskip("litert_torch", reason="LiteRT export is the extra 'litert'")
    import inspect

    from edgebench.errors import UnsupportedModelError

    line = inspect.getsourcelines(_BranchOnValue.forward)[1] + 2
    with pytest.raises(UnsupportedModelError, match=rf"tensor's value at {re.escape(__file__)}:{line} "):
        get_exporter("tflite").export(_BranchOnValue().eval(), QuantSpec(), np.ones((2, 1, 8, 8), np.float32),
                                      tmp_path / "branch.tflite")


def test_an_op_in_a_model_unpickled_by_value_is_named_with_its_file(tmp_path: Path) -> None:
    """An exporter's worker reads the pipeline's saved model, whose classes from the user's file cloudpickle wrote by
    value and named "<dynamic-code>": the refusal said "called at <dynamic-code>:7" instead of the file."""
    import io

    from edgebench.models.whole_module import save_whole
    from edgebench.plugins import load_file

    nets = (tmp_path / "nets.py").resolve()
    nets.write_text("import torch\nfrom torch import nn\n\n\nclass Med(nn.Module):\n"
                    "    def forward(self, x):\n        return x - torch.median(x)\n")
    buffer = io.BytesIO()
    save_whole(nn.Sequential(nn.Conv2d(1, 2, 3), load_file(nets).Med()), buffer)
    buffer.seek(0)
    model = torch.load(buffer, weights_only=False)
    assert type(model[1]).forward.__code__.co_filename == "<dynamic-code>"  # as a worker gets it
    with pytest.raises(UnsupportedModelError) as refused:
        export_fp32_onnx(model.eval(), torch.rand(2, 1, 8, 8), tmp_path / "m.onnx")
    assert f"aten::median (called at {nets}:7): " in str(refused.value)


def test_an_op_onnx_cannot_export_is_named_with_the_models_line(tmp_path: Path) -> None:
    """torch.median failed every ONNX export after training with the exporter's "Exporting the operator 'aten::median'
    to ONNX opset version 17 is not supported", naming neither the model's line nor what to do."""
    with pytest.raises(UnsupportedModelError) as refused:
        export_fp32_onnx(RowMedianNet().eval(), torch.rand(2, 1, 8, 8), tmp_path / "m.onnx")
    assert str(refused.value) == (
        f"ONNX export (opset 17) has no conversion for aten::median (called at {Path(__file__).parent / 'layer_nets.py'}:"
        f"{line_marked(RowMedianNet, 'MEDIAN_LINE')}): write that step of the model with ops it converts, or leave the "
        "targets that load ONNX out of the experiment")
