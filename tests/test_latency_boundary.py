"""What one-layer models pay at their edges (latency/boundary.py): the arithmetic on tables written by hand, and
the chain model that measures it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgebench.prune.allocation.latency.boundary import BoundaryCosts, tensor_probe
from edgebench.prune.allocation.latency.predict import CalibratedTables
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape, layer_onnx

CONV = LayerShape("Conv", 64, 64, (3, 3), (1, 1), (1, 1), (32, 32))
DOWN = LayerShape("Conv", 64, 128, (3, 3), (2, 2), (1, 1), (32, 32))  # out: 128 channels at 16x16
SMALL = LayerShape("Conv", 16, 16, (3, 3), (1, 1), (1, 1), (32, 32))
CALL_MS = 0.0351
#: tables written by hand (ms): each probe alone, and three of it in a chain; the 64-channel pair is what OpenVINO
#: measured on the Intel guest (README), the others are made up
ALONE = {tensor_probe(64, (32, 32)): 0.3705, tensor_probe(128, (16, 16)): 0.10, tensor_probe(16, (32, 32)): 0.10,
         CONV: 0.742, SMALL: 0.15}
CHAINS = {tensor_probe(64, (32, 32)): 0.4478, tensor_probe(128, (16, 16)): 0.16, tensor_probe(16, (32, 32)): 0.16}


def costs() -> BoundaryCosts:
    return BoundaryCosts(LatencyTable(None, "t", "r", "v", ALONE.__getitem__),
                         LatencyTable(None, "t", "r-chain", "v", CHAINS.__getitem__), CALL_MS)


def test_a_tensors_edges_are_one_layer_alone_less_its_share_of_a_chain_and_the_call() -> None:
    b = costs()
    # by hand: inside the chain a 64-channel 1x1 layer costs (0.4478 - 0.3705) / 2 = 0.03865 ms, so of its one-layer
    # model's 0.3705 ms, 0.3705 - 0.03865 - 0.0351 = 0.29675 ms are the edges
    assert b.tensor_ms(64, (32, 32)) == pytest.approx(0.29675)
    assert b.layer_ms(CONV) == pytest.approx(0.29675)  # its input and output are the same tensor
    # a strided layer: half of each tensor's; the 128-channel one: 0.10 - (0.16 - 0.10) / 2 - 0.0351 = 0.0349 ms
    assert b.layer_ms(DOWN) == pytest.approx((0.29675 + 0.0349) / 2)
    assert b.layer_ms(LayerShape("Gemm", 64, 10)) == 0.0
    cheaper_alone = BoundaryCosts(LatencyTable(None, "t", "r", "v", lambda _: 0.05),
                                  LatencyTable(None, "t", "r-chain", "v", lambda _: 0.20), CALL_MS)
    assert cheaper_alone.tensor_ms(8, (4, 4)) == 0.0  # 0.05 - 0.075 - 0.0351 < 0: no edges, never negative
    chain_faster = BoundaryCosts(LatencyTable(None, "t", "r", "v", lambda _: 0.06),
                                 LatencyTable(None, "t", "r-chain", "v", lambda _: 0.05), CALL_MS)
    # three layers timed faster than one (noise): a layer in the chain costs at least nothing, so all but the call
    # is edges: 0.06 - 0 - 0.0351
    assert chain_faster.tensor_ms(8, (4, 4)) == pytest.approx(0.06 - CALL_MS)


def test_the_prediction_takes_each_layers_edges_off_its_entry() -> None:
    table = LatencyTable(None, "t", "r", "v", ALONE.__getitem__)
    prediction = CalibratedTables([CONV], table, unpruned_p50_ms=1.0, call_overhead_ms=CALL_MS, boundary=costs()).predict([SMALL])
    # by hand: SMALL's edges are those of a 16-channel 32x32 tensor, 0.10 - 0.03 - 0.0351 = 0.0349 ms, so it computes
    # 0.15 - 0.0351 - 0.0349 = 0.08 ms; CONV computes 0.742 - 0.0351 - 0.29675 = 0.41015 ms; the prediction is
    # 0.0351 + (1.0 - 0.0351) x 0.08 / 0.41015
    assert prediction.table_ms == pytest.approx(0.08) and prediction.unpruned_table_ms == pytest.approx(0.41015)
    assert prediction.p50_ms == pytest.approx(0.0351 + 0.9649 * 0.08 / 0.41015)
    assert prediction.boundary_ms == pytest.approx(0.0349)


def test_a_chain_model_repeats_the_layer_and_refuses_one_that_changes_the_tensor(tmp_path: Path) -> None:
    import onnxruntime as ort

    shape = tensor_probe(4, (5, 5))
    layer_onnx(shape, tmp_path / "chain.onnx", copies=3)
    model = onnx.load(str(tmp_path / "chain.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"] * 3
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    x = np.random.default_rng(1).standard_normal((1, 4, 5, 5)).astype(np.float32)
    expected = x
    for i in range(3):  # a 1x1 conv is a matrix product over the channels at every pixel
        w, bias = weights[f"w{i}"][:, :, 0, 0], weights[f"b{i}"]
        expected = np.maximum(np.einsum("oc,nchw->nohw", w, expected) + bias[None, :, None, None], 0)
    got = ort.InferenceSession(str(tmp_path / "chain.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="keeps its tensor's shape"):
        layer_onnx(DOWN, tmp_path / "down.onnx", copies=3)
