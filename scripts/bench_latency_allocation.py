"""Latency-aware vs uniform filter allocation at the same measured latency budget (issue 12).

ResNet-56 at CIFAR shape (random weights: speed does not depend on them), ONNX Runtime CPU, batch 1,
fixed threads. The budget is a fraction of the unpruned model's measured p50. Uniform: the same L1
ratio in every group, bisected until the measured p50 meets the budget. Latency-aware: per-layer
latency tables measured on ORT (cached), channel multiple read from them, greedy NetAdapt-style
allocation on the target's latency model (the predictor a run stores beside each measurement) corrected by
measuring the pruned model. Prints MACs and parameters kept by each, measured
p50, speedup, MACs reduction and their ratio (realisation), and the latency-aware/uniform MACs ratio.

    python scripts/bench_latency_allocation.py [--budget 0.5] [--threads 1] [--model resnet56_cifar]
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from _ort_timing import ort_p50_ms

from edgebench.models import create_model
from edgebench.models.cost import count_macs, count_params
from edgebench.prune import create_criterion, prune_model
from edgebench.prune.allocation.latency.predict import TargetLatencyModel
from edgebench.prune.allocation.latency.search import allocate_for_latency, model_layers, prune_to_keep
from edgebench.prune.allocation.latency.table import channel_multiple, default_table_path
from edgebench.targets import get_target

SHAPE = (3, 32, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56_cifar")
    parser.add_argument("--budget", type=float, default=0.5, help="fraction of the unpruned p50")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor", type=int, default=4, help="fewest channels a group keeps")
    parser.add_argument("--tables", type=Path, default=None, help="folder of the latency tables (default: the user "
                        "cache; tables measured under another load mislead the estimate)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    calibration = np.random.default_rng(0).standard_normal((8, *SHAPE)).astype(np.float32)
    example = torch.from_numpy(calibration[:1])
    base = create_model(args.model, num_classes=10, in_channels=3).eval()
    base_macs, base_params = count_macs(base, SHAPE), count_params(base)
    print(f"load before: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    base_ms = float(np.median([ort_p50_ms(base, calibration, args.threads) for _ in range(3)]))
    budget = args.budget * base_ms
    print(f"{args.model}: unpruned p50 {base_ms:.3f} ms (median of 3), {base_macs / 1e6:.1f} MMACs, {base_params:,} params; "
          f"budget {budget:.3f} ms ({args.budget:.0%}); ORT {onnxruntime.__version__}, {args.threads} thread(s)")

    def pruned_uniform(ratio: float) -> torch.nn.Module:
        model = copy.deepcopy(base)
        prune_model(model, create_criterion("l1"), ratio, example)
        return model

    t0 = time.perf_counter()
    lo, hi, uniform = 0.0, 0.95, None
    for _ in range(6):
        mid = (lo + hi) / 2
        model = pruned_uniform(mid)
        if ort_p50_ms(model, calibration, args.threads) <= budget:
            hi, uniform = mid, model
        else:
            lo = mid
    uniform = uniform if uniform is not None else pruned_uniform(hi)
    print(f"uniform search: ratio {hi:.3f} in {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    layers = model_layers(base, example)
    target = get_target("local-cpu").model_copy(update={"name": f"local-{args.threads}t", "threads": args.threads})
    latency_model = TargetLatencyModel(target, "onnxruntime",
                                       args.tables or default_table_path(target.name, "onnxruntime").parent)
    table = latency_model.table
    # the widest conv shows the runtime's channel blocking best (narrow layers leave few widths to compare)
    widest = max((layer for layer in layers if layer.shape.op == "Conv"), key=lambda la: (la.shape.c_out, la.shape.macs))
    step = channel_multiple(table, widest.shape, span=min(32, widest.shape.c_out))
    print(f"channel multiple the table shows on {widest.name} ({widest.shape.c_in}->{widest.shape.c_out}): {step}")

    def measure(keep: dict[str, int]) -> float:
        model = copy.deepcopy(base)
        prune_to_keep(model, create_criterion("l1"), keep, example)
        return ort_p50_ms(model, calibration, args.threads)

    # the estimate is scaled to the whole model measured now, next to the table's entries: on a shared
    # machine a p50 from minutes ago may have run under another load
    calibration_ms = ort_p50_ms(base, calibration, args.threads)
    estimate = latency_model.estimator([layer.shape for layer in layers], calibration_ms)
    allocation = allocate_for_latency(layers, estimate, budget, step=step, floor=args.floor, measure=measure, rounds=5)
    latency_model.save()
    aware = copy.deepcopy(base)
    prune_to_keep(aware, create_criterion("l1"), allocation.keep, example)
    print(f"latency-aware search: {latency_model.measured} table entries measured, {len(allocation.rounds)} rounds "
          f"{allocation.rounds}, {time.perf_counter() - t0:.0f} s")

    # final figures: the unpruned model and both results measured again, interleaved three times (median)
    models = {"unpruned": base, "uniform": uniform, "latency-aware": aware}
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(3):
        for name, model in models.items():
            samples[name].append(ort_p50_ms(model, calibration, args.threads))
    base_ms = float(np.median(samples.pop("unpruned")))
    results = {name: (models[name], float(np.median(ms))) for name, ms in samples.items()}
    print(f"\nfinal window (median of 3 interleaved p50s): unpruned {base_ms:.3f} ms; budget stays {budget:.3f} ms")
    print(f"\n{'allocation':<14} {'p50 ms':>7} {'<=budget':>8} {'MMACs':>7} {'MACs kept':>9} {'params kept':>11} "
          f"{'speedup':>7} {'MACs x':>6} {'realisation':>11}")
    macs = {}
    for name, (model, ms) in results.items():
        macs[name] = count_macs(model, SHAPE)
        speedup, macs_x = base_ms / ms, base_macs / macs[name]
        print(f"{name:<14} {ms:>7.3f} {('yes' if ms <= budget else 'no'):>8} {macs[name] / 1e6:>7.1f} "
              f"{macs[name] / base_macs:>9.1%} {count_params(model) / base_params:>11.1%} {speedup:>7.2f} "
              f"{macs_x:>6.2f} {speedup / macs_x:>11.2f}")
    print(f"latency-aware keeps {macs['latency-aware'] / macs['uniform']:.2f}x the MACs of uniform; "
          f"kept channels per group: {allocation.keep}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
