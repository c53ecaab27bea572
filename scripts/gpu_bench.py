"""VGG-16 at CIFAR shape on an NVIDIA GPU: p50 by edgebench's harness vs by CUDA events, per runtime.

Runs by ``scripts/gpu_check.sh`` (which installs a CUDA torch, onnxruntime-gpu, TensorRT and nvidia-ml-py).
Random weights (speed does not depend on them), batch 1. For each of torch CUDA fp32/fp16, ONNX Runtime's
CUDA execution provider fp32, and TensorRT fp16 (from the fp32 ONNX) and int8 (from the Q/DQ int8 ONNX), it
prints the harness's p50 (host clock around ``run`` + ``sync``: copies in and out included, what a
deployment sees per request) in a window before and one after, then times the same calls by both clocks at
once: the host clock around each call and CUDA events recorded on the stream the work runs on around it (the
GPU's view of the same interval). Per call, their difference is what host-side timing adds; timing both on
the same calls keeps a GPU or host whose speed drifts between two windows out of that difference.

    python scripts/gpu_bench.py [--runs 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edgebench.job import MeasureSettings
from edgebench.measure.harness import time_session
from edgebench.measure.stats import latency_intervals
from edgebench.models import create_model
from edgebench.runtimes.base import BackendSettings, Session, get_backend, get_exporter
from edgebench.variants import QuantSpec

SHAPE = (3, 32, 32)
TIMING = MeasureSettings(warmup_iters=50, min_iters=200, min_time_s=0.5, max_time_s=20.0)


def paired_ms(call: Callable[[], object], sync: Callable[[], object], stream: torch.cuda.Stream,
              runs: int) -> tuple[float, float, float]:
    """Medians of the host clock around ``call(); sync()``, of CUDA events on ``stream`` around the same call,
    and of their per-call difference (ms)."""
    host, events = np.empty(runs), np.empty(runs)
    for i in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter_ns()
        start.record(stream)
        call()
        end.record(stream)
        sync()
        host[i] = (time.perf_counter_ns() - t0) / 1e6
        end.synchronize()
        events[i] = start.elapsed_time(end)
    return float(np.median(host)), float(np.median(events)), float(np.median(host - events))


def harness_p50(session: Session, x: np.ndarray) -> tuple[float, str]:
    """The harness's p50 and its 95 % interval as text."""
    timing = time_session(session, x, TIMING)
    p50 = float(np.median(timing.samples_ns)) / 1e6
    low, high = latency_intervals(timing.samples_ns).get("p50", (float("nan"), float("nan")))
    return p50, f"[{low:.4f}, {high:.4f}]"


def ort_on_torch_stream(artifact: Path, x: np.ndarray) -> Callable[[], object]:
    """ORT's CUDA provider on torch's current stream (``user_compute_stream``), so CUDA events bracket its kernels."""
    import onnxruntime as ort

    stream = torch.cuda.current_stream()
    options = {"device_id": 0, "user_compute_stream": str(stream.cuda_stream), "has_user_compute_stream": "1"}
    session = ort.InferenceSession(str(artifact), providers=[("CUDAExecutionProvider", options)])
    name = session.get_inputs()[0].name
    for _ in range(TIMING.warmup_iters):
        session.run(None, {name: x})
    return lambda: session.run(None, {name: x})


def measure_case(backend: str, artifact: Path, precision: str, x: np.ndarray, runs: int, label: str) -> str:
    """One runtime's row: harness p50 before and after, and both clocks on the same calls."""
    started = time.perf_counter()
    session = get_backend(backend).load(artifact, BackendSettings(device="cuda:0", precision=precision))
    try:
        p50, interval = harness_p50(session, x)
        # torch sessions enqueue on torch's current stream, TensorRT on its own; ORT's own session is put on torch's
        stream = getattr(session, "stream", torch.cuda.current_stream())
        call = ort_on_torch_stream(artifact, x) if backend == "onnxruntime_cuda" else lambda: session.run(x)
        host, events, adds = paired_ms(call, session.sync, stream, runs)
        after, _ = harness_p50(session, x)
    finally:
        session.close()
    return (f"{label:<22} {p50:>11.4f} {interval:>20} {after:>8.4f} | {host:>8.4f} {events:>10.4f} {adds:>9.4f} "
            f"{adds / events:>6.1%}   ({time.perf_counter() - started:.0f} s incl. load/build)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="CUDA-event samples per runtime")
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("vgg16_cifar", num_classes=10, in_channels=3).eval()
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((64, *SHAPE)).astype(np.float32)
    x = np.ascontiguousarray(calibration[:1])
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__} (CUDA {torch.version.cuda})")
    out = args.out or Path(tempfile.mkdtemp(prefix="edgebench-gpu-"))
    onnx = get_exporter("onnx")
    fp32 = onnx.export(model, QuantSpec(precision="fp32"), calibration, out / "vgg16-fp32.onnx")
    int8 = onnx.export(model, QuantSpec(precision="int8", calibration_samples=64), calibration, out / "vgg16-int8.onnx")
    torch_file = get_exporter("torch").export(model, QuantSpec(precision="fp32"), calibration, out / "vgg16.pt")

    cases = [  # (label, backend, artifact, precision)
        ("torch CUDA fp32", "torch_cuda", torch_file, "fp32"),
        ("torch CUDA fp16", "torch_cuda", torch_file, "fp16"),
        ("ORT CUDA EP fp32", "onnxruntime_cuda", fp32, "fp32"),
        ("TensorRT fp16", "tensorrt", fp32, "fp16"),
        ("TensorRT int8 (Q/DQ)", "tensorrt", int8, "int8"),
    ]
    print(f"{args.runs} calls timed by both clocks per runtime; ms")
    print(f"{'runtime':<22} {'harness p50':>11} {'95% interval':>20} {'after':>8} | {'host p50':>8} "
          f"{'events p50':>10} {'host adds':>9} {'':>6}")
    failed = 0
    for label, backend, artifact, precision in cases:
        reason = get_backend(backend).available()
        if reason:
            print(f"{label:<22} not run: {reason}")
            continue
        try:
            print(measure_case(backend, artifact, precision, x, args.runs, label))
        except Exception as exc:  # one runtime that fails to load or run must not end the others' rows
            print(f"{label:<22} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            failed += 1
    if failed:
        sys.exit(f"gpu_bench: {failed} runtime(s) failed")


if __name__ == "__main__":
    main()
