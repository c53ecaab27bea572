"""Training compute that trained weights save (examples/own_model): the example's pruning while fine-tuning from the
team's checkpoint against the same variants trained from scratch by edgebench, with each variant's test accuracy
(PyTorch on local-cpu) and its training MACs as the store records them. The checkpoint's own training (train.py,
outside edgebench) is counted the same way, 3 x forward MACs per image seen, and printed beside.

    .venv/bin/python scripts/bench_from_weights.py [--pretrain-epochs 6] [--finetune-epochs 3] [--scratch-epochs 9]

Runs in a temporary copy of the example (about 10 minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import edgebench
from edgebench.measure.machine import cpu_model
from edgebench.train import TRAIN_MACS_FACTOR

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_model"


def _experiment(folder: Path, name: str, epochs: int, lr: float, weights: bool) -> Path:
    """The example's experiment, fp32 on local-cpu only (accuracy and training compute are the question)."""
    exp = yaml.safe_load((folder / "experiment.yaml").read_text())
    exp.update(name=name, artifacts=[], targets=["local-cpu"],
               quantization={"precisions": ["fp32"]},
               measurement={"warmup_iters": 2, "min_iters": 5, "min_time_s": 0.0, "max_time_s": 0.5})
    exp["training"].update(epochs=epochs, lr=lr)
    exp["pruning"]["prune_epochs"] = [0, 1] if weights else [epochs // 3, 2 * epochs // 3]
    if not weights:
        del exp["model"]["weights"]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _rows(path: Path) -> dict[str, tuple[float, float]]:
    df = edgebench.run(path, render=False).measurements()
    df = df[df["backend"] == "torch"]
    return {row.label.removesuffix("/fp32"): (row.accuracy, row.training_macs / 1e9) for row in df.itertuples()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-epochs", type=int, default=6, help="train.py's epochs (the checkpoint)")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--scratch-epochs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "own_model"
        shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("checkpoints", "runs", "reports", "__pycache__"))
        os.chdir(folder)
        subprocess.run([sys.executable, "train.py", "--epochs", str(args.pretrain_epochs)], check=True,
                       capture_output=True)
        exp = yaml.safe_load((folder / "experiment.yaml").read_text())
        sys.path.insert(0, str(folder))
        from resnet import build_resnet18

        from edgebench.models.cost import count_macs

        size = exp["dataset"]["kwargs"]["size"]
        per_image = count_macs(build_resnet18(**exp["model"]["kwargs"]), (3, size, size))
        pretrain = TRAIN_MACS_FACTOR * per_image * exp["dataset"]["kwargs"]["n_train"] * args.pretrain_epochs / 1e9
        tuned = _rows(_experiment(folder, "from_weights", args.finetune_epochs, exp["training"]["lr"], True))
        scratch = _rows(_experiment(folder, "from_scratch", args.scratch_epochs, 0.05, False))
    print(f"CPU: {cpu_model()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"checkpoint: {args.pretrain_epochs} epochs in train.py = {pretrain:.1f} GMACs of training")
    print(f"{'variant':<28} {'from weights: acc':>18} {'GMACs':>7} {'+ckpt':>7}   {'from scratch: acc':>18} {'GMACs':>7}")
    for label in sorted(set(tuned) | set(scratch)):
        t_acc, t_gmacs = tuned.get(label, (float("nan"),) * 2)
        s_acc, s_gmacs = scratch.get(label, (float("nan"),) * 2)
        print(f"{label:<28} {t_acc:>18.3f} {t_gmacs:>7.1f} {t_gmacs + pretrain:>7.1f}   {s_acc:>18.3f} {s_gmacs:>7.1f}")


if __name__ == "__main__":
    main()
