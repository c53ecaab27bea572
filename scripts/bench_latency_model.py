"""How well the latency tables predict a pruned variant's p50 (issue 22, part 4): MAPE per model and runtime.

ResNet-56 and VGG-16 at CIFAR shape (random weights: speed does not depend on them), batch 1, the threads and
options of the shipped targets (local-cpu for ONNX Runtime, local-openvino for OpenVINO). Per model: the
unpruned model and ``--ratios`` uniform L1 variants plus ``--random`` variants with random per-group widths
(non-uniform, as the latency and global allocations make). Each variant's p50 is predicted exactly as a run
with ``measurement.predict_latency`` does (``TargetLatencyModel``: the unpruned model's measured p50 scaled by
the ratio of the table sums, the call counted once per inference; OpenVINO's entries the layers' own times, ONNX
Runtime's one-layer p50s less the call and their edges; the cache term added for layers whose weights come from a
slower cache inside the model than alone), then measured with
the harness's default adaptive window (1 % precision) in ``--rounds`` fresh sessions, interleaved over the
variants and the unpruned model: the measured p50 is their median, and their
spread (largest over smallest, less 1) is how far apart the same artifact measures here. A host whose speed
drifts between the calibration and the rounds moves every error alike, so each variant is also put at the
calibration's speed: the calibration p50 times the median over rounds of the variant's p50 over the unpruned
model's in the same round ("@cal"). Prints per variant predicted vs measured, the MAPE per model/runtime (and
that of the same calibration without the cache term, and of the raw, uncalibrated table sum), and which layers
carry the error: each layer's table entry (scaled like the prediction)
against its time inside the whole model (the runtime's per-layer profile, scaled to the measured p50), averaged
over the variants, beside the time the tables do not model (residual adds, pooling, the runtime between
operators).

    python scripts/bench_latency_model.py [--models resnet56_cifar vgg16_cifar] [--runtimes onnxruntime openvino]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import logging
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgebench.job import MeasureSettings
from edgebench.models import create_model
from edgebench.prune import create_criterion, prune_model
from edgebench.prune.allocation.latency.cache import weights_mib
from edgebench.prune.allocation.latency.predict import TargetLatencyModel
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


def measure_rounds(paths: dict[str, Path], runtime: str, model: TargetLatencyModel, x: np.ndarray,
                   rounds: int) -> dict[str, list[float]]:
    """Each ONNX file's p50 in ``rounds`` fresh sessions, the files interleaved in every round."""
    window = MeasureSettings()  # what a run measures with: adaptive, 1 % precision of the p50
    measured: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for label, path in paths.items():
            measured[label].append(onnx_p50_ms(path, runtime, model.settings, x, window))
    return measured


def evaluate(name: str, runtime: str, args: argparse.Namespace) -> tuple:
    """Predict and measure the variants of ``name`` on ``runtime``, print them, and return the summary row."""
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)
    example = torch.from_numpy(x)
    models = variants(name, args.ratios, args.random, example)
    base = models["unpruned"]
    target = get_target(TARGETS[runtime])
    clock = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        lm = TargetLatencyModel(target, runtime, Path(tmp))
        calibration = lm.unpruned_p50_ms(base, example)
        predictions, paths = {}, {}
        for label, model in models.items():
            paths[label] = Path(tmp) / f"{label.replace(' ', '-')}.onnx"
            export_fp32_onnx(model.eval(), example, paths[label])
            if label != "unpruned":
                predictions[label] = lm.predict(model, base, example)
        measured = measure_rounds(paths, runtime, lm, x, args.rounds)
        unpruned = measured.pop("unpruned")
        first = next(iter(predictions.values()))
        unpruned_shapes = list(layer_shapes(base, example).values())
        print(f"\n{name} on {target.name}/{runtime} ({target.threads} thread): unpruned p50 {calibration:.4f} ms "
              f"(calibration, median of 3), {np.median(unpruned):.4f} ms in the rounds (spread "
              f"{100 * (max(unpruned) / min(unpruned) - 1):.0f} %); cache term "
              f"{first.unpruned_cache_ms:.4f} ms at its {weights_mib(unpruned_shapes):.1f} MiB")
        print(f"{'variant':<14} {'predicted ms':>12} {'measured ms':>11} {'spread %':>8} {'error %':>8} "
              f"{'@cal ms':>8} {'error @cal %':>12} {'no-cache @cal %':>15} {'no-edges @cal %':>15} "
              f"{'raw err %':>9} {'MiB':>5} {'cache ms':>8} {'edges ms':>8}")
        errors, raw_errors, plain_errors, cal_errors, plain_cal_errors, edgeless_cal_errors = [], [], [], [], [], []
        entry_call, cache, boundary = lm.entry_call_ms, lm.cache(), lm.boundary()
        layer_gap: dict[str, list[float]] = defaultdict(list)
        untabled: list[float] = []
        for label, prediction in predictions.items():
            p50 = float(np.median(measured[label]))
            spread = 100 * (max(measured[label]) / min(measured[label]) - 1)
            at_cal = calibration * float(np.median([v / u for v, u in zip(measured[label], unpruned, strict=True)]))
            shapes = layer_shapes(models[label], example)
            raw_ms = sum(lm.table.latency(shape) for shape in shapes.values())
            # the same calibration without the cache term, and without the one-layer models' edges taken off
            plain = lm.predict_shapes(list(shapes.values()), unpruned_shapes, calibration, cache=False).p50_ms
            edgeless = lm.predict_shapes(list(shapes.values()), unpruned_shapes, calibration, edges=False).p50_ms
            errors.append(100 * (prediction.p50_ms / p50 - 1))
            raw_errors.append(100 * (raw_ms / p50 - 1))
            plain_errors.append(100 * (plain / p50 - 1))
            cal_errors.append(100 * (prediction.p50_ms / at_cal - 1))
            plain_cal_errors.append(100 * (plain / at_cal - 1))
            edgeless_cal_errors.append(100 * (edgeless / at_cal - 1))
            print(f"{label:<14} {prediction.p50_ms:>12.4f} {p50:>11.4f} {spread:>8.1f} {errors[-1]:>+8.1f} "
                  f"{at_cal:>8.4f} {cal_errors[-1]:>+12.1f} {plain_cal_errors[-1]:>+15.1f} "
                  f"{edgeless_cal_errors[-1]:>+15.1f} {raw_errors[-1]:>+9.1f} {prediction.weights_mib:>5.1f} "
                  f"{prediction.cache_ms:>8.4f} {prediction.boundary_ms:>8.4f}")
            # which layers: each layer's scaled entry vs its time inside the model (profile scaled to p50)
            times = profile(paths[label], runtime, x, lm)
            k = p50 / times.pop("run_ms") if times.get("run_ms") else 1.0
            scale = (prediction.unpruned_p50_ms - prediction.call_overhead_ms) / prediction.unpruned_table_ms
            in_layers, model_mib = 0.0, weights_mib(shapes.values())
            for layer, shape in shapes.items():
                inside = k * times.get(layer, 0.0)
                in_layers += inside
                edges = boundary.layer_ms(shape) if boundary is not None else 0.0
                entry = max(lm.table.latency(shape) - entry_call - edges, 0.0)
                entry += cache.layer_ms(shape, model_mib)
                layer_gap[layer].append(scale * entry - inside)
            untabled.append(p50 - in_layers)
        mapes = [float(np.mean(np.abs(e))) for e in (errors, cal_errors, plain_errors, plain_cal_errors,
                                                     edgeless_cal_errors, raw_errors)]
        row = (name, runtime, len(errors), *mapes, time.perf_counter() - clock)
        print(f"MAPE {mapes[0]:.1f} % over {len(errors)} variants, {mapes[1]:.1f} % at the calibration's speed "
              f"(without the cache term {mapes[2]:.1f} / {mapes[3]:.1f} %, without the edges taken off "
              f"{mapes[4]:.1f} % at the calibration's speed, raw table sum {mapes[5]:.1f} %); "
              f"entries: {lm.entries}, {lm.measured} measured")
        ranked = sorted(layer_gap.items(), key=lambda kv: -float(np.mean(np.abs(kv[1]))))[: args.top]
        print(f"layers carrying the error (scaled table entry - time inside the model, ms, mean over "
              f"variants); time outside conv/linear layers: {np.mean(untabled):.4f} ms per inference")
        for layer, gaps in ranked:
            print(f"  {layer:<28} {np.mean(gaps):+.4f}  (|mean| {np.mean(np.abs(gaps)):.4f})")
    sys.stdout.flush()  # the pool ends this process once the row is back
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet56_cifar", "vgg16_cifar"])
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino"], choices=list(TARGETS))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.25, 0.5, 0.75])
    parser.add_argument("--random", type=int, default=1, help="variants with random per-group widths")
    parser.add_argument("--rounds", type=int, default=3, help="fresh sessions per variant, interleaved (median)")
    parser.add_argument("--top", type=int, default=5, help="layers listed as carrying the error")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    print(f"lscpu: {model_name}; {os.cpu_count()} cores; python {platform.python_version()}; "
          f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (shared machine)")
    summary = []
    started = time.perf_counter()
    # each model and runtime in a fresh process: OpenVINO's copying call ran its smallest model in 0.057 ms, not 0.030
    # in a process that had imported onnxruntime (as this script would have, timing ORT first)
    spawn = multiprocessing.get_context("spawn")
    for name in args.models:
        for runtime in args.runtimes:
            with spawn.Pool(1) as pool:
                summary.append(pool.apply(evaluate, (name, runtime, args)))
    print(f"\n{'model':<16} {'runtime':<12} {'variants':>8} {'MAPE %':>7} {'@cal %':>7} {'no-cache %':>10} "
          f"{'no-cache @cal %':>15} {'no-edges @cal %':>15} {'raw %':>7} {'seconds':>8}")
    for name, runtime, n, mape, cal, plain, plain_cal, edgeless_cal, raw, seconds in summary:
        print(f"{name:<16} {runtime:<12} {n:>8} {mape:>7.1f} {cal:>7.1f} {plain:>10.1f} {plain_cal:>15.1f} "
              f"{edgeless_cal:>15.1f} {raw:>7.1f} {seconds:>8.0f}")
    print(f"total {time.perf_counter() - started:.0f} s; load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
