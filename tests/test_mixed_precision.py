"""``quantization.max_drop`` on a constructed model whose one sensitive layer is known: int8 everywhere costs
most of the accuracy, and the search keeps exactly that layer in fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.runtimes.onnxruntime.mixed_precision import read_decision, search_mixed_precision

CLASSES, FEATURES = 4, 16


class Constructed(nn.Module):
    """fc1 passes the 16 features through and adds a 17th that ReLU always zeroes; fc2 scores the classes with
    small weights plus one huge weight on the dead feature. In float the huge weight never counts; quantized per
    output channel, each row's scale follows it (1000 / 63) and every informative weight (~0.1) rounds to 0."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.fc1 = nn.Linear(FEATURES, FEATURES + 1)
        self.fc2 = nn.Linear(FEATURES + 1, CLASSES)
        self.fc3 = nn.Linear(CLASSES, CLASSES)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.fc1.weight.zero_()
            self.fc1.weight[:FEATURES] = torch.eye(FEATURES)
            self.fc1.bias.zero_()
            self.fc1.bias[FEATURES] = -1.0
            self.fc2.weight[:, :FEATURES] = w
            self.fc2.weight[:, FEATURES] = 1000.0
            self.fc2.bias.zero_()
            self.fc3.weight.copy_(torch.eye(CLASSES))
            self.fc3.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.fc2(self.relu(self.fc1(x))))


@pytest.fixture(scope="module")
def constructed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(0, 0.1, (CLASSES, FEATURES)).astype(np.float32))
    x = rng.random((600, FEATURES), dtype=np.float32)
    model = Constructed(w).eval()
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()  # labels the float model gets all right
    path = tmp_path_factory.mktemp("mixed") / "fp32.onnx"
    export_fp32_onnx(model, torch.from_numpy(x[:1]), path)
    return path, x[:256], x[256:], y[256:]


def test_keeps_exactly_the_sensitive_layer_in_float(tmp_path: Path, constructed) -> None:
    fp32, calibration, x_val, y_val = constructed
    out = tmp_path / "mixed.onnx"
    result = search_mixed_precision(fp32, out, calibration, x_val, y_val, max_drop=0.02, calibrator="minmax")
    assert result.fp32_accuracy == 1.0
    assert result.int8_accuracy < 0.6  # every class score collapses to the bias
    assert result.float_layers == ["fc2"]
    assert result.precisions == {"fc1": "int8", "fc2": "fp32", "fc3": "int8"}
    assert result.fp32_accuracy - result.accuracy <= 0.02
    assert max(result.recovered, key=result.recovered.get) == "fc2"
    assert read_decision(out)["mixed_precision"]["precisions"]["fc2"] == "fp32"


def test_nothing_kept_in_float_when_int8_is_within_budget(tmp_path: Path, constructed) -> None:
    fp32, calibration, x_val, y_val = constructed
    result = search_mixed_precision(fp32, tmp_path / "m.onnx", calibration, x_val, y_val, max_drop=1.0,
                                    calibrator="minmax")
    assert result.float_layers == [] and set(result.precisions.values()) == {"int8"}
