"""Unstructured sparsity: each method's mask on constructed weights/gradients, the requested sparsity reached
to one weight, and the zeros present in the exported ONNX initialisers with ONNX Runtime matching PyTorch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgebench.data import load_dataset
from edgebench.prune import build_fp32_model, new_model
from edgebench.prune.sparse import SPARSE_METHODS, create_sparse_method, sparsity_by_layer
from edgebench.prune.sparse.base import finetune
from edgebench.prune.sparse.magnitude import magnitude_masks
from edgebench.prune.sparse.masks import MaskedWeights, erk_densities, global_masks, prunable_layers
from edgebench.prune.sparse.rigl import drop_and_grow, update_fraction
from edgebench.prune.sparse.scl import StepMask
from edgebench.prune.sparse.sharing import SharedWeights, kmeans_1d
from edgebench.prune.sparse.snip import snip_masks
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.train import TrainState, evaluate
from edgebench.variants import TrainSpec, VariantSpec

TRAIN = TrainSpec(epochs=2, batch_size=128)
SPEC = VariantSpec(model="digits_cnn", dataset="digits", train=TRAIN)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def baseline(digits):
    return build_fp32_model(SPEC, digits)


@pytest.fixture(scope="module")
def sparse_models(digits, baseline):
    """Every registered method at 80 % on digits (small budgets: these tests check masks, not accuracy), with
    RigL's initial masks and number of rewiring updates."""
    options = {"magnitude": {"steps": 1, "finetune_epochs": 1, "share_bits": 4, "fc_share_bits": 3},
               "rigl": {"delta_t": 2},
               "scl": {"mask_fraction": 0.5}}
    models = {}
    for name in SPARSE_METHODS.names():
        method = create_sparse_method(name, 0.8, **options.get(name, {}))
        model = copy.deepcopy(baseline.model) if method.from_baseline else new_model(SPEC, digits)
        if name == "rigl":
            models["rigl_initial"] = method.initial_masks(model, TRAIN.seed)
        result = method.run(model, digits, TRAIN)
        if name == "rigl":
            models["rigl_history"] = result.history
        if name == "magnitude":
            models["magnitude_compression"] = result.compression
        models[name] = model.eval()
    return models


def _tiny_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))


def test_magnitude_removes_the_smallest_weights_of_each_layer() -> None:
    net = _tiny_net()
    with torch.no_grad():  # distinct magnitudes in a known order, signs alternating
        for layer in (net[0], net[3]):
            n = layer.weight.numel()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(n))
            signs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
            layer.weight.copy_(((perm + 1).float() * signs).view_as(layer.weight))
    masks = magnitude_masks(net, 0.5)
    for name, layer in (("0", net[0]), ("3", net[3])):
        n = layer.weight.numel()
        expected = layer.weight.abs() > n // 2  # magnitudes 1..n: the smallest n/2 go
        assert torch.equal(masks[name], expected)


def test_global_ranking_reaches_total_sparsity_to_one_weight() -> None:
    scores = {"a": torch.rand(7, 3, generator=torch.Generator().manual_seed(0)), "b": torch.rand(11)}
    for s in (0.5, 0.8, 0.9, 0.33):
        masks = global_masks(scores, s)
        removed = sum(int((~m).sum()) for m in masks.values())
        assert abs(removed - s * 32) <= 1
        kept = torch.cat([scores[n][masks[n]].flatten() for n in scores])
        dropped = torch.cat([scores[n][~masks[n]].flatten() for n in scores])
        assert float(kept.min()) >= float(dropped.max())


def test_snip_keeps_the_connections_with_largest_input_times_weight() -> None:
    """Linear 4 -> 2 on a constant input x: dL/dw_ij = (p_i - y_i) x_j with |p_0 - y_0| = |p_1 - y_1| for two
    classes, so the connection sensitivity |w_ij dL/dw_ij| ranks connections by |w_ij x_j|; x_2 = 0 is useless."""
    net = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0, 9.0, 0.1], [-2.0, 0.4, -9.0, 3.0]]))
        net[0].bias.zero_()
    x = torch.tensor([[1.0, 2.0, 0.0, 3.0]]).repeat(8, 1)
    masks = snip_masks(net, x, torch.zeros(8, dtype=torch.long), 0.5)
    # |w x| = [[1, 2, 0, 0.3], [2, 0.8, 0, 9]] -> keep 9, 2, 2, 1
    assert masks["0"].tolist() == [[True, True, False, False], [True, False, False, True]]


def test_rigl_drops_smallest_magnitude_and_grows_largest_gradient() -> None:
    weight = torch.tensor([0.5, -0.1, 0.0, 2.0, 0.0, -0.3, 0.0, 0.0])
    mask = torch.tensor([True, True, False, True, False, True, False, False])
    grad = torch.tensor([9.0, 0.0, 0.2, 0.0, 5.0, 0.0, 3.0, 0.1])
    new = drop_and_grow(weight, grad, mask, fraction=0.5)  # 4 active -> update 2
    # dropped: |-0.1| and |-0.3| (smallest active); grown: inactive 4 (|g|=5) and 6 (|g|=3)
    assert new.tolist() == [True, False, False, True, True, False, True, False]
    assert int(new.sum()) == int(mask.sum())


def test_rigl_update_fraction_is_cosine_annealed() -> None:
    assert update_fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert update_fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert update_fraction(100, 100, 0.3) == 0.0


def test_erk_densities_meet_the_budget_and_cap_at_dense() -> None:
    shapes = {"first": torch.Size([16, 1, 3, 3]), "mid": torch.Size([64, 32, 3, 3]), "fc": torch.Size([10, 256])}
    densities = erk_densities(shapes, 0.8)
    kept = sum(densities[n] * torch.Size(s).numel() for n, s in shapes.items())
    assert kept == pytest.approx(0.2 * sum(s.numel() for s in shapes.values()))
    # ERK favours small layers: the 144-weight conv and then the classifier would exceed density 1, so both
    # become dense (as in RigL) and the big conv takes what is left of the budget
    assert densities["first"] == densities["fc"] == 1.0
    assert densities["mid"] == pytest.approx((0.2 * (144 + 18432 + 2560) - 144 - 2560) / 18432)


def test_scl_step_mask_uses_the_identity_straight_through_estimator() -> None:
    """w_eff = w * H(m): the value is masked, dL/dm = dL/dw_eff * w (dH/dm := 1), dL/dw = dL/dw_eff * H(m)."""
    mask = StepMask(torch.Size([4]), 1.0)
    with torch.no_grad():
        mask.scores.copy_(torch.tensor([1.0, -1.0, 0.5, 0.0]))
    w = torch.tensor([2.0, 3.0, -1.0, 4.0], requires_grad=True)
    c = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = mask(w)
    assert out.tolist() == [2.0, 0.0, -1.0, 0.0]
    (out * c).sum().backward()
    assert mask.scores.grad.tolist() == [2.0, 6.0, -3.0, 16.0]
    assert w.grad.tolist() == [1.0, 0.0, 3.0, 0.0]


@pytest.mark.parametrize("name", ["magnitude", "rigl", "scl", "snip"])
def test_every_method_reaches_the_requested_sparsity(name: str, sparse_models) -> None:
    layers = sparsity_by_layer(sparse_models[name])
    total = sum(n for _, n in layers.values())
    zeros = sum(z for z, _ in layers.values())
    if name == "rigl":  # each layer at its own ERK density: within one weight per layer overall
        assert abs(zeros - 0.8 * total) <= len(layers)
    else:  # global ranking (magnitude: of |w| / std per layer): the whole network to one weight
        assert abs(zeros - 0.8 * total) <= 1


def test_rigl_rewires_every_delta_t_steps_at_constant_parameter_count(sparse_models, digits) -> None:
    before, model, history = sparse_models["rigl_initial"], sparse_models["rigl"], sparse_models["rigl_history"]
    after = {n: m.weight != 0 for n, m in dict(model.named_modules()).items() if n in before}
    n = len(digits.x_train)
    steps = TRAIN.epochs * (n // TRAIN.batch_size + (1 if n % TRAIN.batch_size >= 2 else 0))
    end = int(0.75 * steps)  # T_end: 75 % of training; updates at t = 2, 4, ... below it (delta_t = 2)
    assert history[-1]["rigl_updates"] == len(range(2, end, 2))
    assert any(not torch.equal(before[n] & after[n], before[n]) for n in before)  # initial connections dropped
    assert {h["active_weights"] for h in history} == {sum(int(m.sum()) for m in before.values())}


@pytest.mark.parametrize("name", ["magnitude", "scl"])
def test_masks_survive_onnx_export_and_outputs_match(name: str, sparse_models, tmp_path: Path) -> None:
    model = sparse_models[name]
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "sparse.onnx"
    export_fp32_onnx(model, x[:1], path)
    initialisers = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    for layer_name, (zeros, _) in sparsity_by_layer(model).items():
        exported = initialisers[f"{layer_name}.weight"]
        assert int((exported == 0).sum()) == zeros
        assert np.array_equal(exported == 0, (dict(model.named_modules())[layer_name].weight == 0).numpy())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=0)


def test_sparse_models_still_classify(sparse_models, digits) -> None:
    for name in SPARSE_METHODS.names():
        assert evaluate(sparse_models[name], digits.x_test, digits.y_test) > 0.5, name


def test_kmeans_recovers_clustered_values() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([-1.0, -0.2, 0.3, 1.5])
    values = centres[torch.randint(0, 4, (400,), generator=g)] + 0.01 * torch.randn(400, generator=g)
    centroids, assign = kmeans_1d(values, 4)
    torch.testing.assert_close(centroids.float(), centres, atol=0.01, rtol=0)
    assert torch.equal(centres[assign], centres[torch.argmin((values[:, None] - centres).abs(), 1)])


def _distinct_values(model: nn.Module) -> dict[str, int]:
    """Distinct non-zero weight values per conv/linear layer (at most ``2**bits`` after sharing)."""
    return {n: int(torch.unique(m.weight[m.weight != 0]).numel()) for n, m in prunable_layers(model).items()}


def test_weight_sharing_keeps_zeros_and_codebook_while_training(sparse_models, digits) -> None:
    shared = sparse_models["magnitude"]  # 4-bit conv and 3-bit classifier codebooks (Deep Compression's split)
    assert all(0 < v <= (8 if name == "6" else 16) for name, v in _distinct_values(shared).items())
    model = copy.deepcopy(shared)
    zeros = sparsity_by_layer(model)
    finetune(model, digits, TRAIN, [SharedWeights(model, 2)], epochs=1)
    assert all(0 < v <= 4 for v in _distinct_values(model).values())
    assert sparsity_by_layer(model) == zeros


def test_magnitude_records_its_deep_compression_size(sparse_models) -> None:
    record = sparse_models["magnitude_compression"]
    assert record["ratio"] > record["ratio_shared"] > record["ratio_pruned"] > 1
    assert record["quality"] > 0
    model = sparse_models["magnitude"]
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None)
    assert record["dense_bits"] == 32 * (weights + biases)


def test_masked_weights_stay_zero_under_momentum_and_weight_decay() -> None:
    net = _tiny_net()
    masks = magnitude_masks(net, 0.5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    state = TrainState(net, opt, TRAIN, *(torch.zeros(1),) * 4, input_shape=(1, 4, 4), epochs=1)
    hook = MaskedWeights(masks)
    hook.on_train_start(state)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 1, 4, 4)).sum().backward()
        hook.after_backward(state)
        opt.step()
        hook.on_batch_end(state)
    assert torch.equal(net[0].weight != 0, masks["0"]) and torch.equal(net[3].weight != 0, masks["3"])
