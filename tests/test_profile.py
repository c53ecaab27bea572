"""Per-layer profiles: real ORT / OpenVINO / torch.profiler runs mapped to PyTorch layers, hls4ml reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.models import create_model
from edgebench.models.cost import count_macs
from edgebench.profile.onnx_layers import OnnxLayerMap
from edgebench.profile.table import INPUT_ROW, UNMAPPED_ROW, LayerProfile, LayerRow, format_profile, macs_time_gaps
from edgebench.runtimes.base import BackendSettings, get_backend, get_exporter
from edgebench.runtimes.hls4ml.profile import profile_hls4ml
from edgebench.runtimes.hls4ml.report import write_synthesis
from edgebench.runtimes.litert.profile import profile_litert
from edgebench.runtimes.onnxruntime.calibration import quantize_qdq
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.runtimes.onnxruntime.profile import host_timed_reason, node_placement, profile_onnxruntime
from edgebench.runtimes.onnxruntime.session import make_session_options
from edgebench.runtimes.torch.profile import profile_torch
from edgebench.variants import QuantSpec

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, dict[str, Path], np.ndarray]:
    """ResNet-8 (residual adds, 1x1 projections, BN folded by the exporter) as fp32, fp16 and QDQ int8 ONNX."""
    torch.manual_seed(0)
    model = create_model("resnet56_cifar", num_classes=10, in_channels=3, depth=8).eval()
    x = np.random.default_rng(0).standard_normal((16, *SHAPE)).astype(np.float32)
    tmp = tmp_path_factory.mktemp("profile")
    paths = {"fp32": tmp / "fp32.onnx", "int8": tmp / "int8.onnx"}
    export_fp32_onnx(model, torch.from_numpy(x[:1]), paths["fp32"])
    quantize_qdq(paths["fp32"], paths["int8"], x)
    paths["fp16"] = get_exporter("onnx").export(model, QuantSpec(precision="fp16"), x, tmp / "fp16.onnx")
    return model, paths, x


def _conv_linear_paths(model: torch.nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)}


def _check_rows(profile: LayerProfile, model: torch.nn.Module) -> None:
    """Every conv/linear is one row with the right MACs, measured time, and shares adding up to 1."""
    assert profile.status == "ok" and profile.run_ms > 0
    rows = {r.layer: r for r in profile.rows}
    layers = _conv_linear_paths(model)
    assert layers <= set(rows), layers - set(rows)
    assert sum(rows[name].macs for name in layers) == count_macs(model, SHAPE)
    assert all(rows[name].time_ms > 0 and rows[name].compute_ms > 0 for name in layers if "fc" not in name)
    assert sum(r.time_share for r in profile.rows) == pytest.approx(1.0)
    assert sum(r.macs_share for r in profile.rows) == pytest.approx(1.0)
    assert rows["stages.1.conv1"].c_in == 16 and rows["stages.1.conv1"].c_out == 32  # depth 8: widths 16/32/64


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_profile_maps_every_operator_to_a_layer(resnet, precision: str) -> None:
    model, paths, x = resnet
    profile = profile_onnxruntime(paths[precision], x[:1], threads=1, runs=10, warmup_runs=2)
    _check_rows(profile, model)
    assert profile.runs == 10
    unmapped = [o for o in profile.ops if o.layer == UNMAPPED_ROW]
    assert not unmapped, unmapped  # NCHWc reorders, QLinear nodes, inserted transposes and casts all resolve
    if precision == "int8":
        assert {o.op_type for o in profile.ops} >= {"QLinearConv"}
        assert any(o.layer == INPUT_ROW and o.op_type == "QuantizeLinear" for o in profile.ops)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="the 'openvino' extra is not installed")
def test_openvino_profile_from_performance_counters(resnet) -> None:
    from edgebench.runtimes.base import BackendSettings
    from edgebench.runtimes.openvino.profile import profile_openvino

    model, paths, x = resnet
    profile = profile_openvino(paths["fp32"], x[:1], BackendSettings(threads=1), runs=10, warmup_runs=2)
    _check_rows(profile, model)
    assert {o.op_type for o in profile.ops} >= {"Convolution"}


def test_torch_profile_attributes_bn_and_relu_to_their_conv(resnet) -> None:
    model, _, x = resnet
    profile = profile_torch(model, x[:1], runs=5, warmup_runs=1)
    _check_rows(profile, model)
    ops = {o.name: o for o in profile.ops}
    assert ops["stages.0.bn1"].layer == "stages.0.conv1" and ops["stem.1"].layer == "stem.0"
    assert "(outside modules)" in {r.layer for r in profile.rows}  # the residual "+" is functional code
    assert "not conv/gemm compute" in format_profile(profile, top=3, p50_ms=profile.run_ms)


def test_runtime_decorated_names_resolve(resnet) -> None:
    layers = OnnxLayerMap.from_file(resnet[1]["fp32"])
    conv = next(name for name, layer in layers.node_layer.items() if layer == "stages.0.conv1")
    relu_out = next(t for t, layer in layers.tensor_layer.items() if layer == "stages.0.conv1" and "relu" in t)
    assert layers.layer_of(f"{relu_out}_nchwc_kernel_time") == "stages.0.conv1"  # ORT NCHWc
    assert layers.layer_of(f"{conv}_token_4") == "stages.0.conv1"  # ORT QDQ fusion
    assert layers.layer_of(f"input_abcd_acdb_{conv}") == "stages.0.conv1"  # OpenVINO reorder into the conv
    assert layers.layer_of(f"{conv} + node_relu_1") == "stages.0.conv1"  # TensorRT fusion
    assert layers.layer_of("Convert_5908") == UNMAPPED_ROW


def _row(layer: str, ms: float, macs: int) -> LayerRow:
    return LayerRow(layer, "Conv", ms, 0.0, ms, macs, 0.0, 8, 8, 1)


def test_gaps_list_layers_whose_removed_macs_stayed_time() -> None:
    base = LayerProfile("onnxruntime", "ok", rows=[_row("a", 1.0, 1000), _row("b", 1.0, 1000), _row("c", 1.0, 1000)])
    pruned = LayerProfile("onnxruntime", "ok", rows=[_row("a", 0.5, 500), _row("b", 0.95, 500), _row("c", 1.0, 1000)])
    gaps = macs_time_gaps(base, pruned)
    assert [g.layer for g in gaps] == ["b"]  # a: proportional; c: nothing removed
    assert gaps[0].realised == pytest.approx(0.1)


def test_hls4ml_without_synthesis_says_why(tmp_path: Path) -> None:
    write_synthesis(tmp_path, None, "vitis_hls not on PATH")
    profile = profile_hls4ml(tmp_path)
    assert profile.status == "not available" and "vitis_hls not on PATH" in profile.reason
    assert not profile.rows


CSYNTH = """<?xml version="1.0" encoding="UTF-8"?>
<profile><UserAssignments><Part>xczu9eg-ffvb1156-2-e</Part><TopModelName>{top}</TopModelName>
<TargetClockPeriod>5.00</TargetClockPeriod></UserAssignments>
<PerformanceEstimates><SummaryOfOverallLatency><Best-caseLatency>{cycles}</Best-caseLatency>
<Worst-caseLatency>{cycles}</Worst-caseLatency><Interval-min>1</Interval-min><Interval-max>1</Interval-max>
</SummaryOfOverallLatency></PerformanceEstimates><AreaEstimates><Resources><LUT>10</LUT></Resources>
<AvailableResources><LUT>100</LUT></AvailableResources></AreaEstimates></profile>"""

FIRMWARE = """
    nnet::conv_2d_cl<input_t, layer2_t, config2>(input_1, layer2_out, w2, b2); // _0
    nnet::relu<layer2_t, layer3_t, relu_config3>(layer2_out, layer3_out); // _1
    nnet::dense<layer3_t, result_t, config6>(layer5_out, layer6_out, w6, b6); // _4
"""


def test_hls4ml_per_layer_latency_from_synthesis_reports(tmp_path: Path) -> None:
    report_dir = tmp_path / "edgebench_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    (report_dir / "edgebench_csynth.xml").write_text(CSYNTH.format(top="edgebench", cycles=300))
    for module, cycles in (("conv_2d_cl_ap_fixed_config2_s", 200), ("relu_ap_fixed_relu_config3_s", 20),
                           ("dense_latency_config6_s", 80), ("fill_buffer_1", 5),
                           # helpers inside layers 2 and 6 (names of a real io_stream project), their time in the layer's
                           ("shift_line_buffer_array_ap_fixed_1u_config2_s", 7), ("dense_latency_config6_mult_s", 30)):
        (report_dir / f"{module}_csynth.xml").write_text(CSYNTH.format(top=module, cycles=cycles))
    (tmp_path / "firmware").mkdir()
    (tmp_path / "firmware" / "edgebench.cpp").write_text(FIRMWARE)
    (tmp_path / "synthesis.json").write_text('{"status": "synthesised"}')
    profile = profile_hls4ml(tmp_path)
    rows = {r.layer: r for r in profile.rows}
    assert profile.status == "ok" and set(rows) == {"_0", "_1", "_4"}  # helper functions below layers dropped
    assert rows["_4"].time_ms == pytest.approx(80 * 5.0 / 1e6)
    assert rows["_0"].time_ms == pytest.approx(200 * 5.0 / 1e6) and profile.run_ms == pytest.approx(300 * 5.0 / 1e6)
    assert rows["_0"].time_share == pytest.approx(200 / 300)


def test_litert_profile_is_not_available_with_reason() -> None:
    profile = profile_litert()
    assert profile.status == "not available" and "benchmark_model" in profile.reason


@pytest.mark.hardware
def test_tensorrt_layer_profiler(resnet) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU machine)")
    from edgebench.runtimes.base import BackendSettings, get_backend
    from edgebench.runtimes.tensorrt.profile import profile_tensorrt

    model, paths, x = resnet
    reason = get_backend("tensorrt").available()
    if reason:
        pytest.skip(reason)
    import tensorrt as trt

    session = get_backend("tensorrt").load(paths["fp32"], BackendSettings(device="cuda"))
    profile = profile_tensorrt(trt, session._context, lambda: (session.run(x[:1]), session.sync()),
                               OnnxLayerMap.from_file(paths["fp32"]), runs=5, warmup_runs=1)
    assert profile.status == "ok" and {r.layer for r in profile.rows} >= _conv_linear_paths(model)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_worker_records_the_profile_after_the_timed_window(resnet, tmp_path: Path, backend: str) -> None:
    if backend == "openvino" and importlib.util.find_spec("openvino") is None:
        pytest.skip("the 'openvino' extra is not installed")
    from edgebench.job import Job, MeasureSettings
    from edgebench.measure.worker import execute

    model, paths, x = resnet
    np.savez(tmp_path / "eval.npz", x=x, y=np.zeros(len(x), dtype=np.int64))
    measure = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, precision=None, profile_layers=True,
                              profile_runs=5)
    job = Job(job_id="j", variant_id="v", target="t", backend=backend, artifact=str(paths["int8"]), precision="int8",
              eval_data=str(tmp_path / "eval.npz"), measure=measure)
    result = execute(job)
    assert result.status == "ok", result.error
    profile = LayerProfile.from_dict(result.layer_profile)
    assert profile.runtime == backend and profile.runs == 5
    _check_rows(profile, model)
    without = execute(job.model_copy(update={"measure": measure.model_copy(update={"profile_layers": False})}))
    assert without.layer_profile is None


def test_profiling_fields_stay_out_of_json_when_unused() -> None:
    """Workers and controllers of an older edgebench (a device not yet upgraded) forbid unknown fields."""
    from edgebench.job import JobResult, MeasureSettings

    assert "profile" not in MeasureSettings().model_dump_json()
    assert MeasureSettings(profile_layers=True).model_dump()["profile_runs"] == 50
    assert "layer_profile" not in JobResult(job_id="j", status="ok").model_dump_json()


def _ort_events(path: Path, x: np.ndarray) -> list[dict]:
    """ORT's own profile of two CPU runs of ``path``, as its profiler writes it."""
    import json

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.parent / "events")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(2):
        session.run(None, {session.get_inputs()[0].name: x})
    return json.loads(Path(session.end_profiling()).read_text())


def test_ort_node_times_on_a_gpu_provider_are_not_taken_as_layer_times(resnet) -> None:
    _, paths, x = resnet
    events = _ort_events(paths["fp32"], x[:1])
    assert host_timed_reason(events) is None  # every node on the CPU: its profiler's times are the nodes' own
    node = next(e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))
    node["args"]["provider"] = "CUDAExecutionProvider"  # what ORT writes for a node its CUDA provider ran
    reason = host_timed_reason(events)
    assert reason is not None and "CUDAExecutionProvider on the host" in reason


def test_ort_node_placement_counts_every_node_of_one_run(resnet, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    _, paths, x = resnet
    placement = node_placement(paths["int8"], x[:1], 1, ["CPUExecutionProvider"])
    options = make_session_options(1)
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(paths["int8"]), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    expected: dict[str, int] = {}
    for n in graph.node:
        expected[n.op_type] = expected.get(n.op_type, 0) + 1
    assert placement == {"CPUExecutionProvider": dict(sorted(expected.items()))}
    assert "placement" not in get_backend("onnxruntime").load(paths["int8"], BackendSettings()).details()


def test_the_share_of_a_timed_p50_is_none_where_the_profiled_kernels_took_longer() -> None:
    """0.3 ms of conv/gemm kernels in a 0.5 ms profiled run: 40 % of it is not compute, 50 % of a 0.6 ms p50; a
    0.25 ms p50 from a faster window has no share (it once printed 0.0 %)."""
    profile = LayerProfile("onnxruntime", "ok", run_ms=0.5, rows=[_row("a", 0.3, 1000), _row("b", 0.1, 1000)])
    profile.rows[1].compute_ms = 0.0  # b (a pool) is not a conv/gemm kernel
    assert profile.non_compute_share() == pytest.approx(0.4)
    assert profile.non_compute_share(0.6) == pytest.approx(0.5)
    assert profile.p50_share_text(0.6) == "50.0% of the timed p50 (0.600 ms)"
    assert profile.non_compute_share(0.25) is None
    assert profile.p50_share_text(0.25) == ("none of the timed p50 (0.250 ms): the profiled conv/gemm kernels alone took "
                                            "0.300 ms, the windows ran at different speeds")


def test_a_share_that_cannot_be_read_off_is_unknown_not_zero() -> None:
    """Kernels 0.5 + 0.1 ms of 0.8 ms operator time: 25.0 % of operator time is not conv/gemm. A run of 0.5 ms
    (shorter than its kernels: windows at different speeds) or no run time at all (an hls4ml report without a
    top-level latency) has no share of the run: it printed 0.0 % ("all compute") or raised on the None."""
    from edgebench.cli.profile import print_profile
    from edgebench.profile.table import LayerInfo, OpTime, build_profile

    layers = {"conv": LayerInfo("conv", "Conv", 1000, 1, 8), "fc": LayerInfo("fc", "Gemm", 100, 8, 10)}
    ops = [OpTime("conv_op", "Conv", 0.50, "conv"), OpTime("relu", "Relu", 0.20, "conv"),
           OpTime("fc_op", "Gemm", 0.10, "fc")]
    slow_kernels = build_profile("x", ops, layers, run_ms=0.5, runs=10)
    assert slow_kernels.non_compute_text() == (
        "not conv/gemm compute: 25.0% of operator time (lower bound); unknown of the profiled run (0.500 ms): its "
        "conv/gemm kernels alone took 0.600 ms (the profiler's windows ran at different speeds)")
    no_run = build_profile("hls4ml", ops, layers, run_ms=None, runs=1)
    assert format_profile(no_run).splitlines()[-2:] == [
        "hls4ml: profiled run time unknown = operators 0.800 ms (conv/gemm kernels 0.600 ms) + time between operators",
        "not conv/gemm compute: 25.0% of operator time (lower bound); unknown of the profiled run (the runtime "
        "reported no run time)"]
    print_profile(no_run.to_dict(), None, None)  # raised TypeError formatting the None run time
    normal = build_profile("x", ops, layers, run_ms=1.0, runs=10)
    assert "40.0% of the profiled run (1.000 ms) (upper bound)" in normal.non_compute_text()


def test_onnxruntime_profile_of_a_file_taking_float16(resnet, tmp_path: Path) -> None:
    """ONNX Runtime's float16 converter without keep_io_types gives a file that takes float16 images: the profile
    failed ("Unexpected input data type. Actual: (tensor(float)), expected: (tensor(float16))"), as the timed run
    never did."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    _, paths, x = resnet
    path = tmp_path / "fp16_io.onnx"
    onnx.save(convert_float_to_float16(onnx.load(paths["fp32"]), keep_io_types=False), path)
    profile = profile_onnxruntime(path, x[:1], threads=1, runs=5, warmup_runs=1)
    assert profile.status == "ok" and profile.run_ms > 0 and profile.rows


def test_another_tools_qoperator_file_maps_to_the_layers_with_their_macs(resnet, tmp_path: Path) -> None:
    """torch.onnx.export's own file names the weights it folds a BatchNorm into "onnx::Conv_193" (rows were named
    so), and ONNX Runtime's QOperator quantizer writes QLinearAdd, past which ONNX's shape inference stops (the convs
    after the first residual add had MACs of one output position). Rows are the layers from the nodes' scopes
    ("/stages/stages.1/conv2/Conv"), with their MACs."""
    import onnx
    from onnxruntime.quantization import QuantFormat, quant_pre_process, quantize_static

    model, _, x = resnet
    fp32, int8 = tmp_path / "plain.onnx", tmp_path / "qoperator.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), fp32, dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    assert any(i.name.startswith("onnx::Conv_") for i in onnx.load(fp32).graph.initializer)

    class Reader:
        batches = iter([{"x": x[i : i + 1]} for i in range(8)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))  # as ONNX Runtime's docs have it: shapes inferred, graph optimised
    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QOperator)
    assert "QLinearAdd" in {n.op_type for n in onnx.load(int8).graph.node}
    _check_rows(profile_onnxruntime(int8, x[:1], threads=1, runs=5, warmup_runs=1), model)
