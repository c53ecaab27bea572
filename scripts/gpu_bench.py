"""VGG-16 at CIFAR shape on an NVIDIA GPU: p50 by edgebench's harness vs by CUDA events, per runtime.

Runs by ``scripts/gpu_check.sh`` (which installs a CUDA torch, onnxruntime-gpu, TensorRT and nvidia-ml-py).
Random weights (speed does not depend on them), batch 1. For each of torch CUDA fp32/fp16, ONNX Runtime's
CUDA execution provider fp32, and TensorRT fp16 (from the fp32 ONNX) and int8 (from the Q/DQ int8 ONNX), it
prints the harness's p50 (host clock around ``run`` + ``sync``: copies in and out included, what a
deployment sees per request) and the p50 of CUDA events recorded on the stream the work runs on around the
same call (the GPU's view of the same interval). Their difference is what host-side timing adds.

    python scripts/gpu_bench.py [--runs 300] [--out DIR]
"""

from __future__ import annotations

import argparse
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


def event_p50_ms(call: Callable[[], object], stream: torch.cuda.Stream, runs: int) -> float:
    """p50 of CUDA-event intervals recorded on ``stream`` around ``call()`` (each waited for before the next)."""
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        call()
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(np.median(times))


def harness_p50(session: Session, x: np.ndarray) -> tuple[float, str]:
    """The harness's p50 and its 95 % interval as text."""
    timing = time_session(session, x, TIMING)
    p50 = float(np.median(timing.samples_ns)) / 1e6
    low, high = latency_intervals(timing.samples_ns).get("p50", (float("nan"), float("nan")))
    return p50, f"[{low:.4f}, {high:.4f}]"


def ort_event_p50(artifact: Path, x: np.ndarray, runs: int) -> float:
    """ORT's CUDA provider on torch's current stream (``user_compute_stream``), so CUDA events bracket its kernels."""
    import onnxruntime as ort

    stream = torch.cuda.current_stream()
    options = {"device_id": 0, "user_compute_stream": str(stream.cuda_stream), "has_user_compute_stream": "1"}
    session = ort.InferenceSession(str(artifact), providers=[("CUDAExecutionProvider", options)])
    name = session.get_inputs()[0].name
    for _ in range(TIMING.warmup_iters):
        session.run(None, {name: x})
    return event_p50_ms(lambda: session.run(None, {name: x}), stream, runs)


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
    print(f"{'runtime':<22} {'harness p50 ms':>15} {'95% interval':>20} {'CUDA events p50 ms':>19} {'host adds':>10}")
    for label, backend, artifact, precision in cases:
        reason = get_backend(backend).available()
        if reason:
            print(f"{label:<22} not run: {reason}")
            continue
        started = time.perf_counter()
        session = get_backend(backend).load(artifact, BackendSettings(device="cuda:0", precision=precision))
        p50, interval = harness_p50(session, x)
        if backend == "onnxruntime_cuda":
            events = ort_event_p50(artifact, x, args.runs)
        else:  # torch and TensorRT sessions enqueue on torch's current stream
            events = event_p50_ms(lambda s=session: s.run(x), torch.cuda.current_stream(), args.runs)
        session.close()
        print(f"{label:<22} {p50:>15.4f} {interval:>20} {events:>19.4f} {p50 / events - 1:>9.1%}"
              f"   ({time.perf_counter() - started:.0f} s incl. load/build)")


if __name__ == "__main__":
    main()
