"""The XNNPACK sparse-inference check on a model description whose answer is known (the LiteRT test runs it on
a real converted model, which fails the structural conditions)."""

from __future__ import annotations

import numpy as np

from edgebench.runtimes.litert.sparse_inference import xnnpack_sparse_inference


class _Interpreter:
    """The three interpreter calls the check makes, over a Fast-Sparse-ConvNets-shaped graph."""

    def __init__(self, zero_fraction: float) -> None:
        pointwise = np.ones((32, 1, 1, 16), dtype=np.float32)
        pointwise.reshape(-1)[: round(zero_fraction * pointwise.size)] = 0
        self.weights = {1: np.ones((16, 3, 3, 3), dtype=np.float32), 3: pointwise}

    def _get_ops_details(self) -> list[dict]:
        return [{"op_name": "DENSIFY", "inputs": [3]}, {"op_name": "CONV_2D", "inputs": [0, 1]},
                {"op_name": "CONV_2D", "inputs": [2, 3]}, {"op_name": "MEAN", "inputs": [4]},
                {"op_name": "DELEGATE", "inputs": []}]

    def get_tensor_details(self) -> list[dict]:
        return [{"index": i, "name": f"block;conv{i}", "shape": np.array(w.shape)} for i, w in self.weights.items()]

    def get_tensor(self, index: int) -> np.ndarray:
        return self.weights[index]


def test_a_qualifying_graph_is_a_candidate_and_names_its_sparse_layers() -> None:
    check = xnnpack_sparse_inference(_Interpreter(0.75))
    assert check["candidate"] is True and check["unmet"] == []
    assert check["pointwise_convs"] == [{"name": "conv3", "zero_fraction": 0.75}]


def test_too_few_zeros_in_the_pointwise_convs_is_named() -> None:
    check = xnnpack_sparse_inference(_Interpreter(0.5))
    assert check["candidate"] is False
    assert check["unmet"] == ["only 50% of the 1x1 filter weights are zero (needs >= 2/3)"]
