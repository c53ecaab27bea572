"""Artifacts made outside edgebench, measured as variants: an ONNX model the test exports with torch.onnx and
quantizes with ONNX Runtime's own quantizer, and a TFLite file it converts with litert-torch directly (with an NHWC
input, as other converters write them). Each is measured on the targets whose backends load its format, with the
accuracy the test computes by running the same runtime itself, and stored with its hash and parent."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from user_code import import_file, write_nets

import edgebench
from edgebench.config import load_experiment
from edgebench.data import load_dataset
from edgebench.errors import ConfigError
from edgebench.pipeline import run_experiment
from edgebench.plan import plan_fp32_variants

pytestmark = pytest.mark.slow


class _Images:
    """ONNX Runtime's calibration reader over the training images (the team's own script would write one)."""

    def __init__(self, x: np.ndarray, name: str) -> None:
        self.batches = iter([{name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def _ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predicted = [int(session.run(None, {name: x[i : i + 1]})[0].argmax()) for i in range(len(x))]
    return float((np.array(predicted) == y).mean())


def _tflite_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predicted = []
    for i in range(len(x)):
        interpreter.set_tensor(inp["index"], np.transpose(x[i : i + 1], (0, 2, 3, 1)))
        interpreter.invoke()
        predicted.append(int(interpreter.get_tensor(out["index"]).argmax()))
    return float((np.array(predicted) == y).mean())


class _NHWC(nn.Module):
    """What another converter hands over: the same network taking channels-last images."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


class _Raw(nn.Module):
    """A graph with its preprocessing inside: uint8 pixels in."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255)


class _Probabilities(nn.Module):
    """A deployment export that hands out probabilities (or, as the PyTorch MNIST example, log-probabilities)."""

    def __init__(self, net: nn.Module, log: bool) -> None:
        super().__init__()
        self.net, self.log = net, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.log_softmax if self.log else torch.softmax)(self.net(x), 1)


class _ClassIds(_Raw):
    """A graph that answers class ids, not scores."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).argmax(1)


@pytest.fixture(scope="module")
def made_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("elsewhere")
    nets = import_file(write_nets(root))
    splits = load_dataset("digits")
    model = nets.build_net(width=8)
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        for i in range(0, len(splits.x_train), 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.from_numpy(splits.x_train[i : i + 32])),
                                        torch.from_numpy(splits.y_train[i : i + 32])).backward()
            opt.step()
    model.eval()
    torch.save(model.state_dict(), root / "weights.pt")

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    example = torch.from_numpy(splits.x_train[:1])
    torch.onnx.export(model, (example,), root / "fp32.onnx", dynamo=False, input_names=["pixels"],
                      output_names=["scores"], dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}})
    quantize_static(str(root / "fp32.onnx"), str(root / "ort_int8.onnx"), _Images(splits.x_train[:64], "pixels"),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    import onnx  # what torch.onnx.export writes by default now: the weights in a file beside the graph

    (root / "ext").mkdir()
    onnx.save_model(onnx.load(root / "fp32.onnx"), root / "ext" / "fp32_ext.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="fp32_ext.onnx.data", size_threshold=0)
    nhwc = torch.from_numpy(np.transpose(splits.x_train[:1], (0, 2, 3, 1)).copy())
    torch.onnx.export(_NHWC(model).eval(), (nhwc,), root / "nhwc.onnx", dynamo=False, input_names=["pixels"],
                      dynamic_axes={"pixels": {0: "n"}})  # as tf2onnx writes a Keras model: channels-last input
    for log in (False, True):
        torch.onnx.export(_Probabilities(model, log).eval(), (example,), root / f"softmax_{log}.onnx", dynamo=False,
                          input_names=["pixels"], dynamic_axes={"pixels": {0: "n"}})
    files = {"root": root, "onnx": root / "ort_int8.onnx", "splits": splits, "external_data": root / "ext",
             "nhwc_onnx": root / "nhwc.onnx"}
    try:
        import litert_torch
    except ImportError:
        return files
    litert_torch.convert(_NHWC(model).eval(), (nhwc,)).export(str(root / "team.tflite"))
    return {**files, "tflite": root / "team.tflite"}


def _experiment(root: Path, artifacts: list[dict], targets: list[str]) -> Path:
    data = {"name": "external", "model": {"file": "nets.py", "factory": "build_net", "kwargs": {"width": 8},
                                          "weights": "weights.pt"},
            "training": {"epochs": 0}, "pruning": {"criteria": []}, "quantization": {"precisions": ["fp32"]},
            "targets": targets, "artifacts": artifacts, "run": {"workdir": str(root / "runs")},
            "report": {"dir": str(root / "report")},
            "measurement": {"warmup_iters": 2, "min_iters": 10, "min_time_s": 0.0, "precision": None}}
    path = root / "external.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_artifacts_from_other_tools_measured_beside_edgebench_variants(made_elsewhere):
    root, splits = made_elsewhere["root"], made_elsewhere["splits"]
    artifacts = [{"path": "ort_int8.onnx", "label": "ort-int8", "precision": "int8", "parent": "baseline"},
                 {"path": "ext/fp32_ext.onnx", "label": "ext-data", "precision": "fp32", "parent": "baseline"}]
    targets = ["local-cpu"]
    if "tflite" in made_elsewhere:
        artifacts.append({"path": "team.tflite", "label": "team-tflite", "precision": "fp32", "parent": "baseline"})
        targets.append("local-litert")
    exp = load_experiment(_experiment(root, artifacts, targets))
    outcome = run_experiment(exp)
    assert outcome.failed == []
    df = edgebench.load(outcome.store_url, outcome.run_id).measurements()
    baseline_id = plan_fp32_variants(exp)[0].id

    ort = df[df["origin"] == "external:ort-int8"]
    assert list(zip(ort["target"], ort["backend"])) == [("local-cpu", "onnxruntime")]  # torch cannot load ONNX
    row = ort.iloc[0]
    assert row["label"] == "external:ort-int8/int8" and row["kind"] == "external" and row["precision"] == "int8"
    assert row["parent_id"] == baseline_id
    assert row["accuracy"] == _ort_accuracy(made_elsewhere["onnx"], splits.x_test, splits.y_test)
    assert row["max_abs_diff"] > 1e-3  # int8 against the PyTorch fp32 parent: measurably different
    assert row["size_bytes"] == made_elsewhere["onnx"].stat().st_size
    baseline = df[df["variant_id"] == baseline_id].iloc[0]
    assert row["macs"] == baseline["macs"]  # counted from the int8 graph; PyTorch's hooks counted the parent
    stored = edgebench.load(outcome.store_url, outcome.run_id).stored()
    facts = stored[stored["variant_id"] == row["variant_id"]].iloc[0]["facts"]
    assert facts["sha256"] == hashlib.sha256(made_elsewhere["onnx"].read_bytes()).hexdigest()[:16]
    assert "external:ort-int8/int8" in (root / "report" / "index.html").read_text()  # on the same fronts

    # weights in an external data file (failed at measure time: the cache held the graph alone): measured, and the
    # data file is part of the content hash
    ext = df[df["origin"] == "external:ext-data"].iloc[0]
    data = made_elsewhere["external_data"] / "fp32_ext.onnx.data"
    assert ext["accuracy"] == _ort_accuracy(made_elsewhere["external_data"] / "fp32_ext.onnx", splits.x_test,
                                            splits.y_test)
    assert ext["max_abs_diff"] < 1e-4 and ext["size_bytes"] > data.stat().st_size  # the weights are counted
    if "tflite" in made_elsewhere:
        lite = df[df["origin"] == "external:team-tflite"]
        assert list(zip(lite["target"], lite["backend"])) == [("local-litert", "litert")]
        assert lite.iloc[0]["accuracy"] == _tflite_accuracy(made_elsewhere["tflite"], splits.x_test, splits.y_test)
        assert lite.iloc[0]["max_abs_diff"] < 1e-3  # fp32 conversion: the parent's logits up to rounding
        assert lite.iloc[0]["macs"] == baseline["macs"]


def test_an_onnx_artifact_taking_channels_last_images_is_fed_them(made_elsewhere):
    """tf2onnx's ONNX of a Keras model takes NHWC images: it was refused ("its input is ?x8x8x1"); now every ONNX
    backend gets the test images transposed (outside the timed window), and its MACs are counted at NHWC."""
    root, splits = made_elsewhere["root"], made_elsewhere["splits"]
    targets = ["local-cpu"]
    try:
        import openvino  # noqa: F401
        targets.append("local-openvino")
    except ImportError:
        pass
    artifacts = [{"path": "nhwc.onnx", "label": "keras-like", "precision": "fp32", "parent": "baseline"}]
    exp = load_experiment(_experiment(root, artifacts, targets))
    outcome = run_experiment(exp, render=False)
    assert outcome.failed == []
    df = edgebench.load(outcome.store_url, outcome.run_id).measurements()
    nhwc = df[df["origin"] == "external:keras-like"]
    assert sorted(nhwc["backend"]) == sorted({"local-cpu": "onnxruntime", "local-openvino": "openvino"}[t]
                                             for t in targets)
    expected = _ort_accuracy(made_elsewhere["nhwc_onnx"], np.transpose(splits.x_test, (0, 2, 3, 1)).copy(),
                             splits.y_test)
    baseline = df[df["variant_id"] == plan_fp32_variants(exp)[0].id].iloc[0]
    assert expected == pytest.approx(baseline["accuracy"], abs=0.003)  # the same network: fed right, it scores so
    for _, row in nhwc.iterrows():
        assert row["accuracy"] == pytest.approx(expected, abs=0.003), row["backend"]
        assert row["max_abs_diff"] < 1e-4, row["backend"]  # the parent's logits, image for image
        assert row["macs"] == baseline["macs"]


def test_a_file_ending_in_a_softmax_is_compared_with_the_models_probabilities(made_elsewhere):
    """Its outputs are probabilities (or log-probabilities): against the parent's logits they were 'not the model'
    (the logits' own size off); against the softmax of them they are the model's up to rounding."""
    root = made_elsewhere["root"]
    artifacts = [{"path": f"softmax_{log}.onnx", "label": f"log-{log}", "precision": "fp32", "parent": "baseline"}
                 for log in (False, True)]
    outcome = run_experiment(load_experiment(_experiment(root, artifacts, ["local-cpu"])), render=False)
    assert outcome.failed == []
    results = edgebench.load(outcome.store_url, outcome.run_id)
    stored = results.stored().set_index("label")
    for log, form in ((False, "probabilities"), (True, "log-probabilities")):
        row = stored.loc[f"external:log-{log}/fp32"]
        assert row["max_abs_diff"] < 1e-4 and row["details"]["outputs"] == form
    assert not [note for note in results.notes() if note.startswith("not the model")]


def test_an_openvino_ir_is_measured_as_given_on_openvino(made_elsewhere, tmp_path):
    """NNCF's post-training quantization writes OpenVINO IR (.xml + .bin): it was refused as a format edgebench
    does not measure. Written here by OpenVINO's own converter from the fp32 ONNX, it is cached as one directory
    (both files), measured on local-openvino only, and scores what the ONNX file scores."""
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (CI installs it)")
    root, splits = made_elsewhere["root"], made_elsewhere["splits"]
    (root / "ir").mkdir(exist_ok=True)
    ov.save_model(ov.convert_model(str(root / "fp32.onnx")), str(root / "ir" / "model.xml"), compress_to_fp16=False)
    artifacts = [{"path": "ir/model.xml", "label": "ov-ir", "precision": "fp32", "parent": "baseline"}]
    exp = load_experiment(_experiment(root, artifacts, ["local-cpu", "local-openvino"]))
    outcome = run_experiment(exp, render=False)
    assert outcome.failed == []
    df = edgebench.load(outcome.store_url, outcome.run_id).measurements()
    ir = df[df["origin"] == "external:ov-ir"]
    assert list(zip(ir["target"], ir["backend"])) == [("local-openvino", "openvino")]  # ONNX Runtime reads no IR
    row = ir.iloc[0]
    assert row["accuracy"] == pytest.approx(_ort_accuracy(root / "fp32.onnx", splits.x_test, splits.y_test),
                                            abs=1 / len(splits.y_test))
    assert row["max_abs_diff"] < 1e-4
    assert row["size_bytes"] == (root / "ir" / "model.xml").stat().st_size + (root / "ir" / "model.bin").stat().st_size
    baseline = df[df["variant_id"] == plan_fp32_variants(exp)[0].id].iloc[0]
    assert row["macs"] == baseline["macs"]  # counted from the IR's ops (they were not counted: unknown)
    (cached,) = (p for p in (root / "runs" / "artifacts").iterdir() if (p / "model.xml").is_file())
    assert (cached / "model.bin").read_bytes() == (root / "ir" / "model.bin").read_bytes()
    from typer.testing import CliRunner

    from edgebench.cli import app

    benched = CliRunner().invoke(app, ["bench", str(root / "ir" / "model.xml")])  # its input shape read off the IR
    assert benched.exit_code == 0 and "model.xml on openvino" in benched.output, benched.output
    (tmp_path / "broken.xml").write_text("not an IR\n")
    (tmp_path / "broken.bin").write_bytes(b"")
    broken = CliRunner().invoke(app, ["bench", str(tmp_path / "broken.xml")])
    assert broken.exit_code == 2 and "not an OpenVINO IR OpenVINO can read (Unable to read the model" in broken.output
    (tmp_path / "model.xml").write_bytes((root / "ir" / "model.xml").read_bytes())  # its .bin left behind
    lost = [{"path": str(tmp_path / "model.xml"), "label": "lost", "precision": "fp32"}]
    with pytest.raises(ConfigError, match=r"model.xml: an OpenVINO IR keeps its weights in model.bin beside the "
                                          r".xml, which is missing"):
        load_experiment(_experiment(root, lost, ["local-openvino"]))


def test_an_onnx_artifact_whose_external_data_is_missing_is_refused_at_load(made_elsewhere, tmp_path):
    import shutil

    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(made_elsewhere["external_data"] / "fp32_ext.onnx", lost / "fp32_ext.onnx")  # the .data left behind
    artifacts = [{"path": str(lost / "fp32_ext.onnx"), "label": "lost", "precision": "fp32"}]
    with pytest.raises(ConfigError, match=r"artifacts.0.path: .*fp32_ext.onnx: its weights are in an external data "
                                          r"file .*fp32_ext.onnx.data, which is missing"):
        load_experiment(_experiment(made_elsewhere["root"], artifacts, ["local-cpu"]))


def test_artifact_that_does_not_take_the_experiments_images_is_one_line(made_elsewhere, tmp_path):
    root = made_elsewhere["root"]
    wide = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
    torch.onnx.export(wide, (torch.zeros(1, 3, 32, 32),), root / "rgb32.onnx", dynamo=False)
    exp = load_experiment(_experiment(root, [{"path": "rgb32.onnx", "label": "rgb", "precision": "fp32"}],
                                      ["local-cpu"]))
    with pytest.raises(ConfigError, match=r"rgb32.onnx: its input '\S+' is 1x3x32x32, the experiment's images are Nx1x8x8 \(NCHW, or NHWC\)"):
        run_experiment(exp)
    raw = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
    torch.onnx.export(_Raw(raw), (torch.zeros(1, 1, 8, 8, dtype=torch.uint8),), root / "u8.onnx", dynamo=False,
                      input_names=["pixels"])
    torch.onnx.export(_ClassIds(raw), (torch.zeros(1, 1, 8, 8),), root / "ids.onnx", dynamo=False,
                      output_names=["class"])
    for name, message in [("u8.onnx", r"u8.onnx: its input 'pixels' takes uint8 \(raw pixels, preprocessed inside the "
                                      r"graph\?\); edgebench feeds float images"),
                          ("ids.onnx", r"ids.onnx: its output 'class' is int64 \(class ids\?\); edgebench scores one "
                                       r"row of class scores per image")]:
        with pytest.raises(ConfigError, match=message):  # ONNX Runtime's "Unexpected input data type" at measure time
            run_experiment(load_experiment(_experiment(root, [{"path": name, "label": "x", "precision": "fp32"}],
                                                       ["local-cpu"])))
    bad_parent = _experiment(root, [{"path": "ort_int8.onnx", "label": "x", "precision": "int8", "parent": "l9"}],
                             ["local-cpu"])
    with pytest.raises(ConfigError, match=r"artifacts.0.parent: no fp32 variant 'l9'; the experiment has baseline"):
        run_experiment(load_experiment(bad_parent))


def test_rewritten_external_data_starts_a_new_run(made_elsewhere, tmp_path):
    """The run hash read the .onnx alone: retrained weights in its data file resumed the old run."""
    import shutil

    copy = tmp_path / "ext"
    shutil.copytree(made_elsewhere["external_data"], copy)
    artifacts = [{"path": str(copy / "fp32_ext.onnx"), "label": "ext", "precision": "fp32"}]
    before = load_experiment(_experiment(made_elsewhere["root"], artifacts, ["local-cpu"])).hash
    data = copy / "fp32_ext.onnx.data"
    data.write_bytes(bytes(b ^ 1 for b in data.read_bytes()))  # other weights, same graph file
    assert load_experiment(_experiment(made_elsewhere["root"], artifacts, ["local-cpu"])).hash != before


def test_a_tflite_artifact_with_two_outputs_or_other_images_is_one_line(made_elsewhere):
    """Only ONNX files were checked: a 2-output TFLite was scored on whichever output came first."""
    litert_torch = pytest.importorskip("litert_torch", reason="LiteRT conversion is the extra 'litert' "
                                       "(bootstrap.sh installs it: CI runs this test)")

    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.fc(x.flatten(1))
            return logits, logits.softmax(1)

    root = made_elsewhere["root"]
    litert_torch.convert(TwoHeads().eval(), (torch.zeros(1, 1, 8, 8),)).export(str(root / "two.tflite"))
    rgb = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)).eval()
    litert_torch.convert(rgb, (torch.zeros(1, 3, 8, 8),)).export(str(root / "rgb.tflite"))
    for name, message in (("two.tflite", r"two.tflite: has 1 inputs and 2 outputs"),
                          ("rgb.tflite", r"rgb.tflite: its input is Nx3x8x8, the experiment's images are Nx1x8x8")):
        exp = load_experiment(_experiment(root, [{"path": name, "label": "x", "precision": "fp32"}], ["local-litert"]))
        with pytest.raises(ConfigError, match=message):
            run_experiment(exp)


def test_a_declared_precision_the_file_does_not_compute_in_is_one_line(made_elsewhere):
    """The fp32 ONNX listed as int8 (the file beside the int8 one) stood on the fronts as int8 figures."""
    root = made_elsewhere["root"]
    for name, declared, message in [
        ("fp32.onnx", "int8", r"fp32.onnx: declared precision int8, but it computes in floating point"),
        ("ort_int8.onnx", "fp32", r"ort_int8.onnx: declared precision fp32, but its graph is quantized \(an ONNX "
                                  r"QuantizeLinear node\): declare precision int8"),
        *([("team.tflite", "int8_dynamic", r"team.tflite: declared precision int8_dynamic, but it computes in "
                                           r"floating point")] if "tflite" in made_elsewhere else [])]:
        exp = load_experiment(_experiment(root, [{"path": name, "label": "x", "precision": declared}], ["local-cpu"]))
        with pytest.raises(ConfigError, match=message):
            run_experiment(exp)


def test_a_file_onnx_runtime_cannot_load_fails_naming_the_users_file(made_elsewhere, tmp_path):
    """A custom-domain op (NNCF's FakeQuantize) ONNX Runtime lacks: the failed job named the run's cached copy and
    said to delete it for edgebench to export it again, which it cannot do with another tool's file."""
    import onnx

    model = onnx.load(made_elsewhere["root"] / "fp32.onnx")
    model.graph.node[0].domain, model.graph.node[0].op_type = "com.nncf.custom", "FakeQuantize"
    model.opset_import.append(onnx.helper.make_opsetid("com.nncf.custom", 1))
    onnx.save(model, tmp_path / "custom.onnx")
    # the run cache comes along: the baseline's artifacts built by an earlier test are reused, as in a moved copy
    shutil.copytree(made_elsewhere["root"], tmp_path / "root", ignore=shutil.ignore_patterns("report"))
    shutil.copy(tmp_path / "custom.onnx", tmp_path / "root" / "custom.onnx")
    artifacts = [{"path": "custom.onnx", "label": "nncf", "precision": "fp32", "parent": "baseline"}]
    outcome = run_experiment(load_experiment(_experiment(tmp_path / "root", artifacts, ["local-cpu"])), render=False)
    failed = [line for line in outcome.failed if "external:nncf" in line]
    assert len(failed) == 1 and f"ONNX Runtime cannot load {tmp_path / 'root' / 'custom.onnx'}:" in failed[0]
    assert "FakeQuantize" in failed[0] and "another tool made it" in failed[0]
    assert "artifact cache" not in failed[0] and str(tmp_path / "root" / "runs") not in failed[0]
