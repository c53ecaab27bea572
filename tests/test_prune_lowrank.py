"""LRPET: projection of known-rank matrices, energy transfer, BN rectification, and the two-layer factorised
form computing the same function in PyTorch and in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgebench.prune.lowrank import (
    factorisable_ranks,
    factorise,
    following_batchnorms,
    project,
    project_layers,
    weight_matrix,
)
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

GEN = torch.Generator().manual_seed(0)


def _rank_r(rows: int, cols: int, rank: int) -> torch.Tensor:
    return torch.randn(rows, rank, generator=GEN) @ torch.randn(rank, cols, generator=GEN)


def _onnx_matches(model: nn.Module, x: torch.Tensor, path: Path) -> onnx.ModelProto:
    export_fp32_onnx(model.eval(), x[:1], path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)
    return onnx.load(str(path))


def test_projection_of_a_matrix_of_known_rank_reproduces_it() -> None:
    m = _rank_r(12, 30, 3)
    torch.testing.assert_close(project(m, 3), m, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(project(m, 5, energy_transfer=False), m, atol=1e-4, rtol=1e-5)


def test_energy_transfer_keeps_the_matrix_energy_and_directions() -> None:
    m = torch.randn(10, 20, generator=GEN)
    plain, transferred = project(m, 4, energy_transfer=False), project(m, 4)
    assert torch.linalg.matrix_rank(transferred) == 4
    s, s_plain = torch.linalg.svdvals(transferred), torch.linalg.svdvals(plain)
    # the pruned energy goes to the kept singular values uniformly (one common factor), ||W||_F is kept
    factor = s[:4] / s_plain[:4]
    torch.testing.assert_close(factor, factor.mean().expand(4), rtol=1e-4, atol=0)
    assert float(torch.linalg.norm(transferred)) == pytest.approx(float(torch.linalg.norm(m)), rel=1e-5)
    u_t, u_p = torch.linalg.svd(transferred)[0][:, :4], torch.linalg.svd(plain)[0][:, :4]
    torch.testing.assert_close((u_t * u_p).sum(0).abs(), torch.ones(4), atol=1e-4, rtol=0)


def test_bn_rectification_projects_what_the_layer_computes() -> None:
    """With a BN after the conv the network applies diag(a) W; the rectified projection makes diag(a) W' the
    best rank-r approximation of diag(a) W (Eckart-Young), not a rescaled approximation of W."""
    net = nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU()).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([4.0, 0.5, 2.0, 1.0, 3.0, 0.2]))
        net[1].running_var.copy_(torch.tensor([1.0, 2.0, 0.5, 1.0, 4.0, 1.0]))
    assert following_batchnorms(net) == {"0": net[1]}
    a = (net[1].weight / torch.sqrt(net[1].running_var + net[1].eps)).detach()[:, None]
    effective = a * weight_matrix(net[0]).detach().clone()
    project_layers(net, {"0": 2}, following_batchnorms(net), energy_transfer=False)
    got = a * weight_matrix(net[0]).detach()
    torch.testing.assert_close(got, project(effective, 2, energy_transfer=False), atol=1e-4, rtol=1e-3)


def test_factorised_conv_of_known_rank_matches_and_exports_as_two_convs(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3)).eval()
    with torch.no_grad():
        net[0].weight.copy_(_rank_r(8, 36, 3).view(8, 4, 3, 3))
    x = torch.randn(5, 4, 8, 8, generator=GEN)
    with torch.no_grad():
        before = net(x)
    assert factorisable_ranks(net, 0.375) == {"0": 3}  # rank 3 of 8; the classifier stays dense
    factorise(net, {"0": 3})
    first, second = net[0]
    assert (first.out_channels, first.kernel_size, first.stride, first.bias) == (3, (3, 3), (2, 2), None)
    assert (second.in_channels, second.out_channels, second.kernel_size) == (3, 8, (1, 1))
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-4, rtol=1e-4)
    graph = _onnx_matches(net, x, tmp_path / "lowrank.onnx").graph
    assert [n.op_type for n in graph.node].count("Conv") == 2


def test_factorised_linear_is_in_r_out() -> None:
    net = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        net[0].weight.copy_(_rank_r(16, 20, 2))
    x = torch.randn(4, 20, generator=GEN)
    with torch.no_grad():
        before = net(x)
    factorise(net, {"0": 2})
    assert [(m.in_features, m.out_features) for m in net[0]] == [(20, 2), (2, 16)]
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, atol=1e-4, rtol=1e-4)


def test_layers_that_would_not_shrink_stay_dense() -> None:
    net = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(), nn.Linear(8, 4))
    # 1x1 8->8 at rank 4: 4 * (8 + 8) = 64 = 8 * 8, no saving; grouped conv and classifier: never
    assert factorisable_ranks(net, 0.5) == {}
    assert factorisable_ranks(net, 0.25) == {"0": 2}
