"""Low-bit FPGA path: a 4-bit quantization-trained model carried into hls4ml with exact ap_fixed types per layer;
its g++ C simulation equals the fake-quantized PyTorch model bit for bit on every test vector."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.data import load_dataset
from edgebench.errors import UnsupportedModelError
from edgebench.prune import build_fp32_model
from edgebench.quantization.fixed_point import ap_type, hls_precisions
from edgebench.quantization.qat import deployable
from edgebench.runtimes.base import BackendSettings
from edgebench.runtimes.hls4ml.backend import Hls4mlBackend
from edgebench.runtimes.hls4ml.export import Hls4mlExporter
from edgebench.variants import QatSpec, QuantSpec, TrainSpec, VariantSpec

W4A4 = QatSpec(weight_bits=4, activation_bits=4, scales="power_of_two", start_epoch=1)


def test_ap_types_by_hand() -> None:
    assert ap_type(4, 3, signed=True) == "ap_fixed<4,1,AP_RND_CONV,AP_SAT>"  # codes -8..7 in steps of 1/8
    assert ap_type(4, 6, signed=False) == "ap_ufixed<4,-2,AP_RND_CONV,AP_SAT>"  # 0..15 in steps of 1/64
    assert ap_type(20, 10, signed=True, quantizer=False) == "ap_fixed<20,10>"


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def w4a4(digits):
    spec = VariantSpec(model="digits_cnn", dataset="digits", train=TrainSpec(epochs=3, batch_size=128),
                       quant=QuantSpec(qat=W4A4))
    return build_fp32_model(spec, digits).model


def test_types_follow_the_trained_quantizers(w4a4) -> None:
    plain, layers = deployable(w4a4)
    types = hls_precisions(plain, layers)
    first = layers[0]
    # digits are standardised (negative pixels), so the input type is signed
    assert types["input_1"]["result"] == f"ap_fixed<4,{4 - first.input.fractional_bits},AP_RND_CONV,AP_SAT>"
    assert types["_0_2"]["result"] == ap_type(4, layers[1].input.fractional_bits, signed=False)  # ReLU -> conv 1.0
    conv3 = ap_type(4, layers[2].input.fractional_bits, signed=False)
    assert types["_1_2"]["result"] == types["_2"]["result"] == types["_2"]["accum"] == conv3  # ReLU, MaxPool -> 3.0
    assert types["_4"]["result"] == types["_5"]["result"] == ap_type(4, layers[3].input.fractional_bits, signed=False)
    assert types["_6"]["weight"] == ap_type(4, layers[3].weight.fractional_bits, signed=True)


def test_float_scales_rejected_for_fixed_point(tmp_path: Path, w4a4) -> None:
    with pytest.raises(UnsupportedModelError, match="power-of-two scales only"):
        Hls4mlExporter().export(w4a4, QuantSpec(precision="fixed", qat=QatSpec()), np.zeros((1, 1, 8, 8), np.float32),
                                tmp_path / "p")


def test_csim_bit_exact_on_every_test_vector(tmp_path: Path, digits, w4a4) -> None:
    pytest.importorskip("hls4ml")
    exporter = Hls4mlExporter()
    reason = exporter.available()
    if reason:
        pytest.skip(reason)
    artifact = exporter.export(w4a4, QuantSpec(precision="fixed", qat=W4A4), digits.x_train[:8], tmp_path / "w4a4")
    session = Hls4mlBackend().load(artifact, BackendSettings())
    x = digits.x_test.astype(np.float32)
    got = session.run(x)
    with torch.no_grad():
        want = w4a4(torch.from_numpy(x)).numpy()
    assert np.array_equal(got, want), f"{int((got != want).any(axis=1).sum())} of {len(x)} vectors differ"
    meta = json.loads((artifact / "edgebench.json").read_text())
    assert meta["bit_operations"]["multipliers_by_width"].keys() == {"4x4"}
    macs = 1 * 16 * 9 * 64 + 16 * 32 * 9 * 64 + 32 * 64 * 9 * 16 + 256 * 10  # digits_cnn at 8x8, by hand
    assert meta["bit_operations"]["bops"] == macs * 4 * 4


class _Wrapped(torch.nn.Module):
    """The trained model inside a class of the user's own, whose forward names its input ``x``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_models_own_forward_gets_its_input_type_under_the_name_hls4ml_gives_it(tmp_path: Path, digits,
                                                                                 w4a4) -> None:
    """hls4ml names the input layer after fx's placeholder: 'x' here (an nn.Sequential's is 'input_1'); the input
    quantizer's type goes there and the firmware stays bit-exact."""
    pytest.importorskip("hls4ml")
    model = _Wrapped(w4a4).eval()
    types = hls_precisions(*deployable(model))
    assert "x" in types and "input_1" not in types
    exporter = Hls4mlExporter()
    if reason := exporter.available():
        pytest.skip(reason)
    artifact = exporter.export(model, QuantSpec(precision="fixed", qat=W4A4), digits.x_train[:8], tmp_path / "own")
    x = digits.x_test[:64].astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.array_equal(Hls4mlBackend().load(artifact, BackendSettings()).run(x), want)
