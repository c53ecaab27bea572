"""Exports as executor tasks: parallel warm workers, caching, and failures kept per artifact."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.artifacts import ExportTask, artifact_ready, run_export
from edgebench.cache_files import COMPLETE_MARKER, digest_path
from edgebench.executor.local import LocalExecutor
from edgebench.executor.tasks import call_task
from edgebench.external import artifact_digest, import_artifact
from edgebench.targets import get_target
from edgebench.variants import ExternalSpec, QuantSpec, VariantSpec


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)
    good = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    depthwise = nn.Sequential(nn.Conv2d(1, 4, 1), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Flatten(),
                              nn.Linear(4 * 8 * 8, 3)).eval()
    torch.save(good, tmp_path / "good.pt")
    torch.save(depthwise, tmp_path / "depthwise.pt")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32))
    return tmp_path / "good.pt", tmp_path / "depthwise.pt", tmp_path / "calib.npz"


def _export(tasks: list[ExportTask], log_dir: Path) -> dict[Path, str | None]:
    """Artifact -> None or the error, each export a task of warm workers logging to ``log_dir``."""
    with LocalExecutor(workers=2, log_dir=log_dir) as executor:
        results = executor.run(call_task(str(t.out_path), "export", run_export, t) for t in tasks)
        return {Path(r.key): None if r.ok else r.error for r in results}


def test_failures_stay_per_artifact_and_successes_are_cached(inputs, tmp_path: Path):
    good, depthwise, calib = inputs
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a pickle")
    cpu, fpga = get_target("local-cpu"), get_target("local-hls4ml-csim")
    out = tmp_path / "artifacts"
    tasks = [
        ExportTask("onnx", cpu, QuantSpec(), good, calib, out / "good.onnx"),
        ExportTask("onnx", cpu, QuantSpec(precision="int8", calibration_samples=8), good, calib, out / "good-int8.onnx"),
        ExportTask("onnx", cpu, QuantSpec(), corrupt, calib, out / "corrupt.onnx"),
    ]
    if importlib.util.find_spec("hls4ml"):  # the fpga extra: a depthwise conv must fail with the layer named
        tasks.append(ExportTask("hls4ml", fpga, QuantSpec(precision="fixed"), depthwise, calib, out / "dw"))
    status = _export(tasks, tmp_path / "logs")
    assert status[out / "good.onnx"] is None and status[out / "good-int8.onnx"] is None
    assert artifact_ready(out / "good.onnx") and not artifact_ready(out / "corrupt.onnx")
    assert "UnpicklingError" in status[out / "corrupt.onnx"] or "pickle" in status[out / "corrupt.onnx"]
    if out / "dw" in status:
        assert "depthwise" in status[out / "dw"] and not (out / "dw" / COMPLETE_MARKER).exists()
    assert list((tmp_path / "logs").glob("*.log"))  # converter output kept, not on the terminal
    # what succeeded is complete and is not built again; what failed left nothing that looks complete
    assert {t.out_path for t in tasks if not artifact_ready(t.out_path)} == {
        t.out_path for t in tasks if status[t.out_path] is not None}


def test_an_artifact_replaced_in_the_cache_is_exported_again_not_measured(inputs, tmp_path: Path):
    """Another file copied over a cached artifact was measured as the variant (another model's accuracy, stored
    'ok'); its bytes no longer match the digest written at export, so it is not ready and is built again."""
    good, _, calib = inputs
    task = ExportTask("onnx", get_target("local-cpu"), QuantSpec(), good, calib, tmp_path / "a" / "good.onnx")
    built = run_export(task)
    original = built.read_bytes()
    assert artifact_ready(built) and digest_path(built).is_file()
    built.write_bytes(b"another model's bytes")
    assert not artifact_ready(built)
    assert run_export(task).read_bytes() == original and artifact_ready(built)
    digest_path(built).unlink()  # a cache from before digests: trusted as it was
    assert artifact_ready(built)


def test_an_external_copy_damaged_in_the_cache_is_imported_again(tmp_path: Path):
    """The copy of another tool's file had no digest beside it, so a truncated copy was taken as ready and measured;
    now it is not ready, and importing it again restores the user's bytes (leaving no temporary file behind)."""
    source = tmp_path / "theirs.tflite"
    source.write_bytes(bytes(range(256)) * 4)
    external = ExternalSpec(label="theirs", format="tflite", digest=artifact_digest(source), path=str(source))
    spec = VariantSpec(model="tiny_cnn", dataset="synthetic", external=external)
    cached = import_artifact(spec, tmp_path / "artifacts" / "theirs.tflite")
    assert artifact_ready(cached) and digest_path(cached).is_file()
    cached.write_bytes(cached.read_bytes()[:100])
    assert not artifact_ready(cached)
    assert import_artifact(spec, cached).read_bytes() == source.read_bytes() and artifact_ready(cached)
    assert sorted(p.name for p in cached.parent.iterdir()) == ["theirs.tflite", "theirs.tflite.sha256"]


def test_an_int8_onnx_export_quantizes_the_variants_fp32_file_when_it_is_ready(inputs, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch):
    """The fp32 export is most of an int8 one: with the sweep's fp32 file ready, int8 starts from it (the same file
    the exporter would write again); with none ready, it exports the model itself."""
    import edgebench.runtimes.onnxruntime.export as onnx_export

    good, _, calib = inputs
    cpu, int8 = get_target("local-cpu"), QuantSpec(precision="int8", calibration_samples=8)
    fp32 = run_export(ExportTask("onnx", cpu, QuantSpec(), good, calib, tmp_path / "fp32.onnx"))
    exported = run_export(ExportTask("onnx", cpu, int8, good, calib, tmp_path / "exported.onnx"))
    fresh_exports = []
    real_export = onnx_export.export_fp32_onnx
    monkeypatch.setattr(onnx_export, "export_fp32_onnx", lambda *a: fresh_exports.append(a) or real_export(*a))
    from_file = run_export(ExportTask("onnx", cpu, int8, good, calib, tmp_path / "from-file.onnx", fp32_source=fp32))
    assert fresh_exports == [] and from_file.read_bytes() == exported.read_bytes()
    missing = tmp_path / "not-yet.onnx"  # the fp32 export failed or has not run: nothing to wait for
    run_export(ExportTask("onnx", cpu, int8, good, calib, tmp_path / "alone.onnx", fp32_source=missing))
    assert len(fresh_exports) == 1 and (tmp_path / "alone.onnx").read_bytes() == exported.read_bytes()


def test_a_file_an_exporter_writes_beside_its_artifact_lands_beside_the_artifact(tmp_path: Path):
    """TensorRT writes ``<engine>.json`` beside what it was handed, the temporary name: the record was left as an
    orphan '.tmp' file and '<engine>.json' never existed. It moves with the artifact, or goes with a failed one."""
    from edgebench.cache_files import replacing

    out = tmp_path / "m.engine"
    with replacing(out) as tmp:
        tmp.write_bytes(b"engine")
        tmp.with_name(tmp.name + ".json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
    with pytest.raises(RuntimeError), replacing(tmp_path / "n.engine") as tmp:
        tmp.write_bytes(b"half")
        tmp.with_name(tmp.name + ".json").write_text("{}")
        raise RuntimeError("the build died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]


def _carried(path: Path) -> list[dict]:
    """Every ``edgebench.input`` entry of an ONNX or .tflite file, read with each format's own reader."""
    import json

    if path.suffix == ".onnx":
        import onnx

        return [json.loads(p.value) for p in onnx.load(str(path)).metadata_props if p.key == "edgebench.input"]
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    return [json.loads(model.buffers[m.buffer].data.tobytes()) for m in model.metadata or []
            if m.name == b"edgebench.input"]


@pytest.mark.parametrize(("fmt", "module"), [("onnx", "onnx"), ("tflite", "ai_edge_litert"), ("hls4ml", "hls4ml")])
def test_an_export_carries_what_the_file_must_be_fed(fmt: str, module: str, inputs, tmp_path: Path):
    """ONNX metadata ``edgebench.input`` (as ORT hands it to an application), a .tflite file's metadata, or the
    hls4ml project's ``edgebench.json``; an int8 file quantized from the fp32 one holds it once, not twice."""
    import json

    if not importlib.util.find_spec(module):
        pytest.skip(f"{module} is not installed (its extra)")
    good, _, calib = inputs
    spec = {"layout": "NCHW", "shape": [1, 8, 8], "classes": 3, "normalize": {"mean": [0.25], "std": [0.5],
                                                                              "from": "declared"}}
    if fmt == "hls4ml":
        built = run_export(ExportTask("hls4ml", get_target("local-hls4ml-csim"), QuantSpec(precision="fixed"), good,
                                      calib, tmp_path / "fixed", input_spec=spec))
        assert json.loads((built / "edgebench.json").read_text())["input"] == spec
        return
    target = get_target("local-cpu" if fmt == "onnx" else "local-litert")
    fp32 = run_export(ExportTask(fmt, target, QuantSpec(), good, calib, tmp_path / f"fp32.{fmt}", input_spec=spec))
    int8 = run_export(ExportTask(fmt, target, QuantSpec(precision="int8", calibration_samples=8), good, calib,
                                 tmp_path / f"int8.{fmt}", fp32_source=fp32, input_spec=spec))
    for path in (fp32, int8):
        assert _carried(path) == [spec]
        assert artifact_ready(path)  # written before its digest: the cache takes it as it is
