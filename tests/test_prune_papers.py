"""Known answers from the papers' own definitions: each expected value is computed here, by hand or with the paper's
formula written out in the test (never by calling the code under test), on tiny networks with hand-set weights.

Where the authors published code, the formula written here is theirs: Molchanov et al. 2019's Taylor scores as in
github.com/NVlabs/Taylor_pruning (pruning_engine.py, methods 0 and 31), matched to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from edgebench.prune import create_criterion, prune_model, score_groups
from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.criteria.propagation import _greedy_removal_order, inf_fs


def _data(n: int, shape: tuple[int, ...], classes: int = 2, batch: int = 16, seed: int = 0) -> ScoringData:
    g = torch.Generator().manual_seed(seed)
    return ScoringData(torch.rand(n, *shape, generator=g) + 0.1, torch.randint(0, classes, (n,), generator=g), batch)


def _conv_bn_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1),
                        nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).eval()
    with torch.no_grad():  # BN statistics and affine parameters away from their defaults
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return net


def _module_scores(net: nn.Module, name: str, data: ScoringData, module: nn.Module, role: str) -> torch.Tensor:
    crit = create_criterion(name)
    crit.prepare(net, data.x[:1], data)
    scores = crit.module_scores(module, role)
    crit.release()
    return scores


# ---- Molchanov et al. 2019 (NVlabs/Taylor_pruning) --------------------------------------------------------------


def _nvlabs_scores(net: nn.Module, data: ScoringData, params: list[nn.Parameter], method: int) -> list[torch.Tensor]:
    """pruning_engine.add_criteria / compute_saliency: per mini-batch, method 0 (Taylor_weight)
    ``(W * W.grad).pow(2).view(n, -1).sum(1)``, method 31 (BN_Taylor) ``(gamma g_gamma + beta g_beta)^2``;
    accumulated over the batches and divided by their number (no momentum, no per-layer normalisation)."""
    acc = [torch.zeros(len(p)) for p in params]
    batches = 0
    for x, y in data.batches():
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        for i, p in enumerate(params):
            if method == 0:
                acc[i] += (p * p.grad).data.pow(2).view(len(p), -1).sum(dim=1)
            else:
                bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is p)
                acc[i] += (bn.weight * bn.weight.grad + bn.bias * bn.bias.grad).data.pow(2)
        batches += 1
    net.zero_grad()
    return [a / batches for a in acc]


def test_taylor_weight_and_taylor_bn_match_the_authors_code() -> None:
    net, data = _conv_bn_net(), _data(48, (1, 4, 4), classes=3)
    expected_w = _nvlabs_scores(net, data, [net[0].weight, net[3].weight], 0)
    expected_bn = _nvlabs_scores(net, data, [net[1].weight, net[4].weight], 31)
    for conv, expected in zip((net[0], net[3]), expected_w):
        got = _module_scores(net, "taylor_weight", data, conv, "out")
        torch.testing.assert_close(got, expected.double(), rtol=1e-6, atol=1e-12)
    for bn, expected in zip((net[1], net[4]), expected_bn):
        got = _module_scores(net, "taylor_bn", data, bn, "bn")
        torch.testing.assert_close(got, expected.double(), rtol=1e-6, atol=1e-12)


def test_taylor_scores_rank_globally_by_default() -> None:
    from edgebench.prune import CRITERIA

    assert {CRITERIA.get(n).paper_allocation for n in ("taylor_weight", "taylor_bn", "taylor_activation")} == {
        "global_raw"}


class _Residual(nn.Module):
    """c0 -> b0 feeds c1 -> b1 -> c2 -> b2, added back to it: c0 and c2 (and b0, b2) lose channels together."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.b0 = nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.c1, self.b1 = nn.Conv2d(6, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5)
        self.c2, self.b2 = nn.Conv2d(5, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.b0(self.c0(x)))
        return self.fc(torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(h))))) + h).mean((2, 3)))


@pytest.mark.parametrize("name", ["taylor_weight", "taylor_bn"])
def test_taylor_scores_of_a_residual_group_sum_over_the_structure(name: str) -> None:
    """Molchanov et al. 2019, eq. 4: a structure's importance is the sum of (g w)^2 over its parameters. The
    residual group removes filter j from c0 and c2 (taylor_bn: the gate after b0 and after b2) at once, so its score
    is the sum of the two: computed here from one batch's gradient of the mean loss (the batch is all the data);
    edgebench averaged them (half the paper's)."""
    torch.manual_seed(0)
    net = _Residual()
    with torch.no_grad():
        for bn in (net.b0, net.b1, net.b2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    net.eval()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))
    F.cross_entropy(net(x), y).backward()
    if name == "taylor_weight":  # sum over filter j's weights of (g w)^2, in c0 and in c2
        parts = [((c.weight.grad * c.weight) ** 2).flatten(1).sum(1) for c in (net.c0, net.c2)]
    else:  # (gamma g_gamma + beta g_beta)^2 of channel j, after b0 and after b2
        parts = [(b.weight.grad * b.weight + b.bias.grad * b.bias) ** 2 for b in (net.b0, net.b2)]
    net.zero_grad()
    criterion = create_criterion(name)
    criterion.prepare(net, x[:1], ScoringData(x, y, batch_size=64))
    scores = {g.root: g.scores for g in score_groups(net, criterion, x[:1])}
    torch.testing.assert_close(scores["c0"], (parts[0] + parts[1]).detach(), rtol=1e-5, atol=0)


def test_taylor_activation_by_hand() -> None:
    """Molchanov et al. 2017 on a network whose gradients are written out: z_j = relu(w_j x) (1x1 maps, M = 1),
    logits o = V z, so dC_n/dz_j = sum_k (p_nk - y_nk) V_kj and Theta_j = mean_n |dC_n/dz_j z_j|, then divided by
    the layer's L2 norm."""
    w, v = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([[0.3, -1.0, 0.5], [-0.2, 0.4, 1.5]])
    net = nn.Sequential(nn.Conv2d(1, 3, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(3, 2, bias=False)).eval()
    with torch.no_grad():
        net[0].weight.copy_(w.view(3, 1, 1, 1))
        net[3].weight.copy_(v)
    x = torch.tensor([0.5, 1.0, 2.0, 0.25]).view(4, 1, 1, 1)
    y = torch.tensor([0, 1, 1, 0])
    z = torch.relu(w[None, :] * x.view(4, 1))  # (n, j)
    p = torch.softmax(z @ v.T, 1)
    dcdz = (p - F.one_hot(y, 2).float()) @ v  # (n, j)
    theta = (dcdz * z).abs().mean(0)
    expected = theta / theta.norm()
    got = _module_scores(net, "taylor_activation", ScoringData(x, y, 2), net[0], "out")
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-7)
    assert float(got[1]) == 0.0  # a map that is always zero costs nothing to remove


# ---- SOSP-H (Nonnenmacher et al. 2022) -------------------------------------------------------------------------


def test_sosp_h_equals_the_explicit_gauss_newton_estimate() -> None:
    """s_j = |theta_s . (-g + 1/2 G theta)_s| over channel j's conv weight and bias and BN scale and shift, with
    G = mean_n J_n^T (diag p_n - p_n p_n^T) J_n and g = mean_n J_n^T (p_n - y_n), built here from the explicit
    per-sample Jacobians of the logits w.r.t. all 38 parameters."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 2)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.8, 1.2, -0.6]))
        net[1].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    data = _data(10, (1, 2, 2), batch=4, seed=3)
    names = [n for n, _ in net.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in net.parameters()]).double()
    shapes = [p.shape for p in net.parameters()]

    def logits(flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        chunks, i = {}, 0
        for name, shape in zip(names, shapes):
            n = int(np.prod(shape))
            chunks[name] = flat[i : i + n].view(shape).float()
            i += n
        return torch.func.functional_call(net, chunks, (x[None],))[0].double()

    gn = torch.zeros(len(theta), len(theta), dtype=torch.float64)
    g = torch.zeros(len(theta), dtype=torch.float64)
    for x, y in zip(data.x, data.y):
        jac = torch.autograd.functional.jacobian(lambda f, x=x: logits(f, x), theta)  # (2, 38)
        p = torch.softmax(logits(theta, x), 0)
        gn += jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac
        g += jac.T @ (p - F.one_hot(y, 2).double())
    gn, g = gn / len(data.x), g / len(data.x)
    per_param = theta * (-g + 0.5 * gn @ theta)
    # parameter order: conv weight (3), conv bias (3), BN weight (3), BN bias (3), linear ...
    expected = (per_param[0:3] + per_param[3:6] + per_param[6:9] + per_param[9:12]).abs()
    crit = create_criterion("sosp_h")
    crit.prepare(net, data.x[:1], data)
    (group,) = score_groups(net, crit, data.x[:1])
    torch.testing.assert_close(group.scores.double(), expected, rtol=1e-4, atol=1e-7)


# ---- ThiNet (Luo et al. 2017) ----------------------------------------------------------------------------------


def _thinet_net() -> nn.Sequential:
    """conv0 maps (u, v) to channels (u, v, u + v); conv1 adds the three: y = 2u + 2v. The inputs keep u small."""
    net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.ReLU(), nn.Conv2d(3, 1, 1, bias=False), nn.Flatten(),
                        nn.Linear(16, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]).view(3, 2, 1, 1))
        net[2].weight.fill_(1.0)
    return net


def _thinet_data() -> ScoringData:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(32, 1, 4, 4, generator=g) * 0.5, 1 + torch.rand(32, 1, 4, 4, generator=g)], 1)
    return ScoringData(x, torch.randint(0, 2, (32,), generator=g), 16)


def test_thinet_greedy_order_by_hand() -> None:
    """Algorithm 1 on contributions (u, v, u+v) with |u| < |v|: u first (smallest sum of squares), then the channel
    that keeps (u + x_c)^2 smallest: v (u + v < 2u + v), then u + v."""
    u, v = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([1.0, 1.5, 2.0])
    order = _greedy_removal_order(torch.stack([u, v, u + v], 1).double())
    assert order.tolist() == [0.0, 1.0, 2.0]


def test_thinet_rescales_the_kept_channels_by_least_squares() -> None:
    """Removing channel 0 (u) leaves (v, u + v); the least-squares weights solving 2u + 2v = w1 v + w2 (u + v) are
    (0, 2) exactly, so conv1's weights become (0, 2) and the pruned network's output equals the unpruned one's."""
    net, data = _thinet_net(), _thinet_data()
    before = net[:3](data.x).detach()
    plan = prune_model(net, create_criterion("thinet"), 1 / 3, data.x[:1], data=data, ignored=[net[2], net[4]])
    assert plan == {"0": [0]}
    torch.testing.assert_close(net[2].weight.detach().flatten(), torch.tensor([0.0, 2.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(net[:3](data.x).detach(), before, atol=1e-4, rtol=1e-5)
    unscaled = _thinet_net()
    prune_model(unscaled, create_criterion("thinet", rescale=False), 1 / 3, data.x[:1], data=data,
                ignored=[unscaled[2], unscaled[4]])
    assert unscaled[2].weight.flatten().tolist() == [1.0, 1.0]  # selection alone leaves the weights


def test_thinet_prunes_layer_by_layer_on_the_network_pruned_so_far() -> None:
    from edgebench.prune.criteria.propagation import ThiNet

    widths: list[tuple[int, int]] = []

    class Recording(ThiNet):
        def prepare(self, model: nn.Module, example_input: torch.Tensor, data: ScoringData | None) -> None:
            widths.append((model[0].out_channels, model[2].out_channels))
            super().prepare(model, example_input, data)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1),
                        nn.Flatten(), nn.Linear(32, 2)).eval()
    data = _data(32, (1, 4, 4))
    prune_model(net, Recording(), 0.5, data.x[:1], data=data, ignored=[net[4], net[6]])
    # scored once for the counts, then conv0 on the full network, then conv1 with conv0 already pruned
    assert widths == [(4, 4), (4, 4), (2, 4)]
    assert (net[0].out_channels, net[2].out_channels) == (2, 2)


# ---- NISP (Yu et al. 2018) with Inf-FS (Roffo et al. 2015) -----------------------------------------------------


def _inf_fs_by_formula(x: np.ndarray, alpha: float = 0.5, factor: float = 0.9) -> np.ndarray:
    std = x.std(0, ddof=1)
    pair = np.maximum.outer(std, std)
    sigma = (pair - pair.min()) / (pair.max() - pair.min())
    rho, _ = spearmanr(x)
    if np.ndim(rho) == 0:  # scipy returns the one coefficient of two columns as a scalar
        rho = np.array([[1.0, rho], [rho, 1.0]])
    rho = np.nan_to_num(rho)  # a constant column: undefined correlations count 0, as in the authors' code
    a = alpha * sigma + (1 - alpha) * (1 - np.abs(rho))
    r = factor / np.max(np.linalg.eigvalsh(a))
    s = np.linalg.inv(np.eye(len(a)) - r * a) - np.eye(len(a))
    return s.sum(1)


def test_inf_fs_equals_the_papers_formula() -> None:
    """Four features: a spread one, a monotone copy of it (Spearman 1, so c = 0 between them), an independent one
    and a constant one (std 0, correlation undefined -> 0)."""
    g = np.random.default_rng(0)
    a = g.normal(size=20) * 3
    x = np.stack([a, np.exp(a / 3), g.normal(size=20), np.full(20, 2.0)], 1)
    x[3, 2] = x[4, 2]  # a tie in the ranks
    expected = _inf_fs_by_formula(x)
    with np.errstate(invalid="ignore"):
        got = inf_fs(torch.as_tensor(x))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    # the least important: the monotone copy - little spread, and redundant with feature 0 (c = 0 between them)
    assert np.argmin(expected) == 1


def test_nisp_propagates_the_frl_inf_fs_scores_through_absolute_weights() -> None:
    """conv0 (3 maps) -> ReLU -> conv1 (2 maps, weights W1 with signs) -> ReLU -> classifier on the two 1x1 maps:
    the FRL is conv1's output, s_conv1 = s_FRL and s_conv0 = |W1|^T s_FRL."""
    w1 = torch.tensor([[1.0, -2.0, 0.5], [-0.5, 0.25, 3.0]])
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.5, 2.0]).view(3, 1, 1, 1))
        net[0].bias.copy_(torch.tensor([0.0, -0.3, 0.1]))
        net[2].weight.copy_(w1.view(2, 3, 1, 1))
        net[2].bias.copy_(torch.tensor([0.2, 0.1]))
    data = _data(40, (1, 1, 1), batch=40)
    frl = torch.relu(net[2](torch.relu(net[0](data.x)))).flatten(1).detach().double()
    s_frl = torch.as_tensor(_inf_fs_by_formula(frl.numpy()))
    crit = create_criterion("nisp")
    crit.prepare(net, data.x[:1], data)
    torch.testing.assert_close(crit.module_scores(net[2], "out"), s_frl, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(crit.module_scores(net[0], "out"), w1.abs().double().T @ s_frl, rtol=1e-6,
                               atol=1e-9)


def test_nisp_scores_a_channels_response_so_folding_its_bn_changes_nothing() -> None:
    """conv0 -> BN0 -> ReLU -> conv1 (W1) -> BN1 -> ReLU -> classifier on 1x1 maps. A neuron is a channel's response
    (the BN output): s_BN1 = s_FRL and s_BN0 = |W1|^T (|gamma1| / sigma1 * s_FRL), whatever BN0's scale, so conv0
    with BN0 folded into it ranks its channels as before (the offset at the conv output would multiply each
    score by |gamma0_j| / sigma0_j: [2, 0.1, 1, 0.5] here, reordering them)."""
    torch.manual_seed(0)
    w1 = torch.tensor([[1.0, -2.0, 0.5, 0.3], [-0.5, 0.25, 3.0, 1.0]])
    gamma0, gamma1 = torch.tensor([2.0, 0.1, 1.0, 0.5]), torch.tensor([4.0, -0.5])
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, 0.5, 2.0, -1.0]).view(4, 1, 1, 1))
        net[1].weight.copy_(gamma0)
        net[1].running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 1.0]))
        net[3].weight.copy_(w1.view(2, 4, 1, 1))
        net[4].weight.copy_(gamma1)
        net[4].running_var.copy_(torch.tensor([4.0, 1.0]))
        net[4].bias.copy_(torch.tensor([1.0, 2.0]))
    data = _data(40, (1, 1, 1), batch=40)
    frl = net[:6](data.x).flatten(1).detach().double()
    s_frl = torch.as_tensor(_inf_fs_by_formula(frl.numpy()))
    sigma1 = torch.sqrt(net[4].running_var + net[4].eps).double()
    expected = w1.abs().double().T @ (gamma1.abs().double() / sigma1 * s_frl)
    crit = create_criterion("nisp")
    crit.prepare(net, data.x[:1], data)
    torch.testing.assert_close(crit.module_scores(net[4], "bn"), s_frl, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(crit.module_scores(net[1], "bn"), expected, rtol=1e-5, atol=1e-9)
    folded = nn.Sequential(nn.Conv2d(1, 4, 1), *list(net)[2:]).eval()
    with torch.no_grad():
        scale = net[1].weight / torch.sqrt(net[1].running_var + net[1].eps)
        folded[0].weight.copy_(net[0].weight * scale.view(4, 1, 1, 1))
        folded[0].bias.copy_((net[0].bias - net[1].running_mean) * scale + net[1].bias)
    torch.testing.assert_close(folded(data.x), net(data.x))
    crit.prepare(folded, data.x[:1], data)
    torch.testing.assert_close(crit.module_scores(folded[0], "out"), expected, rtol=1e-5, atol=1e-9)


# ---- Han et al. 2015 / Deep Compression 2016 -------------------------------------------------------------------


def test_han_per_layer_quality_times_std_thresholds_by_hand() -> None:
    """Layer a's weights are spread (std 2), layer b's narrow (std 0.5, 4x smaller): with one quality parameter q,
    a weight goes when |w| < q std. Asking for 50 % of the 8 weights, by hand: |w| / std =
    a: 0.5, 1.0, 1.5, 2.0 (values 1, 2, 3, 4 over std 2) and
    b: 0.4, 0.6, 0.8, 1.2 (0.2, 0.3, 0.4, 0.6 over 0.5); the 4 smallest are b's 0.4, a's 0.5, b's 0.6, b's 0.8, so
    a loses 1 weight and b 3 - the per-layer pattern a single magnitude threshold (a 0, b 4) or equal sparsity
    (2 and 2) would not give - and q = 1.0, the smallest kept ratio."""
    from edgebench.prune.sparse.magnitude import quality_masks

    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        net[1].weight.copy_(torch.tensor([[0.2, -0.3], [0.4, -0.6]]))
    masks, quality = quality_masks(net, 0.5, {"0": 2.0, "1": 0.5})
    assert masks["0"].tolist() == [[False, True], [True, True]]
    assert masks["1"].tolist() == [[False, False], [False, True]]
    assert quality == pytest.approx(1.0)


def test_huffman_code_lengths_of_a_known_histogram() -> None:
    """The textbook example (Cormen et al., 16.3): a:45 b:13 c:12 d:16 e:9 f:5 -> lengths 1,3,3,3,4,4, 224 bits."""
    from edgebench.prune.sparse.storage import huffman_bits, huffman_code_lengths

    counts = {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}
    assert huffman_code_lengths(counts) == {"a": 1, "b": 3, "c": 3, "d": 3, "e": 4, "f": 4}
    assert huffman_bits("a" * 45 + "b" * 13 + "c" * 12 + "d" * 16 + "e" * 9 + "f" * 5) == 224
    assert huffman_code_lengths({"x": 7}) == {"x": 1}


def test_relative_positions_with_filler_zeros_as_in_the_paper() -> None:
    """Deep Compression fig. 2 with 3-bit differences (at most 8): non-zeros at 1, 4 and 15 are stored as
    differences 2, 3, then 8 (a filler zero at 12) and 3."""
    from edgebench.prune.sparse.storage import relative_positions

    mask = torch.zeros(16, dtype=torch.bool)
    mask[[1, 4, 15]] = True
    assert relative_positions(mask, 3) == ([2, 3, 8, 3], [False, False, True, False])


def test_layer_storage_and_compression_ratio_by_hand() -> None:
    """A 1x16 fully connected layer (5-bit differences: no filler needed) with 4 non-zeros shared on a 2-entry
    codebook {0.5, -1}: 0.5, 0.5, 0.5, -1 at positions 0, 1, 2, 10.
    dense 16 x 32 = 512 bits (+ no bias); pruned 4 x (32 + 5) = 148; shared 4 x (1 + 5) + 2 x 32 = 88;
    Huffman: weights {0.5: 3, -1: 1} -> 1 bit each = 4, differences {1: 3, 8: 1} -> 4, + codebook 64 = 72."""
    from edgebench.prune.sparse.storage import deep_compression_size

    net = nn.Sequential(nn.Linear(16, 1, bias=False))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].weight[0, [0, 1, 2, 10]] = torch.tensor([0.5, 0.5, 0.5, -1.0])
    size = deep_compression_size(net, {"0": 1})
    assert (size["dense_bits"], size["pruned_bits"], size["shared_bits"], size["huffman_bits"]) == (512, 148, 88, 72)
    assert size["ratio"] == pytest.approx(512 / 72)


# ---- SCL (Tang et al. 2022) ------------------------------------------------------------------------------------


def test_scl_scores_step_on_their_own_optimizer_without_weight_decay() -> None:
    """One step: the weights' optimizer no longer holds the scores; each score moves by exactly
    -lr_s (normalised gradient + lam), the weight decay and momentum of the weights' optimizer notwithstanding."""
    from edgebench.prune.sparse.scl import SparseConnectivityLearning, attach_masks, normalise_feature_grads
    from edgebench.train import TrainState, make_optimizer
    from edgebench.variants import TrainSpec

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    masks = attach_masks(net, 0.05)
    spec = TrainSpec(lr=0.5, momentum=0.9, weight_decay=0.5)
    state = TrainState(net, make_optimizer(net, spec, spec.lr), spec, *(torch.zeros(1),) * 4, input_shape=(3,),
                       epochs=1, lr=spec.lr)
    hook = SparseConnectivityLearning(masks, 0.5, lam=0.01, gain=0.0, score_lr_scale=0.2, mask_epochs=1)
    hook.on_train_start(state)
    scores = masks["0"].scores
    assert all(p is not scores for group in state.optimizer.param_groups for p in group["params"])
    before = scores.detach().clone()
    net(torch.tensor([[1.0, -2.0, 0.5]])).pow(2).sum().backward()
    expected = before - 0.2 * 0.5 * (normalise_feature_grads(scores.grad.detach().clone()) + 0.01)
    hook.after_backward(state)
    state.optimizer.step()
    hook.on_batch_end(state)
    torch.testing.assert_close(scores.detach(), expected)


# ---- what is edgebench's reading, and says so -------------------------------------------------------------------


def test_constructions_from_abstracts_are_labelled_as_edgebenchs_reading() -> None:
    import pandas as pd

    from edgebench.prune import CRITERIA
    from edgebench.prune.allocation import ALLOCATIONS
    from edgebench.prune.sparse import SPARSE_METHODS
    from edgebench.report.plots import series_name

    readings = {n for n in CRITERIA.names() if CRITERIA.get(n).reading}
    assert readings == {"hessian_radius", "firing", "bn_stats", "sosp_h"}
    assert {n for n in ALLOCATIONS.names() if ALLOCATIONS.get(n).reading} == {"gradient_bound", "sensitivity"}
    assert {n for n in SPARSE_METHODS.names() if SPARSE_METHODS.get(n).reading} == {"scl"}
    row = pd.Series({"method": "hessian_radius", "kind": "structured", "precision": "fp32",
                     "method_note": CRITERIA.get("hessian_radius").reading})
    assert series_name(row) == "hessian_radius (edgebench's reading)/fp32"
    assert series_name(row.drop("method_note")) == "hessian_radius/fp32"
