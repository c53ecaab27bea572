"""What unstructured sparsity and low rank buy, measured: the figures of issue 10's closing note.

Part 1, digits (trained through edgebench's own build path): each sparse method at 50/80/90 % and LRPET at
rank ratio 0.5/0.25, next to the dense baseline and L1 filter pruning - accuracy drop on the test split,
non-zero parameters, ONNX artifact ZIP size ratio, ONNX Runtime and LiteRT (XNNPACK) p50 speedup at batch 1
and one thread, and the hls4ml multiplier count ratio at reuse factor 1 (counted from the converted hls4ml
model, not synthesised). Part 2, speed only: VGG-16 and ResNet-56 at CIFAR shape with random weights, masked
to 50/80/90 % by per-layer magnitude or factorised at rank ratio 0.5/0.25. Latency is timed round-robin over
all variants of a model for several rounds (median of the per-round p50s), so load from other processes on a
shared machine hits every variant alike instead of whichever happened to run then.

    python scripts/bench_sparse_lowrank.py [--epochs 12] [--threads 1] [--no-litert] [--no-hls4ml] [--skip-cifar]
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgebench.archive import compressed_size
from edgebench.data import load_dataset
from edgebench.job import MeasureSettings
from edgebench.measure.harness import time_session
from edgebench.models import create_model
from edgebench.models.cost import count_macs, count_nonzero_params
from edgebench.prune import build_fp32_model
from edgebench.prune.lowrank import factorisable_ranks, factorise, project_layers
from edgebench.prune.sparse.magnitude import magnitude_masks
from edgebench.prune.sparse.masks import apply_masks
from edgebench.runtimes.base import BackendSettings, Session, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.train import evaluate
from edgebench.variants import LowRankSpec, PruneSpec, QuantSpec, SparseSpec, TrainSpec, VariantSpec

SPARSITIES = (0.5, 0.8, 0.9)
RANK_RATIOS = (0.5, 0.25)
CIFAR = (3, 32, 32)
#: one round's timing of one session; rounds x variants of these make up the figure
ROUND = MeasureSettings(warmup_iters=10, min_iters=50, min_time_s=0.3, max_time_s=5.0)


class Sessions:
    """ONNX Runtime and LiteRT sessions of a set of variants, exported through edgebench's exporters into one
    temporary directory, timed round-robin."""

    def __init__(self, threads: int, litert: bool) -> None:
        self.threads, self.litert = threads, litert
        self._tmp = tempfile.TemporaryDirectory()
        self.sessions: dict[tuple[str, str], Session] = {}
        self.zip_bytes: dict[str, int] = {}

    def add(self, label: str, model: nn.Module, calibration: np.ndarray) -> None:
        onnx_path = Path(self._tmp.name) / f"{len(self.zip_bytes)}.onnx"
        export_fp32_onnx(model.eval(), torch.from_numpy(calibration[:1]), onnx_path)
        self.zip_bytes[label] = compressed_size(onnx_path)
        settings = BackendSettings(threads=self.threads)
        self.sessions[(label, "ort")] = get_backend("onnxruntime").load(onnx_path, settings)
        if self.litert:
            path = get_exporter("tflite").export(model.eval(), QuantSpec(), calibration, onnx_path.with_suffix(".tflite"))
            self.sessions[(label, "litert")] = get_backend("litert").load(path, settings)

    def p50_ms(self, example: np.ndarray, rounds: int) -> dict[tuple[str, str], float]:
        """Median over ``rounds`` of each session's p50 (ms), the sessions interleaved within every round."""
        per_round: dict[tuple[str, str], list[float]] = {key: [] for key in self.sessions}
        for _ in range(rounds):
            for key, session in self.sessions.items():
                per_round[key].append(float(np.median(time_session(session, example, ROUND).samples_ns)) / 1e6)
        return {key: float(np.median(v)) for key, v in per_round.items()}


def hls4ml_multipliers(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multipliers of the converted hls4ml model at reuse factor 1 (ap_fixed<16,6>)."""
    from edgebench.runtimes.hls4ml.export import DEFAULT_FPGA, convert_model
    from edgebench.runtimes.hls4ml.multipliers import count_multipliers

    with tempfile.TemporaryDirectory() as tmp:
        quant = QuantSpec(precision="fixed", fixed_point="ap_fixed<16,6>")
        return count_multipliers(convert_model(model.eval(), input_shape, quant, DEFAULT_FPGA, Path(tmp)))["multipliers"]


def digits_variants(epochs: int) -> list[tuple[str, VariantSpec]]:
    base = VariantSpec(model="digits_cnn", dataset="digits", dataset_kwargs={"seed": 0}, train=TrainSpec(epochs=epochs))
    out = [("baseline", base)]
    for ratio in (0.5, 0.8):
        out.append((f"l1 filters {ratio:.0%}", base.model_copy(update={"prune": PruneSpec(
            criterion="l1", ratio=ratio, prune_epochs=(2, 4, 6))})))
    for method in ("magnitude", "snip", "rigl", "scl"):
        for s in SPARSITIES:
            out.append((f"{method} {s:.0%}", base.model_copy(update={"sparse": SparseSpec(method=method, sparsity=s)})))
    for r in RANK_RATIOS:
        out.append((f"lrpet rank {r:g}", base.model_copy(update={"lowrank": LowRankSpec(rank_ratio=r)})))
    return out


def part_digits(args: argparse.Namespace) -> None:
    splits = load_dataset("digits", seed=0)
    calib = np.ascontiguousarray(splits.x_train[:32], dtype=np.float32)
    shape = tuple(splits.input_shape)
    rows: dict[str, dict[str, float]] = {}
    sessions = Sessions(args.threads, args.litert)
    baseline = None
    for name, spec in digits_variants(args.epochs):
        built = build_fp32_model(spec, splits, baseline=baseline)
        if spec.kind == "baseline":
            baseline = built
        model = built.model.eval()
        rows[name] = {
            "acc": evaluate(model, splits.x_test, splits.y_test),
            "nz": count_nonzero_params(model),
            "macs": count_macs(model, shape),
            "mult": hls4ml_multipliers(model, shape) if args.hls4ml else float("nan"),
        }
        sessions.add(name, model, calib)
    latency = sessions.p50_ms(calib[:1], args.rounds)
    print(f"digits: digits_cnn, {args.epochs} epochs, test split {len(splits.x_test)} images; batch 1, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds; ratios vs the dense baseline")
    print(f"{'variant':<18} {'acc':>6} {'drop pt':>7} {'non-zero':>9} {'nz x':>6} {'MACs x':>6} {'zip x':>6} "
          f"{'ORT ms':>7} {'ORT x':>6} {'LiteRT ms':>9} {'LiteRT x':>8} {'hls mult x':>10}")
    ref = rows["baseline"]
    nan = float("nan")
    for name, row in rows.items():
        ort, lite = latency[(name, "ort")], latency.get((name, "litert"), nan)
        base_ort, base_lite = latency[("baseline", "ort")], latency.get(("baseline", "litert"), nan)
        print(f"{name:<18} {row['acc']:>6.4f} {100 * (ref['acc'] - row['acc']):>7.1f} {row['nz']:>9,} "
              f"{ref['nz'] / row['nz']:>6.2f} {ref['macs'] / row['macs']:>6.2f} "
              f"{sessions.zip_bytes['baseline'] / sessions.zip_bytes[name]:>6.2f} {ort:>7.3f} {base_ort / ort:>6.2f} "
              f"{lite:>9.3f} {base_lite / lite:>8.2f} {ref['mult'] / row['mult']:>10.2f}")


def cifar_variants(name: str) -> list[tuple[str, nn.Module]]:
    """Dense random-weight model, its per-layer magnitude masks and its rank-r factorisations."""
    torch.manual_seed(0)
    dense = create_model(name, num_classes=10, in_channels=3).eval()
    variants = [("dense", dense)]
    for s in SPARSITIES:
        masked = copy.deepcopy(dense)
        apply_masks(masked, magnitude_masks(masked, s))
        variants.append((f"sparse {s:.0%}", masked))
    for r in RANK_RATIOS:
        low = copy.deepcopy(dense)
        ranks = factorisable_ranks(low, r)
        project_layers(low, ranks, {}, energy_transfer=False)  # rank r exactly, as after LRPET training
        factorise(low, ranks)
        variants.append((f"rank {r:g}", low))
    return variants


def part_cifar(args: argparse.Namespace) -> None:
    calib = np.random.default_rng(0).standard_normal((32, *CIFAR)).astype(np.float32)
    print(f"\nspeed only, random weights, input 1x{'x'.join(map(str, CIFAR))}, {args.threads} thread(s), "
          f"{args.rounds} interleaved rounds: p50 ms and speedup vs dense")
    print(f"{'model':<15} {'variant':<11} {'MACs x':>6} {'ORT ms':>8} {'ORT x':>6} {'LiteRT ms':>9} {'LiteRT x':>8}")
    for name in ("vgg16_cifar", "resnet56_cifar"):
        variants = cifar_variants(name)
        sessions = Sessions(args.threads, args.litert)
        for label, model in variants:
            sessions.add(label, model, calib)
        latency = sessions.p50_ms(calib[:1], args.rounds)
        nan = float("nan")
        base_macs = count_macs(variants[0][1], CIFAR)
        for label, model in variants:
            ort, lite = latency[(label, "ort")], latency.get((label, "litert"), nan)
            print(f"{name:<15} {label:<11} {base_macs / count_macs(model, CIFAR):>6.2f} {ort:>8.3f} "
                  f"{latency[('dense', 'ort')] / ort:>6.2f} {lite:>9.3f} {latency.get(('dense', 'litert'), nan) / lite:>8.2f}",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per session")
    parser.add_argument("--no-litert", dest="litert", action="store_false")
    parser.add_argument("--no-hls4ml", dest="hls4ml", action="store_false")
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    if not args.skip_digits:
        part_digits(args)
    if not args.skip_cifar:
        part_cifar(args)


if __name__ == "__main__":
    main()
