"""Figures of the quantization package (issue 20), on digits (accuracy) and ResNet-20 at CIFAR shape (speed).

1. PTQ int8 (ONNX Runtime QDQ, calibrated) vs QAT int8 (QDQ from the trained quantizers): accuracy drop vs fp32.
2. L1 pruning 50 % + QAT int8 in one training run vs prune-then-QAT (the pruned fp32 model, then a QAT phase):
   accuracy of the int8 artifact and training GMACs.
3. 4-bit and 6-bit QAT with power-of-two scales on hls4ml: C-simulation accuracy, agreement with the fake-quantized
   PyTorch model (vectors bit-identical), BOPs and multipliers vs the calibrated ap_fixed<16,6> firmware (counted
   from the hls4ml model, not synthesised).
4. max_drop 0.5 points: layers left in fp32, accuracy, ONNX Runtime and OpenVINO p50 vs full int8 (digits CNN, and
   ResNet-20 on digits upsampled to 3x32x32, where there is compute to time).
5. fp16 on the CPU: ONNX Runtime's fp16 ONNX, OpenVINO's f16 hint on the fp32 ONNX, LiteRT's fp16-weight .tflite
   against fp32: file size, test accuracy of each artifact on its runtime, p50, and what ORT computes in.

Every accuracy is of the exported artifact run by its runtime on the test split. Speed figures say the CPU model
and the load average. Run: ``.venv/bin/python scripts/bench_quantization.py`` (about 10 minutes on a quiet
2-core machine; ``--no-fpga`` skips the g++ builds, ``--no-resnet`` the ResNet-20 part).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from edgebench.data import DatasetSplits, load_dataset
from edgebench.job import MeasureSettings
from edgebench.prune import build_fp32_model
from edgebench.prune.allocation.latency.table import onnx_p50_ms
from edgebench.prune.schedules import FINETUNE_LR_FACTOR
from edgebench.quantization.qat import prepare_qat
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.onnxruntime.export import OnnxExporter, export_fp32_onnx
from edgebench.runtimes.onnxruntime.mixed_precision import onnx_accuracy, search_mixed_precision
from edgebench.train import train
from edgebench.variants import PruneSpec, QatSpec, QuantSpec, TrainSpec, VariantSpec

TIMING = MeasureSettings(warmup_iters=20, min_iters=200, min_time_s=1.0, max_time_s=10.0)
W8A8 = QatSpec()


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    flags = Path("/proc/cpuinfo").read_text()
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_int8") if f" {f}" in flags]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{model} ({', '.join(simd) or 'no AVX2'}), load average {load}"


def int8_onnx(model: torch.nn.Module, quant: QuantSpec, splits: DatasetSplits, out: Path) -> Path:
    """The int8 ONNX artifact edgebench's exporter writes for ``quant`` (calibrated, QAT or mixed)."""
    return OnnxExporter().export(model, quant, splits.x_train[:256], out, validation=(splits.x_val, splits.y_val))


def test_accuracy(path: Path, splits: DatasetSplits) -> float:
    return onnx_accuracy(path, splits.x_test, splits.y_test)


def spec(train: TrainSpec, prune: PruneSpec | None = None, qat: QatSpec | None = None) -> VariantSpec:
    return VariantSpec(model="digits_cnn", dataset="digits", train=train, prune=prune, quant=QuantSpec(qat=qat))


def ptq_vs_qat(splits: DatasetSplits, train: TrainSpec, tmp: Path) -> None:
    fp32 = build_fp32_model(spec(train), splits)
    qat = build_fp32_model(spec(train, qat=W8A8), splits)
    export_fp32_onnx(fp32.model, torch.from_numpy(splits.x_train[:1]), tmp / "fp32.onnx")
    base = test_accuracy(tmp / "fp32.onnx", splits)
    ptq = test_accuracy(int8_onnx(fp32.model, QuantSpec(precision="int8", calibrator="minmax"), splits, tmp / "p.onnx"),
                        splits)
    trained = test_accuracy(int8_onnx(qat.model, QuantSpec(precision="int8", qat=W8A8), splits, tmp / "q.onnx"), splits)
    print("\n1. digits_cnn, int8 on ONNX Runtime (test split, 360 images)")
    print(f"   fp32 {base:.4f} | PTQ int8 (minmax) {ptq:.4f} (drop {100 * (base - ptq):+.2f} pt) | "
          f"QAT int8 (w8a8, one run) {trained:.4f} (drop {100 * (base - trained):+.2f} pt)")


def joined_vs_sequential(splits: DatasetSplits, train_spec: TrainSpec, qat_epochs: int, tmp: Path) -> None:
    prune = PruneSpec(criterion="l1", ratio=0.5, prune_epochs=(2, 4, 6))
    joined = build_fp32_model(spec(train_spec, prune, W8A8), splits)
    pruned = build_fp32_model(spec(train_spec, prune), splits)
    model = prepare_qat(copy.deepcopy(pruned.model), W8A8)
    finetune = train_spec.model_copy(update={"lr": train_spec.lr * FINETUNE_LR_FACTOR})
    qat_phase = train(model, splits, finetune, epochs=qat_epochs)
    quant = QuantSpec(precision="int8", qat=W8A8)
    acc_joined = test_accuracy(int8_onnx(joined.model, quant, splits, tmp / "j.onnx"), splits)
    acc_seq = test_accuracy(int8_onnx(model, quant, splits, tmp / "s.onnx"), splits)
    seq_macs = pruned.training_macs + qat_phase.training_macs
    print(f"\n2. L1 50 % of filters + QAT int8 (digits_cnn, {train_spec.epochs} epochs, pruned at epochs 2/4/6)")
    print(f"   one run (QAT from epoch 7): accuracy {acc_joined:.4f}, training {joined.training_macs / 1e9:.2f} GMACs")
    print(f"   prune, then {qat_epochs} QAT epochs: accuracy {acc_seq:.4f}, training {seq_macs / 1e9:.2f} GMACs "
          f"({seq_macs / joined.training_macs:.2f}x)")


def fpga(splits: DatasetSplits, train: TrainSpec, tmp: Path) -> None:
    from edgebench.runtimes.hls4ml.backend import Hls4mlBackend
    from edgebench.runtimes.hls4ml.export import Hls4mlExporter

    exporter = Hls4mlExporter()
    reason = exporter.available()
    if reason:
        print(f"\n3. hls4ml: not run ({reason})")
        return
    rows = []
    fp32 = build_fp32_model(spec(train), splits)
    candidates = [("ap_fixed<16,6> (PTQ)", fp32.model, QuantSpec(precision="fixed", fixed_point="ap_fixed<16,6>"))]
    for bits in (6, 4):
        qat = QatSpec(weight_bits=bits, activation_bits=bits, scales="power_of_two")
        built = build_fp32_model(spec(train, qat=qat), splits)
        candidates.append((f"QAT w{bits}a{bits} pow2", built.model, QuantSpec(precision="fixed", qat=qat)))
    x = splits.x_test.astype(np.float32)
    for i, (name, model, quant) in enumerate(candidates):
        artifact = exporter.export(model, quant, splits.x_train[:8], tmp / f"hls{i}")
        out = Hls4mlBackend().load(artifact, BackendSettings()).run(x)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        meta = json.loads((artifact / "edgebench.json").read_text())
        rows.append((name, float((out.argmax(1) == splits.y_test).mean()), float(np.all(out == want, axis=1).mean()),
                     meta["bit_operations"]["bops"], meta["multipliers"]["multipliers"],
                     meta["bit_operations"]["multipliers_by_width"]))
    ref_bops, ref_mult = rows[0][3], rows[0][4]
    print("\n3. hls4ml C simulation (digits_cnn, io_stream, reuse 1; BOPs and multipliers counted, not synthesised)")
    print(f"   {'firmware':22} {'accuracy':>8} {'bit-exact':>9} {'BOPs':>12} {'vs 16-bit':>9} {'multipliers':>11} "
          f"{'vs 16-bit':>9}  by width")
    for name, acc, exact, bops, mult, widths in rows:
        print(f"   {name:22} {acc:8.4f} {exact:9.1%} {bops:12,} {bops / ref_bops:9.3f} {mult:11,} "
              f"{mult / ref_mult:9.3f}  {widths}")


def max_drop(label: str, model: torch.nn.Module, splits: DatasetSplits, tmp: Path, budget: float) -> None:
    full = int8_onnx(model, QuantSpec(precision="int8", calibrator="minmax"), splits, tmp / f"{label}-int8.onnx")
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        export_fp32_onnx(model.eval(), torch.from_numpy(splits.x_train[:1]), fp32)
        mixed_path = tmp / f"{label}-mixed.onnx"
        decision = search_mixed_precision(fp32, mixed_path, splits.x_train[:256], splits.x_val, splits.y_val, budget,
                                          "minmax")
        batch = np.ascontiguousarray(splits.x_test[:1], dtype=np.float32)
        times = {(backend, name): onnx_p50_ms(path, backend, BackendSettings(threads=1), batch, TIMING)
                 for backend in ("onnxruntime", "openvino") for name, path in (("fp32", fp32), ("int8", full),
                                                                               ("mixed", mixed_path))}
        accuracy = {name: test_accuracy(path, splits) for name, path in (("fp32", fp32), ("int8", full),
                                                                         ("mixed", mixed_path))}
    print(f"   {label}: validation fp32 {decision.fp32_accuracy:.4f}, int8 {decision.int8_accuracy:.4f}, mixed "
          f"{decision.accuracy:.4f}; left in fp32: {decision.float_layers or 'none'} "
          f"(of {len(decision.precisions)} layers; ranking by recovered accuracy {decision.recovered or '-'})")
    print(f"      test accuracy fp32 {accuracy['fp32']:.4f} | int8 {accuracy['int8']:.4f} | mixed {accuracy['mixed']:.4f}")
    for backend in ("onnxruntime", "openvino"):
        t = {name: times[(backend, name)] for name in ("fp32", "int8", "mixed")}
        print(f"      {backend:11} p50 ms (1 thread, batch 1): fp32 {t['fp32']:.4f} | int8 {t['int8']:.4f} | mixed "
              f"{t['mixed']:.4f} (mixed/int8 {t['mixed'] / t['int8']:.2f}x)")


def session_accuracy(backend: str, path: Path, settings: BackendSettings,
                     splits: DatasetSplits) -> tuple[float, dict]:
    """Test accuracy of the artifact at ``path`` run by ``backend`` itself, one image at a time (LiteRT's batch), and
    the session's details."""
    session = get_backend(backend).load(path, settings)
    try:
        logits = np.concatenate([session.run(splits.x_test[i : i + 1]) for i in range(len(splits.x_test))])
        details = session.details()
    finally:
        session.close()
    return float((logits.argmax(1) == splits.y_test).mean()), details


def fp16_points(label: str, model: torch.nn.Module, splits: DatasetSplits, tmp: Path) -> None:
    calibration = splits.x_train[:8]
    files = {(fmt, precision): get_exporter(fmt).export(model.eval(), QuantSpec(precision=precision), calibration,
                                                        tmp / f"{label}-{precision}{get_exporter(fmt).suffix}")
             for fmt in ("onnx", "tflite") if get_exporter(fmt).available() is None for precision in ("fp32", "fp16")}
    points = [("onnxruntime", "onnx", "fp32", "fp32"), ("onnxruntime", "onnx", "fp16", "fp16"),
              ("openvino", "onnx", "fp32", "fp32"), ("openvino", "onnx", "fp32", "fp16"),
              ("litert", "tflite", "fp32", "fp32"), ("litert", "tflite", "fp16", "fp16")]
    batch = np.ascontiguousarray(splits.x_test[:1], dtype=np.float32)
    print(f"   {label}: {'runtime':11} {'precision':9} {'file KiB':>8} {'accuracy':>8} {'p50 ms':>8}  note")
    for backend, fmt, file_precision, precision in points:
        path = files.get((fmt, file_precision))
        if path is None or get_backend(backend).available() is not None:
            reason = get_exporter(fmt).available() or get_backend(backend).available()
            print(f"      {backend:11} {precision:9} not run ({reason})")
            continue
        settings = BackendSettings(threads=1, precision=precision)
        accuracy, details = session_accuracy(backend, path, settings, splits)
        p50 = onnx_p50_ms(path, backend, settings, batch, TIMING)
        note = (details.get("fp16") or {}).get("computes") or (
            f"the fp32 ONNX under the f16 hint; conv/fc kernels ran in {details.get('conv_fc_runtime_precisions')}"
            if backend == "openvino" and precision == "fp16" else
            f"{details['fp16_weight_tensors']} fp16 weight tensors, upcast by the CPU kernels"
            if "fp16_weight_tensors" in details else "")
        print(f"      {backend:11} {precision:9} {path.stat().st_size / 1024:8.1f} {accuracy:8.4f} {p50:8.4f}  {note}")


def cifar_shaped(splits: DatasetSplits) -> DatasetSplits:
    """Digits upsampled 4x to 3x32x32: ResNet-20 at CIFAR shape with data that needs no download."""
    def up(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.repeat(np.kron(x, np.ones((1, 1, 4, 4), np.float32)), 3, axis=1))

    return DatasetSplits("digits32", splits.num_classes, (3, 32, 32), up(splits.x_train), splits.y_train,
                         up(splits.x_val), splits.y_val, up(splits.x_test), splits.y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--qat-epochs", type=int, default=4, help="QAT phase of prune-then-QAT")
    parser.add_argument("--max-drop", type=float, default=0.005)
    parser.add_argument("--resnet-epochs", type=int, default=3)
    parser.add_argument("--no-fpga", action="store_true")
    parser.add_argument("--no-resnet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {machine()}")
    splits = load_dataset("digits")
    train_spec = TrainSpec(epochs=args.epochs, batch_size=64, lr=0.05)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ptq_vs_qat(splits, train_spec, tmp)
        joined_vs_sequential(splits, train_spec, args.qat_epochs, tmp)
        if not args.no_fpga:
            fpga(splits, train_spec, tmp)
        print(f"\n4. max_drop {100 * args.max_drop:g} points (validation split), ONNX artifacts timed at 1 thread; "
              f"machine: {machine()}")
        digits_fp32 = build_fp32_model(spec(train_spec), splits).model
        max_drop("digits_cnn", digits_fp32, splits, tmp, args.max_drop)
        if not args.no_resnet:
            big = cifar_shaped(splits)
            resnet = VariantSpec(model="resnet56_cifar", model_kwargs={"depth": 20}, dataset="digits32",
                                 train=TrainSpec(epochs=args.resnet_epochs, batch_size=64, lr=0.05))
            resnet20 = build_fp32_model(resnet, big).model
            max_drop("resnet20 @3x32x32", resnet20, big, tmp, args.max_drop)
        print(f"\n5. fp16 on the CPU (test split, 1 thread, batch 1); machine: {machine()}")
        fp16_points("digits_cnn", digits_fp32, splits, tmp)
        if not args.no_resnet:
            fp16_points("resnet20 @3x32x32", resnet20, big, tmp)


if __name__ == "__main__":
    main()
