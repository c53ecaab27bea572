"""How well the latency tables predict a pruned variant's p50 (issue 22, part 4): MAPE per model and runtime.

ResNet-56 and VGG-16 at CIFAR shape (random weights: speed does not depend on them), batch 1, the threads and
options of the shipped targets (local-cpu for ONNX Runtime, local-openvino for OpenVINO). Per model: the
unpruned model and ``--ratios`` uniform L1 variants plus ``--random`` variants with random per-group widths
(non-uniform, as the latency and global allocations make). Each variant's p50 is predicted exactly as a run
with ``measurement.predict_latency`` does (``TargetLatencyModel``: the unpruned model's measured p50 scaled by
the ratio of the table sums, the call overhead counted once), then measured with the harness's default
adaptive window (1 % precision). Prints per variant predicted vs measured, the MAPE per model/runtime (and that
of the raw, uncalibrated table sum, and of the calibration with each entry's call overhead left in,
"per-call"), and which layers carry the error: each layer's table entry (scaled like the prediction) against its time inside
the whole model (the runtime's per-layer profile, scaled to the measured p50), averaged over the variants,
beside the time the tables do not model (residual adds, pooling, the runtime between operators).

    python scripts/bench_latency_model.py [--models resnet56_cifar vgg16_cifar] [--runtimes onnxruntime openvino]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgebench.job import MeasureSettings
from edgebench.models import create_model
from edgebench.prune import create_criterion, prune_model
from edgebench.prune.allocation.latency.predict import TargetLatencyModel, predict_p50
from edgebench.prune.allocation.latency.search import layer_shapes, model_layers, original_widths, prune_to_keep
from edgebench.prune.allocation.latency.table import onnx_p50_ms
from edgebench.prune.criteria.magnitude import L1Norm
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.targets import get_target

SHAPE = (3, 32, 32)
TARGETS = {"onnxruntime": "local-cpu", "openvino": "local-openvino"}


def variants(name: str, ratios: list[float], n_random: int, example: torch.Tensor) -> dict[str, torch.nn.Module]:
    """The unpruned model, uniform L1 variants and random-width variants of ``name``."""
    torch.manual_seed(0)
    base = create_model(name, num_classes=10, in_channels=3).eval()
    out = {"unpruned": base}
    for ratio in ratios:
        model = copy.deepcopy(base)
        prune_model(model, create_criterion("l1"), ratio, example)
        out[f"uniform {ratio:.2f}"] = model
    rng = np.random.default_rng(0)
    layers = model_layers(base, example)
    for i in range(n_random):
        keep = {g: max(4, int(w * rng.uniform(0.2, 1.0))) for g, w in original_widths(layers).items()}
        model = copy.deepcopy(base)
        prune_to_keep(model, L1Norm(), keep, example)
        out[f"random {i}"] = model
    return out


def profile(path: Path, runtime: str, x: np.ndarray, model: TargetLatencyModel) -> dict[str, float]:
    """Time per PyTorch layer inside the whole model (ms), from the runtime's profiler, and ``run_ms``."""
    if runtime == "openvino":
        from edgebench.runtimes.openvino.profile import profile_openvino

        prof = profile_openvino(path, x, model.settings, runs=50)
    else:
        from edgebench.runtimes.onnxruntime.profile import profile_onnxruntime

        prof = profile_onnxruntime(path, x, model.settings.threads, runs=50)
    return {**{row.layer: row.time_ms for row in prof.rows}, "run_ms": prof.run_ms or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet56_cifar", "vgg16_cifar"])
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"], choices=list(TARGETS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--random", type=int, default=1, help="variants with random per-group widths")
    parser.add_argument("--top", type=int, default=5, help="layers listed as carrying the error")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"lscpu: {model_name}; {os.cpu_count()} cores; python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (shared machine)")
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)
    example = torch.from_numpy(x)
    window = MeasureSettings()  # what a run measures with: adaptive, 1 % precision of the p50
    summary = []
    started = time.perf_counter()
    for name in args.models:
        models = variants(name, args.ratios, args.random, example)
        base = models["unpruned"]
        for runtime in args.runtimes:
            target = get_target(TARGETS[runtime])
            clock = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                lm = TargetLatencyModel(target, runtime, Path(tmp))
                print(f"\n{name} on {target.name}/{runtime} ({target.threads} thread): unpruned p50 "
                      f"{lm.unpruned_p50_ms(base, example):.4f} ms (calibration, median of 3)")
                print(f"{'variant':<14} {'predicted ms':>12} {'measured ms':>11} {'error %':>8} {'raw sum ms':>10} "
                      f"{'raw err %':>9} {'per-call err %':>14}")
                errors, raw_errors, per_call_errors = [], [], []
                unpruned_shapes = list(layer_shapes(base, example).values())
                layer_gap: dict[str, list[float]] = defaultdict(list)
                untabled: list[float] = []
                for label, model in models.items():
                    if label == "unpruned":
                        continue
                    prediction = lm.predict(model, base, example)
                    path = Path(tmp) / "variant.onnx"
                    export_fp32_onnx(model.eval(), example, path)
                    measured = onnx_p50_ms(path, runtime, lm.settings, x, window)
                    error = 100 * (prediction.p50_ms / measured - 1)
                    shapes = list(layer_shapes(model, example).values())
                    raw_ms = sum(lm.table.latency(shape) for shape in shapes)
                    raw = 100 * (raw_ms / measured - 1)
                    # the same calibration with each entry's call overhead left in (the estimate before it was taken out)
                    per_call = predict_p50(shapes, unpruned_shapes, lm.table, prediction.unpruned_p50_ms).p50_ms
                    per_call_errors.append(100 * (per_call / measured - 1))
                    errors.append(error)
                    raw_errors.append(raw)
                    print(f"{label:<14} {prediction.p50_ms:>12.4f} {measured:>11.4f} {error:>+8.1f} "
                          f"{raw_ms:>10.4f} {raw:>+9.1f} {per_call_errors[-1]:>+14.1f}")
                    # which layers: each layer's scaled entry vs its time inside the model (profile scaled to p50)
                    times = profile(path, runtime, x, lm)
                    k = measured / times.pop("run_ms") if times.get("run_ms") else 1.0
                    overhead = prediction.call_overhead_ms
                    scale = (prediction.unpruned_p50_ms - overhead) / prediction.unpruned_table_ms
                    in_layers = 0.0
                    for layer, shape in layer_shapes(model, example).items():
                        inside = k * times.get(layer, 0.0)
                        in_layers += inside
                        layer_gap[layer].append(scale * max(lm.table.latency(shape) - overhead, 0.0) - inside)
                    untabled.append(measured - in_layers)
                mape, raw_mape = float(np.mean(np.abs(errors))), float(np.mean(np.abs(raw_errors)))
                per_call_mape = float(np.mean(np.abs(per_call_errors)))
                summary.append((name, runtime, len(errors), mape, raw_mape, per_call_mape, time.perf_counter() - clock))
                print(f"MAPE {mape:.1f} % over {len(errors)} variants (raw table sum: {raw_mape:.1f} %); "
                      f"{lm.table.measured} table entries measured")
                ranked = sorted(layer_gap.items(), key=lambda kv: -float(np.mean(np.abs(kv[1]))))[: args.top]
                print(f"layers carrying the error (scaled table entry - time inside the model, ms, mean over "
                      f"variants); time outside conv/linear layers: {np.mean(untabled):.4f} ms per inference")
                for layer, gaps in ranked:
                    print(f"  {layer:<28} {np.mean(gaps):+.4f}  (|mean| {np.mean(np.abs(gaps)):.4f})")
    print(f"\n{'model':<16} {'runtime':<12} {'variants':>8} {'MAPE %':>7} {'raw MAPE %':>10} {'per-call MAPE %':>15} "
          f"{'seconds':>8}")
    for name, runtime, n, mape, raw_mape, per_call_mape, seconds in summary:
        print(f"{name:<16} {runtime:<12} {n:>8} {mape:>7.1f} {raw_mape:>10.1f} {per_call_mape:>15.1f} {seconds:>8.0f}")
    print(f"total {time.perf_counter() - started:.0f} s; load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
