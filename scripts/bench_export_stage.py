"""Where the export stage's time goes, per exporter, for the default run's model (digits CNN, one thread).

Each export of the default run's formats (PyTorch, ONNX fp32 and int8, LiteRT fp32 and int8, hls4ml fixed
point with its g++ C simulation) runs ``--repeats`` times in this process, an int8 export from the fp32 file
written before it where the exporter derives from it (as in a sweep); the script prints wall seconds
and CPU seconds (this process and its children, so hls4ml's g++ counts) per export (ONNX fp32 also as torch.onnx
does it alone, with its registry built per export): on a shared machine the
CPU seconds are the figure to compare, wall seconds grow with the load. For hls4ml it also splits conversion
and compile and says which compile mode built the C simulation.

    python scripts/bench_export_stage.py [--repeats 2] [--formats torch,onnx,tflite,hls4ml]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the sweep's export workers

import numpy as np
import torch

from edgebench.data import load_dataset
from edgebench.models import create_model
from edgebench.runtimes.base import get_exporter
from edgebench.variants import QuantSpec

CASES = {  # format -> precisions the default run exports in it
    "torch": ("fp32",),
    "onnx": ("fp32", "int8"),
    "tflite": ("fp32", "int8"),
    "hls4ml": ("fixed",),
}


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def quant_for(precision: str) -> QuantSpec:
    """The default experiment's quantization settings for ``precision``."""
    if precision == "int8":
        return QuantSpec(precision="int8", calibration_samples=256, calibrator="minmax")
    if precision == "fixed":
        return QuantSpec(precision="fixed", fixed_point="ap_fixed<16,6>", reuse_factor=1)
    return QuantSpec(precision=precision)


def registry_per_export(model: torch.nn.Module, example: np.ndarray, repeats: int, tmp: Path) -> None:
    """ONNX fp32 as torch.onnx does it alone, its torchlib registry built for every export (edgebench builds
    one per process: ``torchlib_registry``), in the same process for the ratio."""
    from torch.onnx._internal.exporter import _registration

    import edgebench.runtimes.onnxruntime.export as onnx_export

    shared = _registration.ONNXRegistry.from_torchlib
    if not hasattr(shared, "unshared"):
        print("onnx     fp32      registry not shared in this torch: nothing to compare")
        return
    _registration.ONNXRegistry.from_torchlib = classmethod(shared.unshared.__func__)
    onnx_export.share_torchlib_registry = lambda: False
    walls, cpus = [], []
    for i in range(repeats):
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        onnx_export.export_fp32_onnx(model, torch.from_numpy(example), tmp / f"per-export-{i}.onnx")
        walls.append(time.perf_counter() - wall0)
        cpus.append(cpu_seconds() - cpu0)
    print(f"{'onnx':<8} {'fp32':<9} {np.median(walls):>8.2f} {np.median(cpus):>8.2f}  torchlib registry built per "
          "export (torch.onnx alone)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--formats", default=",".join(CASES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = create_model("digits_cnn", num_classes=10, in_channels=1).eval()
    calibration = load_dataset("digits", seed=0).x_train[:256].astype(np.float32)
    model_name = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in model_name.splitlines() if line.startswith("Model name")), "?")
    print(f"CPU: {cpu}; load average {os.getloadavg()[0]:.2f} (1 min) at start; {args.repeats} export(s) each")
    print(f"{'format':<8} {'precision':<9} {'wall s':>8} {'CPU s':>8}  notes")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats.split(","):
            exporter = get_exporter(fmt)
            if reason := exporter.available():
                print(f"{fmt:<8} not run: {reason}")
                continue
            for precision in CASES[fmt]:
                walls, cpus, notes = [], [], ""
                for i in range(args.repeats):
                    out = Path(tmp) / f"{fmt}-{precision}-{i}{exporter.suffix}"
                    # as the sweep does it: an exporter that derives from its fp32 file gets the one written above
                    fp32 = Path(tmp) / f"{fmt}-fp32-{i}{exporter.suffix}"
                    derived = {"fp32_source": fp32} if exporter.derives_from_fp32 and precision != "fp32" else {}
                    wall0, cpu0 = time.perf_counter(), cpu_seconds()
                    exporter.export(model, quant_for(precision), calibration, out, **derived)
                    walls.append(time.perf_counter() - wall0)
                    cpus.append(cpu_seconds() - cpu0)
                    if fmt == "hls4ml":
                        meta = json.loads((out / "edgebench.json").read_text())
                        notes = (f"convert {meta['convert_s']:.1f} s, compile {meta['compile_s']:.1f} s wall "
                                 f"(g++ {meta.get('compile_flags', 'by hls4ml build_lib.sh')})")
                print(f"{fmt:<8} {precision:<9} {np.median(walls):>8.2f} {np.median(cpus):>8.2f}  {notes}")
        if "onnx" in args.formats.split(","):
            registry_per_export(model, calibration[:1], args.repeats, Path(tmp))
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
