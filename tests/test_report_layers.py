"""The report's per-layer section from real ORT profiles of a baseline and its 50 % L1 variant in a real store."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import torch
from store_fixtures import MACHINE

from edgebench.job import JobResult
from edgebench.models import create_model
from edgebench.profile.table import not_available
from edgebench.prune import create_criterion, prune_model
from edgebench.report import render_report
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx
from edgebench.runtimes.onnxruntime.profile import profile_onnxruntime
from edgebench.store import Store
from edgebench.store.record import MeasurementRecord
from edgebench.variants import PruneSpec, VariantSpec

SHAPE = (3, 16, 16)


def test_report_shows_time_share_vs_macs_share_for_baseline_and_pruned(tmp_path: Path) -> None:
    torch.manual_seed(0)
    base_model = create_model("resnet56_cifar", num_classes=10, in_channels=3, depth=8).eval()
    pruned_model = copy.deepcopy(base_model)
    prune_model(pruned_model, create_criterion("l1"), 0.5, torch.randn(1, *SHAPE))
    base_spec = VariantSpec(model="resnet56_cifar", dataset="cifar10")
    pruned_spec = base_spec.model_copy(update={"prune": PruneSpec(criterion="l1", ratio=0.5)})
    x = np.random.default_rng(0).standard_normal((1, *SHAPE)).astype(np.float32)

    store = Store.open(tmp_path / "results.db")
    run_id = store.start_run("layers", {}, "h", MACHINE)
    for spec, model in ((base_spec, base_model), (pruned_spec, pruned_model)):
        path = tmp_path / f"{spec.id}.onnx"
        export_fp32_onnx(model, torch.from_numpy(x), path)
        profile = profile_onnxruntime(path, x, threads=1, runs=10, warmup_runs=2)
        store.upsert_variant(spec.id, spec.model_dump(mode="json"), spec.label, None, {})
        for target, backend, recorded in (("local-cpu", "onnxruntime", profile),
                                          ("local-litert", "litert", not_available("litert", "no Python profiler"))):
            result = JobResult(job_id="j", status="ok", accuracy=0.5, latency_ms={"p50": profile.run_ms},
                               layer_profile=recorded.to_dict())
            store.add_measurement(MeasurementRecord(run_id, f"{spec.id}-{target}", spec.id, target, backend, result,
                                                    settings={"precision": "fp32"}))
    page = render_report(store, run_id, tmp_path / "report").read_text()
    store.close()

    assert "Where the time goes, per layer" in page
    section = page[page.index("Where the time goes"):]
    assert "baseline/fp32 vs l1-0.5-while_training/fp32" in section
    rows = re.findall(r"<tr><td class=l>([\w.]+)</td><td class=l>(Conv|Gemm)</td>((?:<td>[^<]*</td>){6})", section)
    layers = {name for name, _, _ in rows}
    assert {"stem.0", "stages.0.conv1", "stages.2.conv2", "fc"} <= layers
    cells = dict((name, re.findall(r"<td>([^<]*)</td>", rest)) for name, _, rest in rows)
    assert cells["stages.0.conv1"][4] == "25%"  # MACs kept is exact (half the inputs x half the filters)
    assert all(c.endswith("%") for c in cells["stages.0.conv1"])  # shares and time kept are measured
    assert "Per-layer profile not available: no Python profiler" in section  # LiteRT says why
    # each side's non-compute share, or why there is none (a bare dash had stood where kernels outlasted the p50)
    assert re.search(r"Not conv/gemm kernel time: baseline: (\d+\.\d% of|none of) the timed p50 \(", section)
