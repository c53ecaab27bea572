"""Reproduce the experiment shape of "Pruning Filters while Training" (Roy et al. 2020, seed 001).

A VGG-style net is pruned while it trains (filters removed at ~25/50/75% of the run, ratio ramped to the
target, no retraining) with the paper's three criteria at 25/50/80% of filters, and compared with the usual
train -> prune -> retrain for 10 epochs. Prints, per variant: test accuracy and its drop (percentage points) against the
unpruned net, params and MACs reduction, measured ONNX Runtime CPU speedup (batch 1, one thread) and the
training compute saved against train -> prune -> retrain.

Default (bundled digits, seconds per variant):
    python scripts/reproduce_pruning_while_training.py
The paper's CIFAR-10 experiment, with the extracted cifar-10-batches-py directory (hours on a CPU):
    python scripts/reproduce_pruning_while_training.py --dataset cifar10 --path ~/data/cifar-10-batches-py \
        --model vgg16_cifar --epochs 160 --lr 0.1 --batch-size 128
"""

from __future__ import annotations

import argparse
import logging

from _ort_timing import ort_p50_ms

from edgebench.data import load_dataset
from edgebench.prune import build_fp32_model
from edgebench.train import evaluate
from edgebench.variants import PruneSpec, TrainSpec, VariantSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--path", default=None, help="dataset directory (cifar10/cifar100)")
    parser.add_argument("--model", default="digits_cnn")
    parser.add_argument("--epochs", type=int, default=16, help="16 leaves 4 epochs after the last removal")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--criteria", nargs="+", default=["l1", "mean_activation", "random"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.8])
    parser.add_argument("--retrain-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    splits = load_dataset(args.dataset, **({"path": args.path} if args.path else {}))
    train = TrainSpec(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    spec = VariantSpec(model=args.model, dataset=args.dataset, train=train)
    calibration = splits.x_train[:32]
    base = build_fp32_model(spec, splits)
    base_acc = evaluate(base.model, splits.x_test, splits.y_test)
    base_ms = ort_p50_ms(base.model, calibration, args.threads)
    print(f"{args.model} on {args.dataset}: {args.epochs} epochs, test accuracy {base_acc:.4f}, "
          f"{base.params:,} params, {base.macs / 1e6:.3f} MMACs, ORT p50 {base_ms * 1e3:.1f} us, "
          f"training {base.training_macs / 1e9:.1f} GMACs")
    print(f"{'criterion':<16} {'pruned':>6} {'schedule':<22} {'test acc':>8} {'drop pp':>7} {'params -':>8} "
          f"{'MACs -':>7} {'speedup':>7} {'train GMACs':>11} {'saving':>7}")
    for criterion in args.criteria:
        for ratio in args.ratios:
            variants = {
                "while_training": PruneSpec(criterion=criterion, ratio=ratio),
                f"prune+retrain {args.retrain_epochs}ep": PruneSpec(
                    criterion=criterion, ratio=ratio, schedule="oneshot_finetune", finetune_epochs=args.retrain_epochs
                ),
            }
            built = {k: build_fp32_model(spec.model_copy(update={"prune": p}), splits, baseline=base)
                     for k, p in variants.items()}
            reference = built[list(variants)[1]].training_macs  # train -> prune -> retrain
            for label, b in built.items():
                acc = evaluate(b.model, splits.x_test, splits.y_test)
                speed = base_ms / ort_p50_ms(b.model, calibration, args.threads)
                print(
                    f"{criterion:<16} {ratio:>6.0%} {label:<22} {acc:>8.4f} {100 * (base_acc - acc):>+7.2f} "
                    f"{1 - b.params / base.params:>8.1%} {1 - b.macs / base.macs:>7.1%} {speed:>6.2f}x "
                    f"{b.training_macs / 1e9:>11.1f} {1 - b.training_macs / reference:>7.1%}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
