"""What unstructured sparsity and low rank buy, measured: the figures of issue 10's closing note.

Part 1, digits (trained through edgebench's own build path): each sparse method at 50/80/90 % and LRPET at
rank ratio 0.5/0.25, next to the dense baseline and L1 filter pruning - accuracy drop on the test split,
non-zero parameters, ONNX artifact ZIP size ratio, ONNX Runtime and LiteRT (XNNPACK) p50 speedup at batch 1
and one thread, and the hls4ml multiplier count ratio at reuse factor 1 (counted from the converted hls4ml
model, not synthesised). Part 2, speed only: VGG-16 and ResNet-56 at CIFAR shape with random weights, masked
to 50/80/90 % by per-layer magnitude or factorised at rank ratio 0.5/0.25.

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
from _ort_timing import SETTINGS, ort_p50_ms
from torch import nn

from edgebench.archive import compressed_size
from edgebench.data import load_dataset
from edgebench.measure.harness import time_session
from edgebench.models import create_model
from edgebench.models.cost import count_macs, count_nonzero_params
from edgebench.prune import build_fp32_model
from edgebench.prune.lowrank import factorisable_ranks, factorise, project_layers
from edgebench.prune.sparse.magnitude import magnitude_masks
from edgebench.prune.sparse.masks import apply_masks
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.train import evaluate
from edgebench.variants import LowRankSpec, PruneSpec, QuantSpec, SparseSpec, TrainSpec, VariantSpec

SPARSITIES = (0.5, 0.8, 0.9)
RANK_RATIOS = (0.5, 0.25)
CIFAR = (3, 32, 32)


def litert_p50_ms(model: nn.Module, calibration: np.ndarray, threads: int) -> float:
    """Median batch-1 latency in ms of ``model`` converted by edgebench's LiteRT exporter, XNNPACK on."""
    with tempfile.TemporaryDirectory() as tmp:
        path = get_exporter("tflite").export(model.eval(), QuantSpec(), calibration, Path(tmp) / "m.tflite")
        session = get_backend("litert").load(path, BackendSettings(threads=threads))
        timing = time_session(session, calibration[:1], SETTINGS)
    return float(np.median(timing.samples_ns)) / 1e6


def zip_bytes(model: nn.Module, example: np.ndarray) -> int:
    """ZIP size of ``model``'s fp32 ONNX artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_fp32_onnx(model.eval(), torch.from_numpy(example[:1]), path)
        return compressed_size(path)


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
    print(f"digits: digits_cnn, {args.epochs} epochs, test split {len(splits.x_test)} images; batch 1, "
          f"{args.threads} thread(s); ratios vs the dense baseline")
    print(f"{'variant':<18} {'acc':>6} {'drop pt':>7} {'non-zero':>9} {'nz x':>6} {'MACs x':>6} {'zip x':>6} "
          f"{'ORT x':>6} {'LiteRT x':>8} {'hls mult x':>10}")
    ref: dict[str, float] = {}
    baseline = None
    for name, spec in digits_variants(args.epochs):
        built = build_fp32_model(spec, splits, baseline=baseline)
        if spec.kind == "baseline":
            baseline = built
        model = built.model.eval()
        row = {
            "acc": evaluate(model, splits.x_test, splits.y_test),
            "nz": count_nonzero_params(model),
            "macs": count_macs(model, shape),
            "zip": zip_bytes(model, calib),
            "ort": ort_p50_ms(model, calib, args.threads),
            "litert": litert_p50_ms(model, calib, args.threads) if args.litert else float("nan"),
            "mult": hls4ml_multipliers(model, shape) if args.hls4ml else float("nan"),
        }
        ref = ref or row
        print(f"{name:<18} {row['acc']:>6.4f} {100 * (ref['acc'] - row['acc']):>7.1f} {row['nz']:>9,} "
              f"{ref['nz'] / row['nz']:>6.2f} {ref['macs'] / row['macs']:>6.2f} {ref['zip'] / row['zip']:>6.2f} "
              f"{ref['ort'] / row['ort']:>6.2f} {ref['litert'] / row['litert']:>8.2f} {ref['mult'] / row['mult']:>10.2f}",
              flush=True)


def part_cifar(args: argparse.Namespace) -> None:
    calib = np.random.default_rng(0).standard_normal((32, *CIFAR)).astype(np.float32)
    print(f"\nspeed only, random weights, input 1x{'x'.join(map(str, CIFAR))}, {args.threads} thread(s): "
          "p50 ms and speedup vs dense")
    print(f"{'model':<15} {'variant':<14} {'MACs x':>6} {'ORT ms':>8} {'ORT x':>6} {'LiteRT ms':>9} {'LiteRT x':>8}")
    for name in ("vgg16_cifar", "resnet56_cifar"):
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
        base_ort = base_lite = base_macs = None
        for label, model in variants:
            macs = count_macs(model, CIFAR)
            ort = ort_p50_ms(model, calib, args.threads)
            lite = litert_p50_ms(model, calib, args.threads) if args.litert else float("nan")
            base_ort, base_lite, base_macs = base_ort or ort, base_lite or lite, base_macs or macs
            print(f"{name:<15} {label:<14} {base_macs / macs:>6.2f} {ort:>8.3f} {base_ort / ort:>6.2f} "
                  f"{lite:>9.3f} {base_lite / lite:>8.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
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
