"""The latency tables as a model that predicts a variant's p50 (issue 22, part 4): the arithmetic on a table
written by hand, and a run that stores each prediction beside its measurement, reports its error and prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgebench.config import load_experiment
from edgebench.executor.tasks import call_task
from edgebench.job import LatencyPrediction, MeasureSettings
from edgebench.pipeline import run_experiment
from edgebench.prune.allocation.latency.cache import CURVE_MIB, gemm_shape
from edgebench.prune.allocation.latency.predict import CalibratedTables, read_prediction
from edgebench.prune.allocation.latency.table import LatencyTable, LayerShape
from edgebench.store import Store
from tests.experiment_files import default_with

STEM, STEM_HALF = LayerShape("Conv", 3, 16, (3, 3), (1, 1), (1, 1), (8, 8)), LayerShape("Conv", 3, 8, (3, 3), (1, 1), (1, 1), (8, 8))
BODY, BODY_HALF = LayerShape("Conv", 16, 16, (3, 3), (1, 1), (1, 1), (8, 8)), LayerShape("Conv", 8, 8, (3, 3), (1, 1), (1, 1), (8, 8))
FC, FC_HALF = LayerShape("Gemm", 16, 10), LayerShape("Gemm", 8, 10)
#: a table written by hand (ms): what a runtime measured for each layer alone
ENTRIES = {STEM: 0.10, BODY: 0.50, FC: 0.02, STEM_HALF: 0.06, BODY_HALF: 0.15, FC_HALF: 0.01}
PRUNED = [STEM_HALF, BODY_HALF, FC_HALF]


def test_prediction_is_the_unpruned_p50_scaled_by_the_table_sums() -> None:
    measured: list[LayerShape] = []

    def lookup(shape: LayerShape) -> float:
        measured.append(shape)
        return ENTRIES[shape]

    table = LatencyTable(None, "t", "r", "v", lookup)
    prediction = CalibratedTables([STEM, BODY, FC], table, unpruned_p50_ms=1.24).predict(PRUNED)
    # by hand: the pruned layers sum to 0.06 + 0.15 + 0.01 = 0.22 ms, the unpruned ones to 0.10 + 0.50 + 0.02 =
    # 0.62 ms; the unpruned model measured 1.24 ms, twice its table sum, so the prediction is 2 x 0.22 = 0.44 ms
    assert prediction.table_ms == pytest.approx(0.22)
    assert prediction.unpruned_table_ms == pytest.approx(0.62)
    assert prediction.p50_ms == pytest.approx(0.44)
    assert prediction.layers == 3 and prediction.unpruned_p50_ms == 1.24
    assert len(measured) == 6  # each entry measured once


def test_the_call_overhead_is_counted_once_per_inference_not_once_per_layer() -> None:
    table = LatencyTable(None, "t", "r", "v", ENTRIES.__getitem__)
    prediction = CalibratedTables([STEM, BODY, FC], table, unpruned_p50_ms=1.24, call_overhead_ms=0.02).predict(PRUNED)
    # by hand: less 0.02 ms of call per entry, the pruned layers compute 0.04 + 0.13 + 0 = 0.17 ms (FC_HALF's 0.01
    # is all call), the unpruned ones 0.08 + 0.48 + 0 = 0.56 ms; the unpruned model's 1.24 ms is one 0.02 ms call
    # and 1.22 ms that scales with the layers, so the prediction is 0.02 + 1.22 x 0.17 / 0.56 = 0.3904 ms
    assert prediction.table_ms == pytest.approx(0.17) and prediction.unpruned_table_ms == pytest.approx(0.56)
    assert prediction.p50_ms == pytest.approx(0.02 + 1.22 * 0.17 / 0.56)
    assert prediction.call_overhead_ms == 0.02


def test_own_time_entries_lose_no_call_but_the_call_is_still_counted_once() -> None:
    table = LatencyTable(None, "t", "r", "v", ENTRIES.__getitem__)
    prediction = CalibratedTables([STEM, BODY, FC], table, unpruned_p50_ms=1.24, call_overhead_ms=0.02,
                                  entries_hold_call=False).predict(PRUNED)
    # by hand: entries that hold no call sum as they are, 0.22 and 0.62 ms; the unpruned model's 1.24 ms is one
    # 0.02 ms call and 1.22 ms that scales with the layers: 0.02 + 1.22 x 0.22 / 0.62 = 0.452903 ms
    assert prediction.table_ms == pytest.approx(0.22) and prediction.unpruned_table_ms == pytest.approx(0.62)
    assert prediction.p50_ms == pytest.approx(0.452903, abs=1e-6)


def test_the_flag_stays_out_of_old_jobs_json() -> None:
    assert "predict_latency" not in MeasureSettings().model_dump()
    assert MeasureSettings(predict_latency=True).model_dump()["predict_latency"] is True


def test_run_stores_each_prediction_beside_its_measurement_and_reports_the_error(tmp_path: Path) -> None:
    """One tiny run for both of the run's switches: predictions, and side-by-side lanes (used or refused)."""
    target = tmp_path / "ort-only.yaml"
    target.write_text("description: ONNX Runtime only\nkind: local\nbackends: [onnxruntime]\ndevice: cpu\nthreads: 1\n")
    other = tmp_path / "litert-2.yaml"  # neither switch applies here, and the run says so (it said nothing)
    other.write_text("description: LiteRT, 2 threads\nkind: local\nbackends: [litert]\ndevice: cpu\nthreads: 2\n")
    path = default_with(
        tmp_path, name="predict", training={"epochs": 1, "batch_size": 128},
        pruning={"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0], "allocation": ["uniform"]},
        quantization={"precisions": ["fp32", "int8"], "calibration_samples": 32},
        # the LiteRT target's notes need one job of it: its baseline fp32 (nothing reads its measurements)
        targets=[str(target), {"name": str(other), "precisions": ["fp32"], "criteria": []}],
        measurement={"min_iters": 20, "min_time_s": 0.02, "warmup_iters": 3, "precision": None,
                     "predict_latency": True, "parallel_lanes": True},
        run={"workdir": str(tmp_path / "runs")}, report={"dir": str(tmp_path / "report")},
    )
    outcome = run_experiment(load_experiment(path))
    assert outcome.failed == [] and "predict" in outcome.stage_seconds
    verdict = outcome.side_by_side  # the interference check ran before the sweep; a refusal is said, not hidden
    assert verdict is not None and verdict.reason
    assert verdict.ok or any(note.startswith("side-by-side lanes refused") for note in outcome.unsupported)
    assert "latency not predicted on litert-2/litert: the tables time one-layer ONNX models" in " ".join(
        outcome.unsupported)
    assert "side-by-side lanes not used for litert-2 (2 threads)" in " ".join(outcome.unsupported)
    with Store.open(outcome.store_url) as store:
        every = store.measurements(outcome.run_id)
    every = every[every["target"] == "ort-only"]
    # which measurements ran side by side is stored with each (the core, and the check that allowed it)
    lanes = [row.get("side_by_side") for row in every["details"]]
    assert all(lane is not None and lane["core"] in verdict.cores and lane["check"] == verdict.reason
               for lane in lanes) if verdict.ok else all(lane is None for lane in lanes)
    # the tables predict fp32 variants: the int8 file of the same weights had the fp32 prediction and its error
    assert every.query("precision == 'int8'")["predicted_p50_ms"].isna().all()
    df = every.query("precision == 'fp32'").set_index("kind")
    base, pruned = df.loc["baseline"], df.loc["structured"]
    assert base["predicted_p50_ms"] is None or base["predicted_p50_ms"] != base["predicted_p50_ms"]  # not predicted
    prediction = LatencyPrediction.model_validate(pruned["details"]["latency_prediction"])
    # the digits CNN's 4 conv/linear layers, each timed alone (a few microseconds each: which sum is the larger is
    # the runtime's noise here, so only the arithmetic and where it is stored are checked)
    # (net of the call overhead a digits layer's sum can be 0: then the prediction is that one call)
    assert prediction.layers == 4 and prediction.table_ms >= 0 and prediction.unpruned_table_ms >= 0
    # a few KiB of weights stay where one layer's do: no cache term, and no cache curve Gemm measured for it
    assert 0 < prediction.weights_mib < 1 and prediction.cache_ms == prediction.unpruned_cache_ms == 0
    tables = list((tmp_path / "runs").rglob("latency/*--onnxruntime.json"))  # the tables, not the predictions
    assert tables and all(gemm_shape(CURVE_MIB[0]).key not in json.loads(t.read_text())["entries"] for t in tables)
    overhead, unpruned = prediction.call_overhead_ms, prediction.unpruned_p50_ms
    assert 0 < overhead <= unpruned  # the smallest one-layer model, timed on the same runtime
    assert prediction.entries == "one-layer model's p50"  # ONNX Runtime's entries time one-layer models
    scaled = (unpruned - overhead) * prediction.table_ms / prediction.unpruned_table_ms if prediction.unpruned_table_ms else None
    assert pruned["predicted_p50_ms"] == prediction.p50_ms == pytest.approx(unpruned if scaled is None else overhead + scaled)
    assert pruned["prediction_error_pct"] == pytest.approx(100 * (prediction.p50_ms / pruned["p50_ms"] - 1))
    html = outcome.report_path.read_text()
    assert "prediction error %" in html and "predicted p50 ms" in html

    from edgebench.report.run_notes import run_notes

    line = " ".join(map(str, run_notes(df.reset_index())))
    assert "<b>latency model</b>: on ort-only/onnxruntime: MAPE" in html  # the report says it too
    assert f"latency model: on ort-only/onnxruntime: MAPE {abs(pruned['prediction_error_pct']):.1f} % over 1" in line


def test_a_damaged_prediction_file_costs_the_prediction_not_the_measurement(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    good = LatencyPrediction(p50_ms=1.0, table_ms=2.0, unpruned_table_ms=4.0, unpruned_p50_ms=2.0, layers=3)
    path = tmp_path / "p.json"
    path.write_text(good.model_dump_json())
    assert read_prediction(path) == good
    path.write_text(good.model_dump_json()[:20])  # cut short
    assert read_prediction(path) is None and "unreadable" in caplog.text and str(path) in caplog.text
    path.write_text(good.model_dump_json().replace('"layers"', '"cache_fraction":0.5,"layers"'))  # an older form
    assert read_prediction(path) is None


#: an OpenVINO prediction in a fresh process, as a predict worker makes it: ``onnxruntime`` imported next to
#: OpenVINO nearly doubled its copying call on the smallest model (0.030 -> 0.057 ms, Intel Xeon guest)
_OPENVINO_PREDICTION = """
import sys, tempfile
from pathlib import Path
import torch
from torch import nn
import edgebench.sweep  # what a predict worker imports to run the task
from edgebench.prune.allocation.latency.predict import TargetLatencyModel
full = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
half = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
model = TargetLatencyModel("local-openvino", "openvino", Path(tempfile.mkdtemp()))
print(model.predict(half, full, torch.randn(1, 1, 8, 8)).p50_ms > 0, "onnxruntime" in sys.modules)
"""


def test_a_prediction_times_its_runtime_in_workers_that_never_imported_another() -> None:
    pytest.importorskip("openvino")
    build = call_task("b", "build", print)
    predictions = {rt: call_task("p", "predict", print, times=rt).worker for rt in ("openvino", "onnxruntime")}
    assert len({build.worker, *predictions.values()}) == 3  # no worker shared with builds/exports or between runtimes
    out = subprocess.run([sys.executable, "-c", _OPENVINO_PREDICTION], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["True", "False"]  # predicted, and ONNX Runtime never loaded


def test_openvino_entries_are_the_layers_own_time_with_no_call_or_edges_to_take_off(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import torch
    from torch import nn

    from edgebench.prune.allocation.latency.predict import CALL_OVERHEAD_SHAPE, TargetLatencyModel
    from edgebench.prune.allocation.latency.table import layer_input, layer_onnx, onnx_p50_ms, own_time_timer

    def net(width: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 10))

    full, quarter = net(64), net(16)
    model = TargetLatencyModel("local-openvino", "openvino", tmp_path)
    assert model.entries == "layer's own time" and model.chains is None and model.boundary() is None
    prediction = model.predict(quarter, full, torch.randn(1, 3, 32, 32))
    assert prediction.entries == "layer's own time" and prediction.boundary_ms == 0
    own = json.loads((tmp_path / "local-openvino--openvino-own.json").read_text())
    walls = json.loads((tmp_path / "local-openvino--openvino.json").read_text())["entries"]
    assert "own time" in own["header"]["runtime"] and list(walls) == [CALL_OVERHEAD_SHAPE.key]  # only the call
    # c: the smallest one-layer model's p50 less that layer's own time; the entries are summed as they are
    c = walls[CALL_OVERHEAD_SHAPE.key] - own["entries"][CALL_OVERHEAD_SHAPE.key]
    assert prediction.call_overhead_ms == pytest.approx(c) and c > 0
    conv, fc = LayerShape("Conv", 3, 16, (3, 3), (1, 1), (1, 1), (32, 32)), LayerShape("Gemm", 16, 10)
    assert prediction.table_ms == pytest.approx(own["entries"][conv.key] + own["entries"][fc.key])
    assert 0 < prediction.table_ms < prediction.unpruned_table_ms  # a quarter of the conv's 1.8 M multiply-adds
    assert prediction.p50_ms == pytest.approx(c + (prediction.unpruned_p50_ms - c) * prediction.table_ms
                                              / prediction.unpruned_table_ms)
    # the smallest layer's own time is a sliver of its one-layer model's call: the call is not in the entry
    own = own_time_timer("openvino", model.settings)
    assert own is not None and own_time_timer("onnxruntime", model.settings) is None
    layer_onnx(CALL_OVERHEAD_SHAPE, tmp_path / "smallest.onnx")
    wall = onnx_p50_ms(tmp_path / "smallest.onnx", "openvino", model.settings, layer_input(CALL_OVERHEAD_SHAPE),
                       MeasureSettings(warmup_iters=100, min_iters=200, min_time_s=0.05, precision=None))
    assert 0 <= own(CALL_OVERHEAD_SHAPE) < wall / 2  # (the counters say whole microseconds: 0 is possible)


def test_a_damaged_unpruned_timing_is_measured_again_and_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cut-off cache file cost every later run its predictions ('Invalid control character', naming no file)."""
    import torch
    from torch import nn

    from edgebench.prune.allocation.latency.predict import TargetLatencyModel

    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    example = torch.zeros(1, 1, 8, 8)
    model = TargetLatencyModel("local-cpu", "onnxruntime", tmp_path)
    first = model.unpruned_p50_ms(net, example)
    [cached] = tmp_path.glob("unpruned-*.json")
    cached.write_text('{"p50_ms": 0.0')
    with caplog.at_level("WARNING", logger="edgebench.prune.allocation.latency.predict"):
        again = model.unpruned_p50_ms(net, example)
    assert first > 0 and again > 0 and f"latency cache {cached} is damaged" in caplog.text
    assert json.loads(cached.read_text())["p50_ms"] == again  # replaced: the next run reads it
