"""OpenVINO vs ONNX Runtime on the same ONNX artifacts: VGG-16 and ResNet-56 at CIFAR shape (issue 12).

Random weights (speed does not depend on them), batch 1, fixed threads. Each model is exported once to
fp32 ONNX and once to edgebench's QDQ int8 ONNX (calibrated on random images: speed only); both runtimes
load the same two files through their edgebench backends and are timed by the same harness, alternating
runtimes so load changes hit both. Prints p50 fp32 and int8 per runtime and the int8/fp32 speedup.

    python scripts/bench_openvino_vs_ort.py [--threads 1] [--models vgg16_cifar resnet56_cifar]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgebench.job import MeasureSettings
from edgebench.measure.harness import time_session
from edgebench.models import create_model
from edgebench.runtimes.base import BackendSettings, get_backend
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

SHAPE = (3, 32, 32)
TIMING = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=1.0, max_time_s=10.0)
RUNTIMES = ("onnxruntime", "openvino")


def p50_ms(runtime: str, path: Path, x: np.ndarray, threads: int) -> float:
    session = get_backend(runtime).load(path, BackendSettings(threads=threads))
    try:
        return float(np.median(time_session(session, x, TIMING).samples_ns)) / 1e6
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16_cifar", "resnet56_cifar"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is printed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, *SHAPE)).astype(np.float32)
    x = calibration[:1]
    print(f"{args.threads} thread(s), batch 1, median of {args.repeats} alternating p50s; "
          f"load {os.getloadavg()[0]:.2f} (2 cores)")
    print(f"{'model':<15} {'runtime':<12} {'fp32 ms':>8} {'int8 ms':>8} {'int8/fp32 x':>11}")
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, num_classes=10, in_channels=3).eval()
        with tempfile.TemporaryDirectory() as tmp:
            paths = {"fp32": Path(tmp) / "fp32.onnx", "int8": Path(tmp) / "int8.onnx"}
            export_fp32_onnx(model, torch.from_numpy(x), paths["fp32"])
            quantize_qdq(paths["fp32"], paths["int8"], calibration)
            samples: dict[tuple[str, str], list[float]] = {(r, p): [] for r in RUNTIMES for p in paths}
            for _ in range(args.repeats):
                for runtime in RUNTIMES:
                    for precision, path in paths.items():
                        samples[runtime, precision].append(p50_ms(runtime, path, x, args.threads))
        for runtime in RUNTIMES:
            fp32, int8 = (float(np.median(samples[runtime, p])) for p in ("fp32", "int8"))
            print(f"{name:<15} {runtime:<12} {fp32:>8.3f} {int8:>8.3f} {fp32 / int8:>11.2f}", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
