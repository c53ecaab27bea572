"""Pinned side-by-side lanes (issue 22, part 2): p50 alone vs beside a busy neighbour, and the measure stage.

1. The interference check a run makes before it uses ``measurement.parallel_lanes``, on three real artifacts:
   the digits CNN, ResNet-56 and VGG-16 at CIFAR shape (fp32 ONNX, random weights: speed does not depend on
   them), ONNX Runtime, one thread, the default 1 % precision window: p50 on the first core alone, beside a
   busy neighbour (the same artifact in a loop on every other core), alone again; the ratio and the verdict.
2. The measure stage of a small sweep (digits, baseline + 50 % L1, fp32 and int8 on local-cpu: 6 measurements)
   run one at a time and then with ``parallel_lanes: true`` in the same workdir (builds and exports reused):
   measure-stage seconds of each and their ratio; a run whose check refuses the lanes says so and measures one
   at a time.

    python scripts/bench_parallel_lanes.py [--skip-sweep]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

from edgebench.config import DEFAULT_EXPERIMENT, load_experiment
from edgebench.executor.side_by_side import interference_check, lane_cores
from edgebench.job import MeasureSettings
from edgebench.models import create_model
from edgebench.pipeline import run_experiment
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

MODELS = {"digits_cnn": (1, 8, 8), "resnet56_cifar": (3, 32, 32), "vgg16_cifar": (3, 32, 32)}


def machine() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"lscpu: {name}; lane cores {lane_cores()}; load {load}"


def check_models(tmp: Path) -> None:
    print(f"{'model':<16} {'alone ms':>9} {'beside ms':>9} {'again ms':>9} {'beside/alone':>12}  verdict")
    for name, shape in MODELS.items():
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_channels=shape[0]).eval()
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        path = tmp / f"{name}.onnx"
        export_fp32_onnx(model, torch.from_numpy(x), path)
        verdict = interference_check(lane_cores(), path, "onnxruntime", x, MeasureSettings())
        if verdict.slowdown is None:
            print(f"{name:<16} {'-':>9} {'-':>9} {'-':>9} {'-':>12}  {verdict.reason}")
            continue
        print(f"{name:<16} {verdict.alone_ms:>9.4f} {verdict.beside_ms:>9.4f} {verdict.alone_again_ms:>9.4f} "
              f"{verdict.slowdown:>12.3f}  {'side by side' if verdict.ok else 'refused'}")


def sweep(tmp: Path) -> None:
    data = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    data.update(name="lanes", training={"epochs": 1, "batch_size": 128},
                pruning={"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0], "allocation": ["uniform"]},
                quantization={"precisions": ["fp32", "int8"]}, targets=["local-cpu"],
                run={"workdir": str(tmp / "runs")}, store={"url": str(tmp / "results.db")})
    seconds, used = {}, False
    for lanes in (False, True):
        data["measurement"] = {**data.get("measurement", {}), "parallel_lanes": lanes}
        path = tmp / f"lanes-{lanes}.yaml"
        path.write_text(yaml.safe_dump(data))
        outcome = run_experiment(load_experiment(path), render=False)
        seconds[lanes] = outcome.stage_seconds.get("measure", float("nan"))
        verdict = outcome.side_by_side
        used = used or bool(verdict and verdict.ok)
        note = "" if verdict is None else f"; check: {'side by side' if verdict.ok else 'refused'}: {verdict.reason}"
        print(f"parallel_lanes={lanes}: {outcome.measured} measured, measure stage {seconds[lanes]:.1f} s{note}")
    ratio = seconds[False] / seconds[True]
    if used:
        print(f"measure-stage speedup: {ratio:.2f}x")
    else:  # both runs measured one at a time: their ratio is the machine's drift between them, not the lanes'
        print(f"no speedup measured: the check refused the lanes, both runs measured one at a time (their "
              f"measure-stage ratio {ratio:.2f}x is the load changing between the two runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-sweep", action="store_true", help="only the interference check of the three models")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        check_models(Path(tmp))
        if not args.skip_sweep:
            sweep(Path(tmp))
    print(machine())


if __name__ == "__main__":
    main()
