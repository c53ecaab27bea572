"""Every seed method against its paper's headline claim: what edgebench measures on digits (and at CIFAR shape for
speed), whether the claim's direction holds here, and why the experiment's shape differs from the paper's.

One row per seed method. The digits rows train ``digits_cnn`` once (the baseline) and build each method's variant
from it with edgebench's own pipeline code (``build_fp32_model``); accuracies are top-1 on the test split (360
images: one image is 0.28 points). The CIFAR-shape rows time VGG-16 at 3x32x32 with random weights (speed does not
depend on the weights). "Holds here" applies the claim's own test (a drop within a point, A better than B) to the
numbers measured here; it says nothing about the paper's setting.

    python scripts/reproduce_seed_claims.py [--epochs 8] [--markdown docs/seed_claims.md] [--skip-cifar]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _ort_timing import ort_p50_ms
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from edgebench.data import DatasetSplits, load_dataset
from edgebench.models import create_model
from edgebench.models.cost import count_macs, count_params
from edgebench.prune import BuiltModel, build_fp32_model, create_criterion, prune_model, score_groups
from edgebench.prune.criteria.base import ScoringData
from edgebench.prune.schedules import scoring_data
from edgebench.train import evaluate
from edgebench.variants import LowRankSpec, PruneSpec, SparseSpec, TrainSpec, VariantSpec

CIFAR = (3, 32, 32)


@dataclass
class Row:
    seed: str
    method: str
    claim: str
    measured: str
    cifar: str
    holds: str
    why: str


class Digits:
    """The trained baseline and the variants built from it, with their test accuracy and costs."""

    def __init__(self, epochs: int) -> None:
        self.splits: DatasetSplits = load_dataset("digits")
        self.train = TrainSpec(epochs=epochs)
        self.base = build_fp32_model(self.spec(), self.splits)
        self.base_acc = self.accuracy(self.base)

    def spec(self, **kind: object) -> VariantSpec:
        return VariantSpec(model="digits_cnn", dataset="digits", train=self.train, **kind)

    def accuracy(self, built: BuiltModel) -> float:
        return evaluate(built.model, self.splits.x_test, self.splits.y_test)

    def structured(self, criterion: str, ratio: float, schedule: str = "oneshot_finetune", allocation: str | None = None,
                   **prune: object) -> BuiltModel:
        spec = PruneSpec(criterion=criterion, ratio=ratio, schedule=schedule, allocation=allocation,
                         finetune_epochs=prune.pop("finetune_epochs", 3 if schedule != "while_training" else 0),
                         **prune)
        return build_fp32_model(self.spec(prune=spec), self.splits, self.base)

    def sparse(self, method: str, sparsity: float, **kwargs: object) -> BuiltModel:
        return build_fp32_model(self.spec(sparse=SparseSpec(method=method, sparsity=sparsity, kwargs=kwargs)),
                                self.splits, self.base)

    def drop(self, built: BuiltModel) -> float:
        """Accuracy drop in points against the baseline (negative: better than the baseline)."""
        return 100 * (self.base_acc - self.accuracy(built))

    def costs(self, built: BuiltModel) -> str:
        return (f"drop {self.drop(built):+.1f} pt, params /{self.base.params / built.params:.2f}, "
                f"MACs /{self.base.macs / built.macs:.2f}")

    def scoring(self) -> ScoringData:
        return scoring_data(torch.as_tensor(self.splits.x_train), torch.as_tensor(self.splits.y_train), 0)


def oracle_correlations(digits: Digits, criteria: list[str]) -> dict[str, tuple[float, float]]:
    """Spearman correlation of each criterion's channel scores with the oracle - the measured |loss change| when the
    channel's BN output is zeroed - on the trained baseline: (mean over layers, all channels together)."""
    model, data = copy.deepcopy(digits.base.model).eval(), digits.scoring()
    bns = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        full = float(F.cross_entropy(model(data.x), data.y))
        oracle: dict[str, list[float]] = {}
        for name, bn in bns.items():
            for c in range(bn.num_features):
                handle = bn.register_forward_hook(lambda _m, _i, out, c=c: out.index_fill(1, torch.tensor([c]), 0.0))
                oracle.setdefault(name, []).append(abs(float(F.cross_entropy(model(data.x), data.y)) - full))
                handle.remove()
    result = {}
    for name in criteria:
        crit = create_criterion(name)
        crit.prepare(model, data.x[:1], data)
        scores = {g.root: g.scores.numpy() for g in score_groups(model, crit, data.x[:1])}
        crit.release()
        pairs = [(scores[root], np.array(oracle[root[:-1] + "1"])) for root in scores]  # conv "i.0" -> its BN "i.1"
        per_layer = float(np.mean([spearmanr(s, o)[0] for s, o in pairs]))
        together = float(spearmanr(np.concatenate([s for s, _ in pairs]), np.concatenate([o for _, o in pairs]))[0])
        result[name] = (per_layer, together)
    return result


def scoring_seconds(model: nn.Module, criterion: str, data: ScoringData) -> float:
    crit = create_criterion(criterion)
    start = time.perf_counter()
    crit.prepare(model, data.x[:1], data)
    score_groups(model, crit, data.x[:1])
    return time.perf_counter() - start


def cifar_speed(threads: int) -> dict[str, float]:
    """VGG-16 at CIFAR shape: MACs and ORT p50 with 50 % of the filters removed per layer (L1), and the cost of
    scoring with SOSP-H against a first-order Taylor criterion (32 random samples)."""
    torch.manual_seed(0)
    calibration = np.random.default_rng(0).standard_normal((8, *CIFAR)).astype(np.float32)
    full = create_model("vgg16_cifar", num_classes=10, in_channels=3).eval()
    half = copy.deepcopy(full)
    prune_model(half, create_criterion("l1"), 0.5, torch.randn(1, *CIFAR))
    g = torch.Generator().manual_seed(0)
    data = ScoringData(torch.randn(32, *CIFAR, generator=g), torch.randint(0, 10, (32,), generator=g), 16)
    return {
        "macs_x": count_macs(full, CIFAR) / count_macs(half, CIFAR),
        "params_x": count_params(full) / count_params(half),
        "speed_x": ort_p50_ms(full, calibration, threads) / ort_p50_ms(half, calibration, threads),
        "sosp_over_taylor": scoring_seconds(full, "sosp_h", data) / scoring_seconds(full, "taylor_weight", data),
    }


def yes(condition: bool) -> str:
    return "yes" if condition else "no"


def shape_note(d: Digits) -> str:
    """Why every digits row differs in shape from its paper (computed from the baseline actually trained)."""
    return (f"digits_cnn (3 convs + classifier, {d.base.params:,} params) on {len(d.splits.x_train):,} 8x8 digits, "
            f"{d.train.epochs} epochs, against the papers' ImageNet/CIFAR networks")


def classifier(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def filter_pruning_rows(d: Digits, speed: dict[str, float] | None) -> list[Row]:
    """Roy et al., Li et al., Network Slimming, ThiNet, NISP, SOSP-H, CHIP, Scratch-B."""
    out: list[Row] = []
    uniform_speed = (f"VGG-16, 50 % filters (uniform): MACs /{speed['macs_x']:.2f}, ORT p50 /{speed['speed_x']:.2f}"
                     if speed else "skipped")
    small = shape_note(d)

    # Roy et al. 2020 (seed 001): pruning while training
    pwt = {c: d.structured(c, 0.8, "while_training", prune_epochs=(1, 3, 5)) for c in ("l1", "mean_activation", "random")}
    retrain = d.structured("l1", 0.8, "oneshot_finetune", finetune_epochs=10)
    best = min(pwt, key=lambda c: d.drop(pwt[c]))
    saved = 1 - pwt["l1"].training_macs / retrain.training_macs
    out.append(Row("Roy et al. 2020", "`l1`/`mean_activation`/`random`, `while_training`, uniform",
                   "VGG-16/CIFAR-10: L1 best of the three, < 1 % drop at 80 % of filters; 41 % less training "
                   "compute than training + retraining 10 epochs",
                   f"80 %: drop l1 {d.drop(pwt['l1']):+.1f}, mean_act {d.drop(pwt['mean_activation']):+.1f}, random "
                   f"{d.drop(pwt['random']):+.1f} pt; training compute {100 * saved:.0f} % below train + prune + "
                   "retrain 10 epochs", uniform_speed,
                   f"L1 best: {yes(best == 'l1')}; < 1 pt: {yes(d.drop(pwt['l1']) < 1)}; compute saved: "
                   f"{yes(saved > 0)}", small))

    # Li et al. 2017: L1 filter norm with per-layer sensitivity
    sens = d.structured("l1", 0.5, allocation="sensitivity")
    unif = d.structured("l1", 0.5)
    out.append(Row("Li et al. 2017", "`l1` + `sensitivity` (its paper allocation), `oneshot_finetune`",
                   "VGG-16 -34 % and ResNet-110 -38 % FLOPs on CIFAR-10, accuracy regained by retraining",
                   f"50 % filters: sensitivity {d.costs(sens)} (widths {sens.filters}); uniform {d.costs(unif)}",
                   uniform_speed, f"MACs cut >= 34 % with drop < 1 pt: "
                   f"{yes(1 - sens.macs / d.base.macs >= 0.34 and d.drop(sens) < 1)}",
                   small + "; the per-layer ratios come from one accuracy tolerance (edgebench's rule), not by hand"))

    # Liu et al. 2017: Network Slimming
    slim = d.structured("bn_scale", 0.7, allocation="global_raw", criterion_kwargs={"lam": 1e-4})
    out.append(Row("Liu et al. 2017", "`bn_scale` (L1 on BN scales, `global_raw`)",
                   "VGGNet: 20x smaller, 5x fewer operations (multi-pass) at comparable accuracy",
                   f"70 % of channels, one pass: {d.costs(slim)}, widths {slim.filters}", "n/a",
                   f"comparable accuracy (< 1 pt): {yes(d.drop(slim) < 1)}",
                   small + "; one pass, lambda 1e-4 as the paper's CIFAR runs, not multi-pass"))

    # Luo et al. 2017: ThiNet
    thin = d.structured("thinet", 0.5)
    raw = d.structured("thinet", 0.5, finetune_epochs=0)
    raw_plain = d.structured("thinet", 0.5, finetune_epochs=0, criterion_kwargs={"rescale": False})
    out.append(Row("Luo et al. 2017", "`thinet` (layer by layer, least-squares rescaling)",
                   "VGG-16: 3.31x FLOPs, 16.63x smaller, -0.52 % top-5; ResNet-50: half the FLOPs at ~1 % top-5",
                   f"50 %: {d.costs(thin)}; before finetuning drop {d.drop(raw):+.1f} pt with rescaling, "
                   f"{d.drop(raw_plain):+.1f} without", uniform_speed,
                   f"rescaling helps before finetuning: {yes(d.drop(raw) <= d.drop(raw_plain))}",
                   small + "; finetuned after all layers, not one epoch per layer"))

    # Yu et al. 2018: NISP with Inf-FS
    nisp = d.structured("nisp", 0.5)
    out.append(Row("Yu et al. 2018 (+ Roffo et al. 2015)", "`nisp` (Inf-FS on the final response layer)",
                   "significant acceleration and compression with negligible accuracy loss",
                   f"50 %: {d.costs(nisp)}", uniform_speed, f"negligible loss (< 1 pt): {yes(d.drop(nisp) < 1)}",
                   small + f"; the FRL is the {classifier(d.base.model).in_features} inputs of the classifier"))

    # Nonnenmacher et al. 2022: SOSP-H
    sosp = d.structured("sosp_h", 0.5, allocation="global_raw")
    tw = d.structured("taylor_weight", 0.5, allocation="global_raw")
    cost = scoring_seconds(d.base.model, "sosp_h", d.scoring()) / scoring_seconds(d.base.model, "taylor_weight",
                                                                                  d.scoring())
    cifar = f"scoring VGG-16, SOSP-H / Taylor time: x{speed['sosp_over_taylor']:.1f}" if speed else "skipped"
    out.append(Row("Nonnenmacher et al. 2022", "`sosp_h` (Gauss-Newton HVP + first-order term, `global_raw`)",
                   "full-Hessian correlations at first-order cost; accuracy on par or better",
                   f"50 % global: sosp_h {d.costs(sosp)}; taylor_weight {d.costs(tw)}; scoring time x{cost:.1f} of "
                   "taylor_weight", cifar, f"cost within a small factor of first order (< 5x): "
                   f"{yes(cost < 5 and (speed is None or speed['sosp_over_taylor'] < 5))}", small))

    chip = d.structured("chip", 0.4)
    out.append(Row("Sui et al. 2021", "`chip` (channel independence)",
                   "ResNet-56/CIFAR-10: +0.75 % accuracy at -42.8 % params, -47.4 % FLOPs",
                   f"40 %: {d.costs(chip)}", uniform_speed, f"no loss: {yes(d.drop(chip) <= 0)}", small))

    # Liu et al. 2019: Scratch-B
    fine = d.structured("l1", 0.5, "oneshot_finetune", finetune_epochs=4)
    scr_e = d.structured("l1", 0.5, "scratch")
    scr_b = d.structured("l1", 0.5, "scratch_b")
    out.append(Row("Liu et al. 2019", "`scratch` (Scratch-E), `scratch_b` (Scratch-B)",
                   "fine-tuning a pruned model is comparable to or worse than training it from scratch (Scratch-B)",
                   f"l1 50 %: fine-tuned drop {d.drop(fine):+.1f}, Scratch-E {d.drop(scr_e):+.1f}, Scratch-B "
                   f"{d.drop(scr_b):+.1f} pt ({len(scr_b.history)} epochs)", "n/a",
                   f"Scratch-B >= fine-tuned: {yes(d.drop(scr_b) <= d.drop(fine))}", small))
    return out


def taylor_rows(d: Digits) -> list[Row]:
    """Molchanov et al. 2017 and 2019, judged as the papers judge them: against the oracle loss change."""
    out: list[Row] = []
    small = shape_note(d)
    corr = oracle_correlations(d, ["taylor_activation", "taylor_weight", "taylor_bn", "sosp_h", "l1", "mean_activation",
                                   "random"])
    fmt = {k: f"{v[0]:.2f}/{v[1]:.2f}" for k, v in corr.items()}
    out.append(Row("Molchanov et al. 2017", "`taylor_activation` (layer-wise L2 norm, `global_raw`)",
                   "Taylor ranks feature maps closer to the oracle than weight norm or mean activation (Spearman "
                   "per layer); > 10x theoretical reduction (3D-conv gesture net)",
                   f"Spearman with oracle |dL| (per layer / all channels): taylor_activation {fmt['taylor_activation']}"
                   f", l1 {fmt['l1']}, mean_activation {fmt['mean_activation']}, random {fmt['random']}", "n/a",
                   f"Taylor above weight norm and activation (per layer): "
                   f"{yes(corr['taylor_activation'][0] > max(corr['l1'][0], corr['mean_activation'][0]))}",
                   small + "; oracle on 512 training images of a trained net, not a transfer-learning task"))
    t19 = d.structured("taylor_bn", 0.3, allocation="global_raw")
    out.append(Row("Molchanov et al. 2019", "`taylor_bn`, `taylor_weight` (`global_raw`)",
                   "> 93 % correlation with the true importance; ResNet-101: -40 % FLOPs removing 30 % of the "
                   "parameters, -0.02 % top-1",
                   f"Spearman with oracle (per layer / all): taylor_bn {fmt['taylor_bn']}, taylor_weight "
                   f"{fmt['taylor_weight']}; 30 % filters global: {d.costs(t19)}", "n/a",
                   f"> 0.93 over all channels: {yes(corr['taylor_bn'][1] > 0.93)}",
                   small + f"; Spearman on {sum(d.base.filters.values())} channels, not on ResNet-101's"))
    return out


def sparse_rows(d: Digits) -> list[Row]:
    """Han et al. 2015, Deep Compression, SNIP, RigL, SCL."""
    out: list[Row] = []
    small = shape_note(d)
    # Han et al. 2015 and Deep Compression 2016
    han = d.sparse("magnitude", 0.89, steps=3, finetune_epochs=2)
    deep = d.sparse("magnitude", 0.89, steps=3, finetune_epochs=2, share_bits=8, fc_share_bits=5)
    c = deep.compression
    fc = classifier(d.base.model).weight.numel()
    conv_share = 1 - fc / sum(lay["weights"] for lay in c["layers"].values())
    out.append(Row("Han et al. 2015", "`magnitude` (per-layer q x std thresholds, iterative)",
                   "AlexNet 9x, VGG-16 13x fewer parameters without accuracy loss",
                   f"89 % (9x): drop {d.drop(han):+.1f} pt, q = {han.compression['quality']:.2f}", "n/a",
                   f"no loss (< 1 pt): {yes(d.drop(han) < 1)}",
                   small + "; 3 prune/retrain steps of 2 epochs each, against the paper's long retraining"))
    out.append(Row("Han et al. 2016 (Deep Compression)", "`magnitude` + `share_bits: 8`, `fc_share_bits: 5`",
                   "35x (AlexNet), 49x (VGG-16) smaller with pruning, trained quantization and Huffman coding",
                   f"89 %: x{c['ratio_pruned']:.1f} pruned, x{c['ratio_shared']:.1f} shared, x{c['ratio']:.1f} Huffman; "
                   f"drop {d.drop(deep):+.1f} pt", "n/a", f"35x: {yes(c['ratio'] >= 35)}",
                   f"{100 * conv_share:.0f} % of digits_cnn's weights are in conv layers (8-bit codes, 8-bit gaps) and "
                   f"its classifier has {classifier(d.base.model).weight.numel():,}; AlexNet's and VGG-16's bytes are "
                   "in FC layers kept at 3-9 % of their weights and coded in 5 bits, their codebooks amortised over "
                   "millions of weights (AlexNet keeps 84 % of conv1 but 9 % of fc6)"))

    # Lee et al. 2019 (SNIP), Evci et al. 2020 (RigL), Tang et al. 2022 (SCL)
    snip = d.sparse("snip", 0.9)
    rigl = d.sparse("rigl", 0.9)
    rigl_often = d.sparse("rigl", 0.9, delta_t=10)
    scl = d.sparse("scl", 0.9)
    steps = d.train.epochs * -(-len(d.splits.x_train) // d.train.batch_size)
    out.append(Row("Lee et al. 2019", "`snip` (at initialisation, global)",
                   "90-99 % sparse with virtually the reference accuracy (MNIST, CIFAR-10, Tiny-ImageNet)",
                   f"90 %: drop {d.drop(snip):+.1f} pt", "n/a", f"< 1 pt at 90 %: {yes(d.drop(snip) < 1)}", small))
    out.append(Row("Evci et al. 2020", "`rigl` (ERK, delta_t 100, cosine fraction)",
                   "sparse-from-scratch training beats dense-to-sparse at equal FLOPs; ResNet-50 80/90 % a few "
                   "points below dense", f"90 %: drop {d.drop(rigl):+.1f} pt (delta_t 100: "
                   f"{rigl.history[-1]['rigl_updates']} updates), {d.drop(rigl_often):+.1f} pt with delta_t 10; "
                   f"static SNIP {d.drop(snip):+.1f}", "n/a",
                   f"rewiring beats the static mask: {yes(min(d.drop(rigl), d.drop(rigl_often)) <= d.drop(snip))}",
                   small + f"; {steps} steps in all, so the paper's delta_t = 100 rewires "
                           f"{rigl.history[-1]['rigl_updates']} time(s) before T_end"))
    out.append(Row("Tang et al. 2022", "`scl` (STE masks, own optimizer; adaptive lam: edgebench's reading)",
                   "automatic sparse connectivity at state-of-the-art sparsity and accuracy",
                   f"90 %: drop {d.drop(scl):+.1f} pt", "n/a", f"< 1 pt: {yes(d.drop(scl) < 1)}", small))
    return out


def reading_rows(d: Digits) -> list[Row]:
    """The seeds whose abstract only was available (edgebench's readings), the BN-statistics, firing and low-rank
    methods."""
    out: list[Row] = []
    small = shape_note(d)
    unif = d.structured("l1", 0.5)
    # abstract-only seeds: edgebench's readings
    grad = d.structured("l1", 0.5, allocation="gradient_bound")
    out.append(Row("Zhou et al. 2022", "`gradient_bound` allocation (edgebench's reading)",
                   "highest accuracy at the same compression ratio", f"l1 50 %: gradient_bound {d.costs(grad)}, "
                   f"widths {grad.filters}; "
                   f"uniform {d.costs(unif)}", "n/a", f"beats uniform: {yes(d.drop(grad) <= d.drop(unif))}",
                   small + "; only the abstract was available: the construction is ours"))
    hess = d.structured("hessian_radius", 0.5, "while_training", prune_epochs=(1, 3, 5))
    l1_pwt = d.structured("l1", 0.5, "while_training", prune_epochs=(1, 3, 5))
    out.append(Row("Ebrahimi & Klabjan 2021", "`hessian_radius` (edgebench's reading)",
                   "better generalisation of the compressed network; very small networks with a small drop",
                   f"50 % while training: {d.costs(hess)}; l1 {d.costs(l1_pwt)}", "n/a",
                   f"beats l1: {yes(d.drop(hess) <= d.drop(l1_pwt))}", small + "; only the abstract was available"))
    bn_raw = d.structured("bn_stats", 0.5, finetune_epochs=0)
    l1_raw = d.structured("l1", 0.5, finetune_epochs=0, allocation="uniform")
    out.append(Row("Oh et al. 2022", "`bn_stats` (edgebench's reading)",
                   "BN parameters alone rank filters; good trade-off even without fine-tuning",
                   f"50 %, no finetuning: drop {d.drop(bn_raw):+.1f}; l1 {d.drop(l1_raw):+.1f} pt", "n/a",
                   f"beats l1 without finetuning: {yes(d.drop(bn_raw) <= d.drop(l1_raw))}", small))
    firing = d.structured("firing", 0.5, "iterative", steps=2, finetune_epochs=2)
    out.append(Row("Dekhovich et al. 2024", "`firing` (edgebench's reading: lifted to channels)",
                   "LeNet/MNIST at comparable accuracy with far fewer connections", f"50 %: {d.costs(firing)}", "n/a",
                   f"comparable (< 1 pt): {yes(d.drop(firing) < 1)}", small))
    lrpet = build_fp32_model(d.spec(lowrank=LowRankSpec(rank_ratio=0.5)), d.splits)
    out.append(Row("Guo et al. (LRPET)", "`lowrank` (`lrpet`, from scratch)",
                   "low-rank networks trained from scratch competitive with pruning", f"rank 0.5: {d.costs(lrpet)}; "
                   f"l1 50 % {d.costs(unif)}", "n/a", f"as accurate as l1 50 %: {yes(d.drop(lrpet) <= d.drop(unif))}",
                   small))
    return out


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in lscpu.splitlines() if line.startswith("Flags")), [])
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f in flags]
    return f"{model} ({', '.join(simd) or 'no AVX2'}), {os.cpu_count()} cores, Python {platform.python_version()}, " \
           f"torch {torch.__version__}"


def markdown(table: list[Row], header: list[str]) -> str:
    cols = ("seed paper", "edgebench method", "paper's headline claim", "measured here (digits)",
            "CIFAR shape (speed)", "holds here?", "why the shape differs")
    lines = [*header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table:
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in (r.seed, r.method, r.claim, r.measured,
                                                                          r.cifar, r.holds, r.why)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="baseline training epochs on digits")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the CIFAR-shape timing")
    parser.add_argument("--skip-cifar", action="store_true", help="leave out the CIFAR-shape timing")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    start, load = time.perf_counter(), os.getloadavg()[0]
    speed = None if args.skip_cifar else cifar_speed(args.threads)
    digits = Digits(args.epochs)
    table = [*filter_pruning_rows(digits, speed), *taylor_rows(digits), *sparse_rows(digits), *reading_rows(digits)]
    elapsed = time.perf_counter() - start
    header = [f"Seed claims on digits (baseline test accuracy {100 * digits.base_acc:.1f} %, {args.epochs} epochs); "
              f"{machine()}; load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; {elapsed:.0f} s"]
    text = markdown(table, header)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
