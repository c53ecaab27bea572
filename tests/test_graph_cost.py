"""Parameters and MACs of artifacts other tools made, counted from their graphs, against counts done by hand.

The network: a 3x3 conv 1->4 (padding 1) on 1x8x8, a 3x3 depthwise conv on 4 channels without bias, a 2x2
stride-2 transposed conv 4->2 (to 2x16x16) and a Linear 512->10. By hand, MACs: 4*64*9 = 2304, 4*64*9 = 2304,
(4*8*8 input elements) * (2*2*2) = 2048, 512*10 = 5120, total 11,776; parameters: 36+4, 36, 32+2, 5120+10 = 5240.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from edgebench.models.cost import count_macs, count_params
from edgebench.models.graph_cost import graph_cost

MACS, PARAMS = 11_776, 5_240


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.up(self.depthwise(torch.relu(self.conv(x)))).flatten(1))


class _Images:
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"x": rng.random((1, 1, 8, 8), dtype=np.float32)} for _ in range(4)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("graphs") / "net.onnx"
    torch.onnx.export(_Net().eval(), (torch.zeros(1, 1, 8, 8),), path, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    return path


def test_pytorch_counter_agrees_with_the_hand_count():
    assert (count_params(_Net()), count_macs(_Net(), (1, 8, 8))) == (PARAMS, MACS)


def test_fp32_onnx_with_a_symbolic_batch(fp32_onnx):
    assert graph_cost(fp32_onnx, "onnx", (1, 8, 8)) == {"params": PARAMS, "macs": MACS}


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_onnx_runtime_int8_counts_as_its_float_twin(fp32_onnx, fmt):
    from onnxruntime.quantization import QuantFormat, quantize_static

    out = fp32_onnx.with_name(f"int8-{fmt}.onnx")
    quantize_static(str(fp32_onnx), str(out), _Images(), quant_format=getattr(QuantFormat, fmt))
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert ("QGemm" in ops) == (fmt == "QOperator")  # ONNX Runtime's own op, whose shapes onnx cannot infer
    assert graph_cost(out, "onnx", (1, 8, 8)) == {"params": PARAMS, "macs": MACS}


def test_dynamic_int8_counts_its_matmul(fp32_onnx):
    from onnxruntime.quantization import quantize_dynamic

    out = fp32_onnx.with_name("dynamic.onnx")
    quantize_dynamic(str(fp32_onnx), str(out))
    assert any(n.op_type == "Add" for n in onnx.load(out).graph.node)  # the quantizer moved the Gemm's bias there
    assert graph_cost(out, "onnx", (1, 8, 8)) == {"params": PARAMS, "macs": MACS}  # the bias still counted


def test_a_fixed_batch_is_counted_per_image(tmp_path):
    path = tmp_path / "batch4.onnx"
    torch.onnx.export(_Net().eval(), (torch.zeros(4, 1, 8, 8),), path, dynamo=False)
    assert graph_cost(path, "onnx", (1, 8, 8))["macs"] == MACS


def test_an_unknown_op_that_may_multiply_makes_the_macs_unknown_not_partial(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("TeamConv", ["y"], ["z"], domain="team.ops")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.0] * 18)])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("team.ops", 1)]),
              path)
    assert graph_cost(path, "onnx", (1, 8, 8)) == {"params": 18, "macs": None}


def test_why_a_graph_could_not_be_run_for_its_shapes_is_logged(tmp_path, caplog):
    """ONNX Runtime's refusal to run a graph for its tensor shapes was swallowed: the debug log now says why."""
    nodes = [helper.make_node("TeamConv", ["x"], ["y"], domain="team.ops"), helper.make_node("Conv", ["y", "w"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              [helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.0] * 18)])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("team.ops", 1)]),
              path)
    with caplog.at_level("DEBUG", logger="edgebench.models.graph_cost"):
        graph_cost(path, "onnx", (1, 8, 8))
    assert any("cannot run the graph" in r.getMessage() and "TeamConv" in r.getMessage() for r in caplog.records)


def test_tflite_from_litert_torch(tmp_path):
    litert_torch = pytest.importorskip("litert_torch", reason="the 'litert' extra is not installed")
    path = tmp_path / "net.tflite"
    litert_torch.convert(_Net().eval(), (torch.zeros(1, 1, 8, 8),)).export(str(path))
    cost = graph_cost(path, "tflite", (1, 8, 8))
    assert cost["macs"] == MACS
    # the converter stores a zero bias for the bias-free depthwise conv (4 constants): not one of the model's
    # parameters, so the file counts PyTorch's (as the ONNX export of the same model does)
    assert cost["params"] == PARAMS


def test_a_recurrent_op_leaves_the_macs_unknown_not_partial(tmp_path: Path) -> None:
    """An LSTM node was skipped: the conv and the classifier alone were given as the file's MACs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 64, 8], np.zeros(512, np.float32))
    r = helper.make_tensor("r", TensorProto.FLOAT, [1, 64, 16], np.zeros(1024, np.float32))
    lstm = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=16)
    path = tmp_path / "lstm.onnx"
    onnx.save(helper.make_model(helper.make_graph([lstm], "g", [x], [y], [w, r])), path)
    assert graph_cost(path, "onnx", (5, 8))["macs"] is None


class _Residual(nn.Module):
    """Counted by hand on 1x8x8: conv 1->4 3x3 (2304 MACs, 40 params), conv 4->4 3x3 (9216, 148), a residual add,
    conv 4->4 1x1 after it (1024, 20), global average pool, Linear 4->10 (40, 50): 12,584 MACs, 258 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.conv3, self.pool, self.fc = nn.Conv2d(4, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        return self.fc(self.pool(self.conv3(x + torch.relu(self.conv2(x)))).flatten(1))


@pytest.fixture(scope="module")
def residual_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("residual") / "residual.onnx"
    torch.onnx.export(_Residual().eval(), (torch.zeros(1, 1, 8, 8),), path, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    return path


def test_qoperator_ops_onnx_cannot_infer_are_followed_by_a_run(residual_onnx):
    """ONNX's shape inference stops at ONNX Runtime's QLinearAdd: the conv after it is sized by running the graph."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    out = residual_onnx.with_name("qoperator.onnx")
    quantize_static(str(residual_onnx), str(out), _Images(), quant_format=QuantFormat.QOperator)
    assert {"QLinearAdd", "QLinearConv"} <= {n.op_type for n in onnx.load(out).graph.node}
    assert graph_cost(out, "onnx", (1, 8, 8)) == {"params": 258, "macs": 12_584}


@pytest.mark.parametrize("keep_io_types", [True, False])
def test_a_float16_conversion_is_counted(residual_onnx, keep_io_types):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = residual_onnx.with_name(f"fp16-{keep_io_types}.onnx")
    onnx.save(convert_float_to_float16(onnx.load(residual_onnx), keep_io_types=keep_io_types), out)
    assert graph_cost(out, "onnx", (1, 8, 8)) == {"params": 258, "macs": 12_584}


def test_integer_constants_added_are_index_arithmetic_not_parameters(tmp_path):
    """A float constant added on its own is a bias (2 parameters beside the conv's 18); the int64 one the dynamo
    exporter adds to compute indices (its flatten of a ResNet's pooled features, as a Gather) is not."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y", "b"], ["z"]),
             helper.make_node("Shape", ["z"], ["s"]),
             helper.make_node("Add", ["s", "k"], ["index"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("index", TensorProto.INT64, None)],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.0] * 18),
         helper.make_tensor("b", TensorProto.FLOAT, [1, 2, 1, 1], [0.0] * 2),
         helper.make_tensor("k", TensorProto.INT64, [4], [0] * 4)])
    path = tmp_path / "index.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert graph_cost(path, "onnx", (1, 8, 8)) == {"params": 20, "macs": 2 * 64 * 9}


@pytest.mark.parametrize("form", ["fp32", "fp16", "int8", "nhwc"])
def test_an_openvino_ir_is_counted_as_its_onnx(fp32_onnx, tmp_path, form):
    """The IR ``ovc`` writes (weights compressed to float16 by default), one of an int8 QDQ file (int8 constants
    with their scales), and one taking channels-last images: the hand count, with the depthwise conv as OpenVINO's
    GroupConvolution and the transposed one as ConvolutionBackpropData."""
    ov = pytest.importorskip("openvino", reason="the 'openvino' extra is not installed")
    from onnxruntime.quantization import QuantFormat, quantize_static

    source = fp32_onnx
    if form == "int8":
        source = tmp_path / "int8.onnx"
        quantize_static(str(fp32_onnx), str(source), _Images(), quant_format=QuantFormat.QDQ)
    if form == "nhwc":
        source = tmp_path / "nhwc.onnx"
        torch.onnx.export(_NHWC().eval(), (torch.zeros(1, 8, 8, 1),), source, dynamo=False)
    xml = tmp_path / "ir" / "model.xml"
    ov.save_model(ov.convert_model(str(source)), str(xml), compress_to_fp16=form == "fp16")
    kinds = {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops()}
    assert {"GroupConvolution", "ConvolutionBackpropData", "MatMul"} <= kinds
    assert graph_cost(xml, "openvino", (1, 8, 8)) == {"params": PARAMS, "macs": MACS}


class _NHWC(_Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2))


def test_an_openvino_ir_with_a_recurrent_op_leaves_the_macs_unknown(tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino", reason="the 'openvino' extra is not installed")

    class ConvLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.lstm = nn.Conv2d(1, 4, 3, padding=1), nn.LSTM(32, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.conv(x).flatten(2).transpose(1, 2).reshape(x.shape[0], -1, 32))[0][:, -1]

    onnx_path, xml = tmp_path / "lstm.onnx", tmp_path / "ir" / "model.xml"
    torch.onnx.export(ConvLSTM().eval(), (torch.zeros(1, 1, 8, 8),), onnx_path, dynamo=False)
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml))
    assert any("LSTM" in op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops())
    assert graph_cost(xml, "openvino", (1, 8, 8))["macs"] is None


class _SharedScaledNormed(nn.Module):
    """A conv applied twice, a per-channel scale after a ReLU (nothing to fold it into) and a LayerNorm over the
    channels of a channels-last view, before a ReLU. By hand: conv 9*4+4 = 40, shared 4*4*9+4 = 148 (once), scale 4,
    norm 4+4, head 4*3+3 = 15: 215 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 4).reshape(1, 4, 1, 1))
        self.norm = nn.LayerNorm(4)
        with torch.no_grad():  # not its initial ones and zeros, which a converter drops as no-ops
            self.norm.weight.copy_(torch.tensor([0.5, 1.5, 2.0, 0.7]))
            self.norm.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05]))
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.conv(x))))))
        x = torch.relu(self.norm((x * self.scale).permute(0, 2, 3, 1)))
        return self.head(x.mean((1, 2)))


def test_a_shared_conv_counts_once_and_a_scale_or_norm_of_its_own_counts(tmp_path: Path) -> None:
    """A conv applied twice was counted twice from a TFLite file (17,930 for PyTorch's 12,722), and a layer scale (a
    Mul) from neither file, nor a LayerNorm the TFLite converter writes as arithmetic."""
    model = _SharedScaledNormed().eval()
    assert count_params(model) == 215
    onnx_path = tmp_path / "net.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), onnx_path, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    assert graph_cost(onnx_path, "onnx", (1, 8, 8))["params"] == 215
    litert_torch = pytest.importorskip("litert_torch", reason="the 'litert' extra is not installed")
    tflite_path = tmp_path / "net.tflite"
    litert_torch.convert(model, (torch.zeros(1, 1, 8, 8),)).export(str(tflite_path))
    assert graph_cost(tflite_path, "tflite", (1, 8, 8))["params"] == 215
