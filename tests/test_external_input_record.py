"""An artifact edgebench exported carries the normalisation its model was trained with (``edgebench.input``);
listed in another experiment's ``artifacts:`` with other preprocessing, it was fed that experiment's images and its
accuracy stored at chance level as "ok". Now refused before any work, naming both normalisations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgebench.config import load_experiment
from edgebench.errors import ConfigError
from edgebench.pipeline import run_experiment


def _tiny_onnx(path: Path, record: dict | None) -> Path:
    """A 1x8x8 -> 10 scores ONNX (Flatten, Gemm) with ``record`` as its ``edgebench.input`` metadata, written with
    onnx's own API (as an edgebench export leaves it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(10, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["pixels"], ["flat"]), helper.make_node("Gemm", ["flat", "w", "b"], ["scores"])],
        "tiny", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 10])], [weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if record is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "edgebench.input", json.dumps(record)
    onnx.save(model, str(path))
    return path


def _experiment(root: Path, normalize: dict | None) -> Path:
    data = {"name": "own-input", "model": {"name": "digits_cnn"}, "dataset": {"name": "digits"},
            "training": {"epochs": 1}, "pruning": {"criteria": []}, "quantization": {"precisions": ["fp32"]},
            "targets": ["local-cpu"], "artifacts": [{"path": "made.onnx", "label": "made", "precision": "fp32"}],
            "run": {"workdir": str(root / "runs")}, "report": {"dir": str(root / "report")},
            "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None}}
    if normalize is not None:
        data["dataset"]["preprocess"] = {"normalize": normalize}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _record(mean: list[float], std: list[float]) -> dict:
    return {"layout": "NCHW", "shape": [1, 8, 8], "classes": 10,
            "normalize": {"mean": mean, "std": std, "from": "declared"}}


def test_an_artifact_made_for_other_normalisation_is_refused_before_any_work(tmp_path: Path) -> None:
    _tiny_onnx(tmp_path / "made.onnx", _record([0.5], [0.25]))
    exp = load_experiment(_experiment(tmp_path, {"mean": [0.2], "std": [0.5]}))
    message = (r"made.onnx: its input record \(edgebench.input, written by the edgebench export that made it\) says it "
               r"takes images normalised with mean \[0.5\] and std \[0.25\], and this experiment feeds mean \[0.2\] "
               r"and std \[0.5\] \(dataset.preprocess.normalize\): its accuracy would be read at chance; set "
               r"dataset.preprocess.normalize to the file's")
    with pytest.raises(ConfigError, match=message):
        run_experiment(exp, render=False)
    assert not (tmp_path / "runs" / "artifacts").exists()  # refused before anything was imported or trained


def test_an_artifact_recording_the_experiments_normalisation_or_none_is_measured(tmp_path: Path) -> None:
    """The same normalisation within 2 % (the training split's statistics of another split draw differ by less),
    and a file without a record (another tool's), pass the check and are measured."""
    for record in (_record([0.505], [0.2475]), None):
        _tiny_onnx(tmp_path / "made.onnx", record)
        outcome = run_experiment(load_experiment(_experiment(tmp_path, {"mean": [0.5], "std": [0.25]})), render=False)
        assert not outcome.failed and outcome.measured == 3, outcome  # the baseline on torch and ORT, the file on ORT


def test_a_tflite_files_record_is_read_from_its_metadata_buffer(tmp_path: Path) -> None:
    """The LiteRT export writes the record into a metadata buffer of the flatbuffer: read from there."""
    litert_torch = pytest.importorskip("litert_torch", reason="the 'litert' extra is not installed")
    import torch

    from edgebench.data.splits import InputScaling
    from edgebench.external_input import check_declared_scaling
    from edgebench.runtimes.base import get_exporter

    path = tmp_path / "made.tflite"
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    litert_torch.convert(net, (torch.zeros(1, 1, 8, 8),)).export(str(path))
    get_exporter("tflite").describe_input(path, _record([0.5], [0.25]))
    check_declared_scaling(path, "tflite", InputScaling([0.5], [0.25], declared=True))
    with pytest.raises(ConfigError, match=r"made.tflite: its input record .* says it takes images normalised with mean "
                                          r"\[0.5\] and std \[0.25\], and this experiment feeds mean \[0.1\] and std "
                                          r"\[0.3\] \(its training split statistics\)"):
        check_declared_scaling(path, "tflite", InputScaling([0.1], [0.3], declared=False))
