"""How much of a filter-pruning MACs cut becomes measured speed (issue 3, item 9).

VGG-16 and ResNet-56 at CIFAR input shape (random weights: speed does not depend on them), 0/25/50/80% of
filters removed by L1 per layer; ONNX Runtime CPU p50 at batch 1 and a fixed thread count, fp32 and int8
(QDQ per-channel). Prints MACs reduction, measured speedup, their ratio, and int8/fp32 speedup.

    python scripts/bench_pruned_speed.py [--threads 1] [--round-to 8] [--models vgg16_cifar resnet56_cifar]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch
from _ort_timing import ort_p50_ms

from edgebench.models import create_model, list_models
from edgebench.models.cost import count_macs, count_params
from edgebench.prune import create_criterion, prune_model

SHAPE = (3, 32, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16_cifar", "resnet56_cifar"], choices=list_models(),
                        metavar="MODEL", help=f"zoo models: {', '.join(list_models())}")
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.8],
                        help="fractions of filters removed; the unpruned model (0) is always measured: the x columns "
                             "are against it")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--round-to", type=int, default=None, help="keep channel counts multiples of this")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    torch.manual_seed(0)
    calibration = np.random.default_rng(0).standard_normal((32, *SHAPE)).astype(np.float32)

    print(f"threads={args.threads} round_to={args.round_to} input=1x{'x'.join(map(str, SHAPE))} ORT CPU p50")
    header = f"{'model':<15} {'pruned':>6} {'MMACs':>8} {'params':>9} {'MACs x':>7} {'fp32 ms':>8} {'speed x':>8} "
    print(header + f"{'speed/MACs':>10} {'int8 ms':>8} {'int8/fp32 x':>11}")
    for name in args.models:
        base_macs = base_ms = None
        for ratio in [0.0, *sorted(r for r in set(args.ratios) if r > 0)]:  # first the base the x columns divide by
            torch.manual_seed(0)
            model = create_model(name, num_classes=10, in_channels=3).eval()
            if ratio > 0:
                prune_model(model, create_criterion("l1"), ratio, torch.randn(1, *SHAPE), round_to=args.round_to)
            macs = count_macs(model, SHAPE)
            fp32 = ort_p50_ms(model, calibration, args.threads)
            int8 = ort_p50_ms(model, calibration, args.threads, int8=True)
            base_macs, base_ms = base_macs or macs, base_ms or fp32
            macs_x, speed_x = base_macs / macs, base_ms / fp32
            print(
                f"{name:<15} {ratio:>6.0%} {macs / 1e6:>8.1f} {count_params(model):>9,} {macs_x:>7.2f} {fp32:>8.3f} "
                f"{speed_x:>8.2f} {speed_x / macs_x:>10.2f} {int8:>8.3f} {fp32 / int8:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
