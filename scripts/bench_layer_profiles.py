"""Where the time goes per layer: ORT per-layer profiles of VGG-16 and ResNet-56 at CIFAR shape (issue 12).

Random weights (speed does not depend on them), batch 1, fixed threads. For the unpruned model and for
50 % of filters removed by L1 (per layer): p50 from the timed harness, then - in its own window
afterwards - ORT session profiling mapped to the PyTorch layers. Prints the top layers by time with
time share vs MACs share, the share of p50 that is not conv/gemm kernel time, and the layers whose
removed MACs did not become removed time.

    python scripts/bench_layer_profiles.py [--threads 1] [--top 10] [--runtime onnxruntime|openvino]
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
from edgebench.profile.table import LayerProfile, format_profile, macs_time_gaps
from edgebench.prune import create_criterion, prune_model
from edgebench.runtimes.base import BackendSettings, get_backend
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

SHAPE = (3, 32, 32)
TIMING = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=1.0, max_time_s=10.0)


def measure(model: torch.nn.Module, runtime: str, threads: int, runs: int) -> tuple[float, LayerProfile]:
    """p50 (timed window) and the per-layer profile (a separate window after it) of ``model`` exported to ONNX."""
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_fp32_onnx(model.eval(), torch.from_numpy(x), path)
        settings = BackendSettings(threads=threads)
        session = get_backend(runtime).load(path, settings)
        p50 = float(np.median(time_session(session, x, TIMING).samples_ns)) / 1e6
        session.close()
        if runtime == "openvino":
            from edgebench.runtimes.openvino.profile import profile_openvino

            profile = profile_openvino(path, x, settings, runs=runs)
        else:
            from edgebench.runtimes.onnxruntime.profile import profile_onnxruntime

            profile = profile_onnxruntime(path, x, threads, runs=runs)
    return p50, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16_cifar", "resnet56_cifar"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="inferences in the profiling window")
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"{args.runtime}, {args.threads} thread(s), batch 1, fp32; load {os.getloadavg()[0]:.2f} (2 cores)")
    for name in args.models:
        torch.manual_seed(0)
        base = create_model(name, num_classes=10, in_channels=3).eval()
        pruned = create_model(name, num_classes=10, in_channels=3).eval()
        pruned.load_state_dict(base.state_dict())
        prune_model(pruned, create_criterion("l1"), 0.5, torch.randn(1, *SHAPE))
        profiles = {}
        for label, model in (("unpruned", base), ("50% L1", pruned)):
            p50, profile = measure(model, args.runtime, args.threads, args.runs)
            profiles[label] = profile
            print(f"\n{name} {label}: p50 {p50:.3f} ms (timed window); profiled run {profile.run_ms:.3f} ms; "
                  f"top {args.top} layers by time")
            print(format_profile(profile, top=args.top, p50_ms=p50))
        gaps = macs_time_gaps(profiles["unpruned"], profiles["50% L1"])
        print(f"\n{name}: layers where removed MACs did not become time (>= 20 % MACs removed, < 50 % of it realised)")
        print(f"{'layer':<28} {'MACs kept':>9} {'time kept':>9} {'ms before':>9} {'ms after':>9}")
        for gap in gaps[: args.top]:
            print(f"{gap.layer:<28} {gap.macs_kept:>9.0%} {gap.time_kept:>9.0%} {gap.base_ms:>9.4f} {gap.pruned_ms:>9.4f}")
        if not gaps:
            print("(none)")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
