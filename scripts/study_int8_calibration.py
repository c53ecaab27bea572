"""Why ORT int8 artifacts show more output error than LiteRT int8 on the same weights (issue 12, item 4).

Trains (or reuses from the cache) the default experiment's fp32 variants (digits_cnn baseline + 9 pruned),
quantizes each to ONNX QDQ int8 under several settings (calibrator, activation symmetry/sign, per-channel
weights, reduce_range) and to LiteRT int8 (ai-edge-quantizer, min-max) as the reference, runs every artifact on the test split
and prints max |logit - fp32 logit| (first 16 test images, as the pipeline stores it; and over the whole
test split) and accuracy. Then, for the baseline, quantizes one layer at a time to show which layers
carry the error.

    python scripts/study_int8_calibration.py [--workdir runs/int8-study] [--no-litert]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from edgebench.config import load_experiment
from edgebench.data import load_dataset
from edgebench.pipeline import ModelCache, build_models
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.variants import QuantSpec

BEFORE = {"reduce_range": False, "float_logits": False}  # edgebench's int8 ONNX before this study
#: name -> quantize_qdq keywords (defaults: minmax, per-channel s8 weights in 7 bits, u8 asymmetric, float logits)
SETTINGS: dict[str, dict] = {
    "before: minmax, 8-bit w, u8 logits": {"calibrator": "minmax", **BEFORE},
    "before + float logits": {"calibrator": "minmax", "reduce_range": False},
    "before + 7-bit w (reduce_range)": {"calibrator": "minmax", "float_logits": False},
    "minmax (both fixes)": {"calibrator": "minmax"},
    "entropy (both fixes)": {"calibrator": "entropy"},
    "percentile (both fixes)": {"calibrator": "percentile"},
    "minmax, per-tensor w": {"calibrator": "minmax", "per_channel": False},
    "minmax, s8 symmetric act": {"calibrator": "minmax", "signed_activations": True, "symmetric_activations": True},
}
REFERENCE_SAMPLES = 16  # the pipeline's max_abs_diff is taken on the first 16 test images


def run_all(session, x: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run(x[i : i + 1]) for i in range(len(x))])


def errors(logits: np.ndarray, ref: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    diff = np.abs(logits.astype(np.float64) - ref)
    return float(diff[:REFERENCE_SAMPLES].max()), float(diff.max()), float((logits.argmax(1) == y).mean())


def ort_int8(fp32: Path, out: Path, calib: np.ndarray, x: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the QDQ model from ORT's integer kernels, and from ORT with graph optimisations off (the
    Q/DQ pairs then run as float arithmetic: the quantization error alone, without the kernels' own)."""
    import onnxruntime as ort

    quantize_qdq(fp32, out, calib, **kwargs)
    kernels = run_all(get_backend("onnxruntime").load(out, BackendSettings(threads=1)), x)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    name = plain.get_inputs()[0].name
    simulated = np.concatenate([plain.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])
    return kernels, simulated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/int8-study"))
    parser.add_argument("--no-litert", action="store_true", help="skip the LiteRT int8 reference")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    exp = load_experiment(None)
    splits = load_dataset(exp.dataset.name, **exp.dataset.kwargs)
    built = build_models(exp, splits, ModelCache(args.workdir))
    calib = splits.x_train[: exp.quantization.calibration_samples].astype(np.float32)
    x, y = splits.x_test.astype(np.float32), splits.y_test
    litert = not args.no_litert and importlib.util.find_spec("litert_torch") is not None

    names = list(SETTINGS) + (["LiteRT int8 (min-max, s8 asym)"] if litert else [])
    table: dict[str, list[tuple[float, float, float]]] = {n: [] for n in names}
    float_qdq: dict[str, list[float]] = {n: [] for n in SETTINGS}
    fp32_acc: list[float] = []
    print(f"{len(built)} fp32 variants of the default experiment; calibration {len(calib)} train images; "
          f"test {len(x)} images; max|diff| on the first {REFERENCE_SAMPLES} and on all")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for vid, (spec, b) in built.items():
            model = b.model.eval()
            with torch.inference_mode():
                ref = model(torch.from_numpy(x)).numpy().astype(np.float64)
            fp32_acc.append(float((ref.argmax(1) == y).mean()))
            fp32 = tmp / f"{vid}.onnx"
            export_fp32_onnx(model, torch.from_numpy(calib[:1]), fp32)
            row = [f"{spec.label:<32}"]
            for name, kwargs in SETTINGS.items():
                kernels, simulated = ort_int8(fp32, tmp / f"{vid}-q.onnx", calib, x, **kwargs)
                table[name].append(errors(kernels, ref, y))
                float_qdq[name].append(errors(simulated, ref, y)[0])
                row.append(f"{table[name][-1][0]:.2f}")
            if litert:
                path = get_exporter("tflite").export(model, QuantSpec(precision="int8", calibration_samples=len(calib)),
                                                     calib, tmp / f"{vid}.tflite")
                table[names[-1]].append(errors(run_all(get_backend("litert").load(path, BackendSettings()), x), ref, y))
                row.append(f"{table[names[-1]][-1][0]:.2f}")
            print("  ".join(row), flush=True)

        print(f"\nfp32 accuracy: mean {np.mean(fp32_acc):.4f} over {len(fp32_acc)} variants")
        print("columns: max|diff| on 16 images, range over variants and mean; same with the Q/DQ pairs run as float "
              "(ORT, optimisations off); max|diff| on all test images (mean); accuracy mean and min")
        print(f"{'setting':<38} {'max|diff| 16 (range)':>22} {'mean':>6} {'float-QDQ mean':>14} {'all mean':>9} "
              f"{'acc mean':>9} {'acc min':>8}")
        for name in names:
            a = np.array(table[name])
            sim = f"{np.mean(float_qdq[name]):>14.3f}" if name in float_qdq else f"{'-':>14}"
            print(f"{name:<38} {a[:, 0].min():>10.3f}-{a[:, 0].max():<10.3f} {a[:, 0].mean():>6.3f} {sim} "
                  f"{a[:, 1].mean():>9.3f} {a[:, 2].mean():>9.4f} {a[:, 2].min():>8.4f}")

        base_spec, base = next(iter(built.values()))
        fp32 = tmp / "base.onnx"
        export_fp32_onnx(base.model.eval(), torch.from_numpy(calib[:1]), fp32)
        with torch.inference_mode():
            ref = base.model(torch.from_numpy(x)).numpy().astype(np.float64)
        layers = [n for n in onnx.load(str(fp32)).graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
        print(f"\n{base_spec.label}: one layer quantized at a time, minmax; max|diff| on all test images, "
              "ORT integer kernels / Q/DQ run as float")
        print(f"{'node':<22} {'weight':<16} {'before':>15} {'+ float logits':>15} {'+ 7-bit w':>15} {'both':>15}")
        for node in layers:
            cells = []
            for kwargs in (BEFORE, {"reduce_range": False}, {"float_logits": False}, {}):
                kernels, simulated = ort_int8(fp32, tmp / "one.onnx", calib, x, calibrator="minmax",
                                              nodes_to_quantize=[node.name], **kwargs)
                cells.append(f"{errors(kernels, ref, y)[1]:.3f}/{errors(simulated, ref, y)[1]:.3f}")
            print(f"{node.name:<22} {node.input[1]:<16} " + " ".join(f"{c:>15}" for c in cells))


if __name__ == "__main__":
    main()
