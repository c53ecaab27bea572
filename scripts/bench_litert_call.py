"""What a LiteRT measurement times: ``Session.run`` (Python layout, int8 quantization, output details and
dequantization around the interpreter) against ``Session.timed_call`` (set_tensor, invoke, get_tensor: what the
harness times), per .tflite file, on one image of the given test data.

    python scripts/bench_litert_call.py FILE.tflite [FILE.tflite ...] --data test.npz [--calls 20000]

Prints the median of ``--calls`` single calls of each, in microseconds, interleaved in blocks so a change of the
machine's speed moves both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np

from edgebench.runtimes.base import BackendSettings, get_backend


def _median_us(fn, calls: int) -> float:
    clock = time.perf_counter_ns
    samples = np.empty(calls, dtype=np.int64)
    for i in range(calls):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    return float(np.median(samples)) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, required=True, help="an .npz with x (NCHW float32)")
    parser.add_argument("--calls", type=int, default=20000, help="calls per block")
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    batch = np.ascontiguousarray(np.load(args.data)["x"][:1], dtype=np.float32)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}; median of {args.blocks} blocks of {args.calls} calls, microseconds")
    print(f"{'artifact':<28} {'run()':>9} {'timed_call':>11} {'ratio':>6}")
    backend = get_backend("litert")
    for artifact in args.artifacts:
        session = backend.load(artifact, BackendSettings(threads=1))
        timed, run = session.timed_call(batch), partial(session.run, batch)
        runs, calls = [], []
        for _ in range(args.blocks):
            runs.append(_median_us(run, args.calls))
            calls.append(_median_us(timed, args.calls))
        run_us, call_us = float(np.median(runs)), float(np.median(calls))
        print(f"{artifact.name:<28} {run_us:9.2f} {call_us:11.2f} {run_us / call_us:6.2f}")
        session.close()


if __name__ == "__main__":
    main()
