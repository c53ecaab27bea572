"""Measurement jobs in an isolated worker: real ORT/torch jobs, and a crash or hang becoming a recorded failure."""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.executor.tasks import run_one
from edgebench.job import Job, JobResult, MeasureSettings
from edgebench.measure.energy import METERS, EnergyMeter, EnergyReading
from edgebench.measure.worker import execute, predict_all
from edgebench.runtimes.base import Session, get_exporter
from edgebench.variants import QuantSpec

FAST = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, max_time_s=2.0)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)
    ).eval()


@pytest.fixture()
def eval_files(tmp_path: Path) -> tuple[Path, Path, nn.Module]:
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    y = logits.argmax(1)  # labels = the model's own predictions: fp32 accuracy must be exactly 1
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    np.savez(tmp_path / "ref.npz", logits=logits[:16])
    return tmp_path / "eval.npz", tmp_path / "ref.npz", model


def _job(artifact: Path, eval_npz: Path, ref: Path | None, backend: str) -> Job:
    return Job(job_id="j", variant_id="v", target="t", backend=backend, artifact=str(artifact),
               eval_data=str(eval_npz), reference=str(ref) if ref else None, measure=FAST)


@pytest.mark.parametrize("fmt,backend", [("onnx", "onnxruntime"), ("torch", "torch")])
def test_fp32_job_measures_real_latency_and_matches_pytorch(eval_files, tmp_path, fmt, backend):
    eval_npz, ref, model = eval_files
    exporter = get_exporter(fmt)
    artifact = exporter.export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / f"m{exporter.suffix}")
    result = run_one(_job(artifact, eval_npz, ref, backend), timeout_s=120)
    assert result.status == "ok", result.error
    assert result.accuracy == 1.0
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    # the scale the run's notes read the difference against: the reference logits' largest magnitude
    assert result.details["reference_max_abs"] == pytest.approx(float(np.abs(np.load(ref)["logits"]).max()))
    assert len(result.samples_ns) >= FAST.min_iters
    assert all(isinstance(s, int) and s > 0 for s in result.samples_ns)
    lat = result.latency_ms
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert result.throughput_ips == pytest.approx(1e3 / lat["mean"])
    assert result.peak_rss_mb is not None and result.peak_rss_mb > 10
    assert result.energy_j_per_inference is None and result.energy_source is None


def test_the_timed_batch_is_a_writable_array(eval_files, recwarn):
    """The timed batch was read into a read-only buffer: PyTorch warned that it "does not support non-writable
    tensors" in every torch measurement's log (15-50 lines a log in a sweep)."""
    from edgebench.measure.worker import _leading_images

    eval_npz, _, _ = eval_files
    batch = _leading_images(str(eval_npz), 4)
    assert batch.flags.writeable and batch.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(batch, np.load(eval_npz)["x"][:4])
    torch.from_numpy(batch)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_peak_rss_is_the_jobs_not_its_energy_meters(eval_files, tmp_path):
    """The peak was read after the energy window: a meter holding 300 MiB put 300 MiB on the job's memory figure."""
    eval_npz, ref, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    plain = run_one(_job(artifact, eval_npz, ref, "onnxruntime"), timeout_s=120)
    metered = run_one(_job(artifact, eval_npz, ref, "onnxruntime").model_copy(
        update={"energy": {"type": "executor_tasks:GreedyMeter"}}), timeout_s=120)
    assert plain.status == metered.status == "ok", (plain.error, metered.error)
    assert metered.energy_source == "estimated:constant"  # the meter ran, inside the job
    assert metered.peak_rss_mb < plain.peak_rss_mb + 100, (plain.peak_rss_mb, metered.peak_rss_mb)


def test_int8_onnx_is_smaller_and_close(eval_files, tmp_path):
    eval_npz, ref, model = eval_files
    x = np.load(eval_npz)["x"]
    exporter = get_exporter("onnx")
    fp32 = exporter.export(model, QuantSpec(), x, tmp_path / "fp32.onnx")
    int8 = exporter.export(model, QuantSpec(precision="int8", calibration_samples=32), x, tmp_path / "int8.onnx")
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    result = run_one(_job(int8, eval_npz, ref, "onnxruntime"), timeout_s=120)
    assert result.status == "ok", result.error
    assert 0 < result.max_abs_diff < 0.5  # quantized: changed, but close
    assert result.accuracy >= 0.8
    assert fp32.stat().st_size > 0


def test_images_whose_outputs_overflow_are_wrong_not_class_0(eval_files, tmp_path):
    """Inputs past fp16's 65504 make the fp16 model's logits inf/NaN; argmax of a NaN row is 0, which scored every
    label-0 image as right. They count as wrong now, how many is stored, and the output error is inf, not null."""
    _, _, model = eval_files
    x = np.random.default_rng(1).standard_normal((40, 3, 8, 8)).astype(np.float32) * 1e5
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()  # finite in fp32
    y = np.arange(40) % 4  # every class, class 0 included
    np.savez(tmp_path / "big.npz", x=x, y=y)
    np.savez(tmp_path / "big-ref.npz", logits=logits[:16])
    artifact = get_exporter("torch").export(model, QuantSpec(precision="fp16"), x, tmp_path / "m.pt")
    result = run_one(_job(artifact, tmp_path / "big.npz", tmp_path / "big-ref.npz", "torch"), timeout_s=120)
    assert result.status == "ok", result.error
    bad = result.details["non_finite_outputs"]
    assert 0 < bad <= 40 and result.max_abs_diff == float("inf")
    assert result.accuracy <= (40 - bad) / 40
    # as an SSH worker's result.json carries it: inf, not null ("no output error")
    assert JobResult.model_validate_json(result.model_dump_json()).max_abs_diff == float("inf")


class _Crash:
    def __reduce__(self):
        return (os._exit, (7,))


class _Hang:
    def __reduce__(self):
        return (time.sleep, (60,))


def test_crash_becomes_recorded_failure(eval_files, tmp_path):
    eval_npz, _, _ = eval_files
    artifact = tmp_path / "crash.pt"
    artifact.write_bytes(pickle.dumps(_Crash()))  # unpickling it kills the worker process
    result = run_one(_job(artifact, eval_npz, None, "torch"), timeout_s=60)
    assert result.status == "failed"
    assert "exited with code 7" in result.error


def test_hang_becomes_timeout_failure(eval_files, tmp_path):
    eval_npz, _, _ = eval_files
    artifact = tmp_path / "hang.pt"
    artifact.write_bytes(pickle.dumps(_Hang()))
    start = time.monotonic()
    # the worker starts (torch) in ~2 s, then the 'model' sleeps 60 s: 3 s still ends in the hang
    result = run_one(_job(artifact, eval_npz, None, "torch"), timeout_s=3)
    assert time.monotonic() - start < 30
    assert result.status == "failed" and "timed out after 3 s" in result.error


def test_corrupt_onnx_gives_clear_error(eval_files, tmp_path):
    eval_npz, _, _ = eval_files
    artifact = tmp_path / "bad.onnx"
    artifact.write_bytes(b"not a protobuf")
    result = run_one(_job(artifact, eval_npz, None, "onnxruntime"), timeout_s=60)
    assert result.status == "failed"
    assert "cannot load" in result.error and "re-export" in result.error


def test_energy_from_external_meter_log_is_per_inference_and_labelled(eval_files, tmp_path):
    """A meter log at a constant 5 W: energy per inference = 5 W x window / inferences, idle = 5 W."""
    eval_npz, ref, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    now = time.time()
    log_csv = tmp_path / "meter.csv"
    rows = [f"{now - 5 + 0.1 * i:.3f},5.0" for i in range(1200)]  # 10 Hz for two minutes
    log_csv.write_text("timestamp,power_w\n" + "\n".join(rows) + "\n")
    job = _job(artifact, eval_npz, ref, "onnxruntime").model_copy(
        update={"energy": {"type": "external_csv", "path": str(log_csv), "min_window_s": 0.5}})
    result = run_one(job, timeout_s=120)
    assert result.status == "ok", result.error
    assert result.energy_source == "measured:external-csv"
    assert result.idle_power_w == pytest.approx(5.0, rel=0.02)
    window = result.energy_window
    assert window is not None and window.seconds >= 0.5  # lengthened to the meter's minimum window
    assert result.energy_j_per_inference == pytest.approx(5.0 * window.seconds / window.inferences, rel=0.02)


def test_unreadable_meter_leaves_energy_null_with_reason(eval_files, tmp_path):
    eval_npz, ref, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    job = _job(artifact, eval_npz, ref, "onnxruntime").model_copy(
        update={"energy": {"type": "rapl", "root": str(tmp_path / "no-powercap")}})
    result = run_one(job, timeout_s=120)
    assert result.status == "ok", result.error
    assert result.energy_j_per_inference is None and result.energy_source is None
    assert result.energy_note


def test_offline_scenario_times_batches_and_counts_images(eval_files, tmp_path):
    eval_npz, ref, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    offline = FAST.model_copy(update={"scenario": "offline", "batch_size": 16})
    job = _job(artifact, eval_npz, ref, "onnxruntime").model_copy(update={"measure": offline})
    result = run_one(job, timeout_s=120)
    assert result.status == "ok", result.error
    assert result.batch_size == 16
    assert result.throughput_ips == pytest.approx(16 * 1e3 / result.latency_ms["mean"])
    assert result.accuracy == 1.0 and result.n_eval == 40  # 2 batches of 16 and a padded tail of 8


class _PidStampingSession(Session):
    """Logits that say which process computed them (column 1) beside a function of the input (column 0)."""

    def __init__(self, forkable: bool) -> None:
        self.forkable = forkable

    def run(self, inputs: np.ndarray) -> np.ndarray:
        flat = inputs.reshape(len(inputs), -1).astype(np.float32)
        return np.stack([flat.sum(axis=1), np.full(len(inputs), os.getpid(), dtype=np.float32)], axis=1)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="splitting the accuracy pass needs two cores")
@pytest.mark.parametrize("batch_size", [1, 4])
def test_a_forkable_sessions_accuracy_pass_is_split_over_the_cores_in_order(batch_size: int) -> None:
    x = np.random.default_rng(0).random((37, 1, 3, 3), dtype=np.float32)  # not a multiple of the batch
    split = predict_all(_PidStampingSession(forkable=True), x, batch_size, "stamp")
    alone = predict_all(_PidStampingSession(forkable=False), x, batch_size, "stamp")
    assert split.shape == alone.shape == (37, 2)
    np.testing.assert_array_equal(split[:, 0], alone[:, 0])  # same logits, same order
    assert set(alone[:, 1]) == {os.getpid()}
    assert len(set(split[:, 1])) > 1  # parts scored in other processes, this one scoring the first
    assert split[0, 1] == os.getpid()


class _CrashingInForkSession(_PidStampingSession):
    """Dies by SIGSEGV in any process but the one that loaded it (a C simulation crashing in a forked part)."""

    def __init__(self) -> None:
        super().__init__(forkable=True)
        self.loaded_in = os.getpid()

    def run(self, inputs: np.ndarray) -> np.ndarray:
        if os.getpid() != self.loaded_in:
            faulthandler.disable()  # pytest's stack dump of an intended crash says nothing
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(inputs)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="splitting the accuracy pass needs two cores")
def test_a_part_of_the_accuracy_pass_that_crashes_fails_the_pass_instead_of_hanging_it() -> None:
    with pytest.raises(BrokenProcessPool):
        predict_all(_CrashingInForkSession(), np.zeros((8, 1, 2, 2), dtype=np.float32), 1, "crash")


class _BrokenMeter(EnergyMeter):
    source = "measured:test-counter"

    def start(self) -> None:
        raise RuntimeError("meter broke")

    def stop(self) -> EnergyReading:
        raise AssertionError("never started")


class _UnlabelledMeter(EnergyMeter):
    """Returns joules without saying whether a counter or a model stands behind them."""

    def start(self) -> None:
        pass

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=0.5, seconds=0.1, source=None)


class _BoastingMeter(EnergyMeter):
    """Declares its readings estimated, then labels one measured (a helper's plug-in; it was stored as measured)."""

    source = "estimated:team-model"

    def start(self) -> None:
        pass

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=0.5, seconds=0.1, source="measured:team-model")


class _NegativeMeter(EnergyMeter):
    """A counter read wrongly (a wrapped register, an idle power subtracted twice): less than no energy."""

    source = "measured:test-counter"

    def start(self) -> None:
        pass

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=-0.3, seconds=0.1, source=self.source)


class _StuckMeter(_NegativeMeter):
    """A counter that did not advance over the window (its update period is longer, or it reads another device)."""

    def stop(self) -> EnergyReading:
        return EnergyReading(joules=0.0, seconds=0.1, source=self.source)


class _FloatMeter(_NegativeMeter):
    """A plug-in whose stop() returns its joules as a bare float (Python's "'float' object has no attribute
    'joules'" was the note)."""

    def stop(self) -> EnergyReading:
        return 12.5  # type: ignore[return-value]


class _UnitMeter(_NegativeMeter):
    """A plug-in that wrote its joules with their unit ("unsupported operand type(s) for /: 'str' and 'float'")."""

    def stop(self) -> EnergyReading:
        return EnergyReading(joules="12.5 J", seconds=0.1, source=self.source)  # type: ignore[arg-type]


@pytest.mark.parametrize("meter,note", [(_FloatMeter, "_FloatMeter.stop() returned float; a meter's stop() returns "
                                                      "EnergyReading(joules=float or None, seconds=float"),
                                        (_UnitMeter, "_UnitMeter.stop() returned EnergyReading(joules='12.5 J'): "
                                                     "joules is a number of joules (or None: no energy)"),
                                        (_StuckMeter, "read 0 J over 0.1 s of inference: a counter that did not "
                                                     "advance"),
                                        (_BrokenMeter, "energy meter test-broken-meter failed: RuntimeError: meter broke"),
                                        (_UnlabelledMeter, "gave 0.5 J with source None, not 'measured:<counter>'"),
                                        (_BoastingMeter, "declares its readings estimated (source "
                                                         "'estimated:team-model') and labelled one 'measured:team-model'"),
                                        (_NegativeMeter, "gave -0.3 J: not an amount of energy (NaN, infinite or "
                                                         "negative), not kept")])
def test_a_meter_that_fails_or_does_not_label_its_joules_costs_the_energy_only(eval_files, tmp_path, meter, note):
    name = {_BrokenMeter: "test-broken-meter", _UnlabelledMeter: "test-unlabelled-meter",
            _NegativeMeter: "test-negative-meter", _StuckMeter: "test-stuck-meter",
            _BoastingMeter: "test-boasting-meter", _FloatMeter: "test-float-meter", _UnitMeter: "test-unit-meter"}[meter]
    if name not in METERS.names():
        METERS.register(name)(meter)
    eval_npz, ref, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    job = _job(artifact, eval_npz, ref, "onnxruntime").model_copy(update={"energy": {"type": name}})
    result = execute(job)  # in this process, where the meter is registered
    assert result.status == "ok" and result.accuracy == 1.0 and result.latency_ms["p50"] > 0
    assert result.energy_j_per_inference is None and result.energy_source is None and result.idle_power_w is None
    assert note in result.energy_note


def test_an_accuracy_subset_of_a_class_sorted_test_file_is_spread_over_its_classes(tmp_path: Path) -> None:
    """``accuracy_samples: 10`` took the first 10 images: of a file sorted by class, one class (a stored accuracy
    of 1.0 for a model right on 0.878 of the split, helper's run). The model here predicts class 0 for every
    image: on the 10 of 40 images drawn in proportion (3 classes x 12, then 4 of class 3) it is right 3 times,
    not 10. The reference check still compares the first 16 images, which the subset need not hold."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    x = np.random.default_rng(0).standard_normal((40, 3, 8, 8)).astype(np.float32)
    y = np.array([0] * 12 + [1] * 12 + [2] * 12 + [3] * 4)
    np.savez(tmp_path / "eval.npz", x=x, y=y)
    np.savez(tmp_path / "ref.npz", logits=np.tile([[1.0, 0.0, 0.0, 0.0]], (16, 1)).astype(np.float32))
    artifact = get_exporter("onnx").export(model, QuantSpec(), x, tmp_path / "m.onnx")
    job = _job(artifact, tmp_path / "eval.npz", tmp_path / "ref.npz", "onnxruntime")
    job = job.model_copy(update={"measure": FAST.model_copy(update={"accuracy_samples": 10})})
    result = run_one(job, timeout_s=120)
    assert result.status == "ok", result.error
    assert result.n_eval == 10 and result.accuracy == pytest.approx(0.3)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-6


def test_an_onnx_file_with_float16_inputs_and_outputs_is_fed_and_read_as_it_expects(eval_files, tmp_path):
    """An fp16 file with fp16 I/O (Olive's fp16 pass, onnxconverter's keep_io_types=False) failed on ONNX Runtime:
    'Unexpected input data type. Actual: (tensor(float)), expected: (tensor(float16))'."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    eval_npz, ref, model = eval_files
    fp32 = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "fp32.onnx")
    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=False), str(tmp_path / "io16.onnx"))
    result = run_one(_job(tmp_path / "io16.onnx", eval_npz, ref, "onnxruntime"), timeout_s=120)
    assert result.status == "ok", result.error
    assert result.accuracy >= 0.95 and result.max_abs_diff < 0.05  # fp16 arithmetic against the fp32 reference


def test_a_backend_whose_load_returns_no_session_is_named(eval_files, tmp_path, monkeypatch):
    """A plug-in backend's load() returning None failed with "'NoneType' object has no attribute 'input_dims'"."""
    from edgebench.runtimes.base import BACKENDS
    from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend

    class LoadsNothing(OnnxRuntimeBackend):
        def load(self, artifact, settings):
            return None

    monkeypatch.setitem(BACKENDS._items, "team_loadnone", LoadsNothing)
    eval_npz, _, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"^backend 'team_loadnone' \(class LoadsNothing\) returned None from load\(\); "
                       r"load\(\) must return an edgebench.runtimes.base.Session"):
        execute(_job(artifact, eval_npz, None, "team_loadnone"))


def test_a_session_whose_timed_call_returns_no_callable_is_named(eval_files, tmp_path, monkeypatch):
    """A plug-in's ``timed_call`` returning ``run(batch)``'s logits (read as "calls timed_call(batch)") failed on the
    first timed call with "'numpy.ndarray' object is not callable", naming neither the session nor the fix."""
    from edgebench.runtimes.base import BACKENDS
    from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend, OnnxRuntimeSession
    from edgebench.runtimes.onnxruntime.session import CPU_PROVIDER, create_ort_session

    class RunsInstead(OnnxRuntimeSession):
        def timed_call(self, batch):
            return self.run(batch)  # the batch's logits, not a call of it

    class TeamRuns(OnnxRuntimeBackend):
        def load(self, artifact, settings):
            return RunsInstead(create_ort_session(artifact, settings.threads, [CPU_PROVIDER]), artifact, 1)

    monkeypatch.setitem(BACKENDS._items, "team_runs", TeamRuns)
    eval_npz, _, model = eval_files
    artifact = get_exporter("onnx").export(model, QuantSpec(), np.load(eval_npz)["x"], tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"^session class RunsInstead returned a ndarray from "
                       r"timed_call\(batch\); timed_call must return a zero-argument callable the timed loop calls once "
                       r"per iteration, e\.g\. functools\.partial\(self\.run, batch\)"):
        execute(_job(artifact, eval_npz, None, "team_runs"))
