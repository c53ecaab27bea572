"""examples/own_model as a team runs it, end to end on tiny data: train.py trains the ResNet-18-style network and
makes ONNX Runtime's int8 artifact, then `edgebench run` fine-tunes the checkpoint while pruning, quantizes and
measures, beside the two artifacts made outside edgebench. Sizes shrink through the experiment file's documented
fields (dataset kwargs, model width, epochs), which train.py reads too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import edgebench

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_model"
pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"images": x})[0].argmax(1) == y).mean())


def test_own_model_example_end_to_end_on_tiny_data(tmp_path):
    folder = tmp_path / "own_model"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("checkpoints", "runs", "reports", "__pycache__"))
    exp = yaml.safe_load((folder / "experiment.yaml").read_text())
    exp["dataset"]["kwargs"] = {"n_train": 96, "n_val": 24, "n_test": 48, "size": 32}
    exp["model"]["kwargs"] = {"width": 4}
    exp["training"]["epochs"] = 2
    exp["pruning"]["ratios"] = [0.5]
    exp["targets"] = ["local-cpu"]  # ONNX Runtime loads both artifacts; the other targets are the same code paths
    exp["measurement"] = {"warmup_iters": 2, "min_iters": 5, "min_time_s": 0.0, "max_time_s": 0.5, "precision": None}
    (folder / "small.yaml").write_text(yaml.safe_dump(exp))

    trained = _run([sys.executable, "train.py", "--epochs", "1", "--experiment", "small.yaml"], folder)
    assert "ONNX Runtime int8" in trained
    _run([str(Path(sys.executable).parent / "edgebench"), "run", "small.yaml"], folder)

    df = edgebench.load(str(folder / "runs" / "own_model" / "results.db")).measurements()
    by_origin = {origin: rows for origin, rows in df.groupby("origin")}
    assert {"external:given-fp32", "external:ort-int8"} <= set(by_origin)
    sys.path.insert(0, str(folder))
    try:
        import shapes
        from train import preprocess
    finally:
        sys.path.remove(str(folder))
    x_test, y_test = shapes.load(**exp["dataset"]["kwargs"])["test"]
    x_test = preprocess(x_test, **exp["dataset"]["preprocess"]["normalize"])
    for label, file in (("given-fp32", "resnet18_fp32.onnx"), ("ort-int8", "resnet18_ort_int8.onnx")):
        rows = by_origin[f"external:{label}"]
        assert set(rows["backend"]) == {"onnxruntime"}  # PyTorch does not load an ONNX file
        # edgebench's accuracy of the artifact on its own preprocessing of the test split: what ORT computes here
        assert abs(rows.iloc[0]["accuracy"] - _ort_accuracy(folder / "checkpoints" / file, x_test, y_test)) <= 1 / 48

    fp32 = df[(df["precision"] == "fp32") & (df["kind"] != "external")]
    baseline, pruned = fp32[fp32["kind"] == "baseline"], fp32[(fp32["kind"] == "structured") & (fp32["ratio"] == 0.5)]
    assert len(baseline) and len(pruned) and set(df[df["kind"] != "external"]["precision"]) == {"fp32", "int8"}
    assert pruned["macs"].max() < baseline["macs"].min()  # filters physically removed while fine-tuning
    assert (fp32["training_macs"] > 0).all()  # fine-tuned from the checkpoint: the compute is counted
    assert (folder / "reports" / "own_model" / "index.html").is_file()
