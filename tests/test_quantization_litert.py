"""LiteRT int8 from trained quantizers: the .tflite holds the weight codes and scales QAT trained (nothing
recalibrated but the logits' range) and agrees with the fake-quantized model; QAT settings that LiteRT's int8
graph cannot hold are not planned for it, and an experiment whose only target is LiteRT says so at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="the 'litert' extra (litert-torch) is not installed")
pytest.importorskip("ai_edge_litert", reason="the 'litert' extra (ai-edge-litert) is not installed")

from edgebench.config import Experiment
from edgebench.data.digits import digits
from edgebench.errors import ConfigError
from edgebench.models import create_model
from edgebench.plan import check_qat_targets, plan_fp32_variants, plan_jobs
from edgebench.quantization.qat import QuantizationAwareTraining, deployable
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.targets import get_target
from edgebench.train import train
from edgebench.variants import QatSpec, QuantSpec, TrainSpec


@pytest.fixture(scope="module")
def splits():
    return digits(seed=0)


def _per_channel_codes(codes: np.ndarray, axis: int) -> np.ndarray:
    """Each output channel's codes, sorted (TFLite stores OHWI, or 1HWO for a depthwise conv)."""
    by_channel = np.moveaxis(codes, axis, 0).reshape(codes.shape[axis], -1)
    return np.sort(by_channel.astype(np.int32), axis=1)


@pytest.mark.parametrize("qat", [QatSpec(), QatSpec(scales="power_of_two")], ids=lambda q: q.tag)
def test_tflite_holds_the_trained_quantizers(qat: QatSpec, splits, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model = create_model("digits_cnn", num_classes=10, in_channels=1)
    train(model, splits, TrainSpec(epochs=4, batch_size=64, lr=0.05), hooks=[QuantizationAwareTraining(qat, 2)])
    model.eval()
    path = get_exporter("tflite").export(model, QuantSpec(precision="int8", qat=qat), splits.x_train,
                                         tmp_path / "qat.tflite")

    interpreter = Interpreter(str(path))
    tensors = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8]
    for layer in deployable(model)[1]:
        trained = np.broadcast_to(layer.weight.scale.float().numpy().reshape(-1), (len(layer.weight_q),))
        weights = [t for t in tensors if len(t["quantization_parameters"]["scales"]) == len(trained)
                   and np.allclose(t["quantization_parameters"]["scales"], trained, rtol=1e-6)]
        assert len(weights) == 1, f"{layer.name}: no int8 weight tensor with the trained scales"
        codes = np.rint(layer.weight_q.numpy() / trained.reshape(-1, *[1] * (layer.weight_q.dim() - 1)))
        stored = interpreter.get_tensor(weights[0]["index"])
        axis = weights[0]["quantization_parameters"]["quantized_dimension"]
        assert np.array_equal(_per_channel_codes(stored, axis), _per_channel_codes(codes, 0)), layer.name
        inputs = [t for t in tensors if len(t["quantization_parameters"]["scales"]) == 1
                  and np.isclose(t["quantization_parameters"]["scales"][0], float(layer.input.scale), rtol=1e-6)]
        assert inputs, f"{layer.name}: its input is not quantized with the trained scale"

    session = get_backend("litert").load(path, BackendSettings(threads=1))
    x = splits.x_test
    got = np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    step = interpreter.get_output_details()[0]["quantization"][0]
    error = np.abs(got - want) / step
    # The bound: the graph quantizes the logits too (half a step of rounding); inside it, LiteRT's integer
    # requantization rounds a near-tie the other way on a few codes in 10^4 (measured: 1..12 codes of 10^5 per
    # layer on these 360 images), which moves a few logits by several steps: measured at most 5.8 steps on one
    # machine, 6.1 to 14.2 on an AVX2-only AMD EPYC (2 of 3600 logits beyond 2 steps), where the logits span
    # about 260 steps. XNNPACK's int8 kernels differ by instruction set, so the tail is bounded by the span.
    assert np.mean(error <= 0.5 + 1e-3) >= 0.98
    span = (want.max() - want.min()) / step
    assert error.max() <= 0.1 * span
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99


def _qat_jobs(exp: Experiment) -> set[str]:
    jobs, _ = plan_jobs(exp, plan_fp32_variants(exp), [(s, get_target(s.name)) for s in exp.targets])
    return {j.variant.label for j in jobs if j.variant.quant.qat}


def test_only_8_bit_qat_planned_for_litert() -> None:
    qat = [{}, {"scales": "power_of_two"}, {"weight_bits": 4, "activation_bits": 4, "scales": "power_of_two"},
           {"layer_bits": {"0.0": [6, 8]}}]
    exp = Experiment(pruning={"criteria": []}, targets=["local-litert"],
                     quantization={"precisions": ["fp32", "int8"], "qat": qat})
    assert _qat_jobs(exp) == {"baseline/int8-qat-w8a8", "baseline/int8-qat-w8a8-pow2"}
    targets = [(s, get_target(s.name)) for s in exp.targets]
    with pytest.raises(ConfigError, match=r"qat.2 \(qat-w4a4-pow2\): no target .* LiteRT int8 at 8 bits"):
        check_qat_targets(exp, targets)
    eight_bit = exp.model_copy(update={"quantization": exp.quantization.model_copy(update={"qat": [QatSpec()]})})
    check_qat_targets(eight_bit, targets)  # LiteRT takes it: no error
