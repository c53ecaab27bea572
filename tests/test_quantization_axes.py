"""FPGA points on honest axes, fp16 where runtimes have it, and the report's quantization panel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from edgebench.config import Experiment
from edgebench.plan import plan_fp32_variants, plan_jobs
from edgebench.report.quantization import quant_method, quantization_rows
from edgebench.runtimes.base import BackendSettings
from edgebench.runtimes.openvino.compile import compile_config
from edgebench.store.metrics import METRICS, fpga_cost_metric
from edgebench.targets import get_target


def test_csim_fronts_use_counted_bops_then_synthesised_cycles() -> None:
    cpu = pd.DataFrame({"p50_ms": [1.0, 2.0], "bops": [None, None]})
    csim = pd.DataFrame({"p50_ms": [8.3, 4.1], "bops": [1e8, 4e7], "fpga_latency_cycles": [None, None]})
    synthesised = csim.assign(fpga_latency_cycles=[120, 80])
    assert fpga_cost_metric(cpu) is METRICS["latency"]
    assert fpga_cost_metric(csim) is METRICS["bops"]  # host C-sim time is no FPGA latency
    assert fpga_cost_metric(synthesised) is METRICS["fpga_latency"]
    assert fpga_cost_metric(pd.concat([cpu, csim])) is METRICS["latency"]  # a mixed panel keeps latency


def test_openvino_fp16_is_the_fp32_onnx_under_the_f16_hint() -> None:
    exp = Experiment(pruning={"criteria": []}, quantization={"precisions": ["fp32", "fp16"]}, targets=["local-openvino"])
    jobs, _ = plan_jobs(exp, plan_fp32_variants(exp), [(s, get_target(s.name)) for s in exp.targets])
    fp16 = [j for j in jobs if j.variant.quant.precision == "fp16"]
    assert len(fp16) == 1 and fp16[0].export_quant.precision == "fp32"
    assert compile_config(BackendSettings(precision="fp16"))["INFERENCE_PRECISION_HINT"] == "f16"
    assert compile_config(BackendSettings(precision="int8"))["INFERENCE_PRECISION_HINT"] == "f32"


def test_panel_rows_name_method_bits_and_drop() -> None:
    def spec(**quant: object) -> dict:
        return {"quant": {"precision": "fp32", **quant}}

    assert quant_method(spec(precision="int8", calibrator="minmax")) == ("PTQ", 8)
    assert quant_method(spec(precision="fixed", qat={"weight_bits": 4})) == ("QAT", 4)
    assert quant_method(spec(precision="fixed", fixed_point="ap_fixed<16,6>")) == ("PTQ", 16)
    assert quant_method(spec(precision="int8", max_drop=0.005)) == ("mixed", 8)
    ok = pd.DataFrame({
        "target": ["cpu"] * 3, "backend": ["ort"] * 3, "label": ["b/fp32", "b/int8", "b/int8-qat-w8a8"],
        "spec": [spec(), spec(precision="int8"), spec(precision="int8", qat={"weight_bits": 8})],
        "accuracy": [0.98, 0.96, 0.975], "bops": [np.nan] * 3, "fpga_multipliers": [np.nan] * 3, "details": [{}] * 3,
    })
    rows = quantization_rows(ok).set_index("label")
    assert abs(rows.loc["b/int8", "drop_pt"] - 2.0) < 1e-9
    assert abs(rows.loc["b/int8-qat-w8a8", "drop_pt"] - 0.5) < 1e-9
