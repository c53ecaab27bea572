"""The CLI: one clear line for bad input (no traceback), and the commands that need no training."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from edgebench.cli import app
from edgebench.measure.speed_probe import TOLERANCE_ENV
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args))


def test_every_command_has_help():
    for command in ("run", "variants", "bench", "profile", "report", "compare", "history", "targets", "doctor", "export"):
        result = _run(command, "--help")
        assert result.exit_code == 0, (command, result.output)
        assert "Usage" in result.output


def test_wrong_field_is_one_line_without_traceback(tmp_path: Path):
    exp = tmp_path / "exp.yaml"
    exp.write_text("training: {epochs: 3, lr: fast}\n")
    result = _run("run", str(exp))
    assert result.exit_code == 2
    assert "training.lr" in result.output and "valid number" in result.output
    assert "Traceback" not in result.output


def test_missing_dataset_path_names_the_path(tmp_path: Path):
    exp = tmp_path / "exp.yaml"
    missing = tmp_path / "nowhere" / "cifar-10-batches-py"
    (tmp_path / "kept").mkdir()  # a directory that was there before stays, even empty
    exp.write_text(f"dataset: {{name: cifar10, kwargs: {{path: '{missing}'}}}}\nrun: {{workdir: '{tmp_path}/runs/c10'}}\n"
                   f"report: {{dir: '{tmp_path}/kept/report'}}\n")
    result = _run("run", str(exp))
    assert result.exit_code == 2
    assert str(missing) in result.output.replace("\n", "") and "Traceback" not in result.output
    # refused before any work: the run's and the report's directories it had made are gone again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml", "kept"] and not any((tmp_path / "kept").iterdir())


def test_variants_lists_ids_and_lineage():
    """The variants the experiment's targets measure: the FPGA target takes only L1's fixed point; QAT settings are
    variants of their own."""
    result = _run("variants")
    assert result.exit_code == 0
    for label in ("baseline/fp32", "l1-0.5-while_training/int8", "l1-0.8-while_training/fixed",
                  "random-0.8-while_training/int8"):
        assert label in result.output
    assert "random-0.8-while_training/fixed" not in result.output
    from edgebench.config import DEFAULT_EXPERIMENT

    qat = _run("variants", str(DEFAULT_EXPERIMENT.parent / "qat_digits.yaml"))
    assert qat.exit_code == 0 and "l1-0.5-while_training/int8-qat-w8a8" in qat.output


def test_bench_measures_an_existing_onnx_file(tmp_path: Path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    path = tmp_path / "m.onnx"
    export_fp32_onnx(model, torch.zeros(1, 1, 8, 8), path)
    result = _run("bench", str(path), "--input-shape", "1,8,8", "--min-time-s", "0.05")
    assert result.exit_code == 0, result.output
    assert "p50 ms" in result.output and "m.onnx on onnxruntime" in result.output
    assert re.search(r"p50 interval \(95%\): \[[0-9.e-]+, [0-9.e-]+\] ms; window ended by (precision|max_time)",
                     result.output)
    assert "the precision of this window's runs: another run of the same file lands further off" in " ".join(
        result.output.split())
    # by hand: conv 4x1x3x3 + 4 and linear 3x256 + 3 parameters; 4*64*9 + 256*3 MACs
    assert "counted from the graph: 811 parameters, 3,072 MACs per image" in result.output
    inferred = _run("bench", str(path), "--min-time-s", "0.05")  # the input shape read off the model: random input
    assert inferred.exit_code == 0 and "p50 ms" in inferred.output and "accuracy" not in inferred.output
    upper = path.rename(tmp_path / "M.ONNX")  # a Windows share's or a zip's name: "none of the backends reads M.ONNX"
    shouted = _run("bench", str(upper), "--min-time-s", "0.05")
    assert shouted.exit_code == 0 and "M.ONNX on onnxruntime" in shouted.output, shouted.output
    assert "811 parameters, 3,072 MACs per image" in shouted.output
    path = upper.rename(path)
    data = tmp_path / "d.npz"
    x = np.random.default_rng(0).standard_normal((10, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(data, x=x, y=y)
    result = _run("bench", str(path), "--data", str(data), "--min-time-s", "0.05")
    assert result.exit_code == 0 and "accuracy on d.npz: 1.0000 (10 images)" in result.output
    assert "3,072 MACs per image" in result.output  # the image shape read off the data
    with torch.no_grad():
        model[3].bias.fill_(float("nan"))  # every image's scores NaN: accuracy 0.0000 said nothing of why
    export_fp32_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "nan.onnx")
    nan = _run("bench", str(tmp_path / "nan.onnx"), "--data", str(data), "--min-time-s", "0.05")
    assert "accuracy on d.npz: 0.0000 (10 images)" in nan.output
    assert "overflow: 10 of 10 images gave NaN or inf outputs, counted as wrong" in nan.output


def test_bench_says_when_its_window_was_disturbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A busy machine flagged the window (stored for `run`), while bench printed its p50 as if the window was quiet.
    A speed tolerance of 0 flags any change of the machine's speed across the window, as a busy host does."""
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    export_fp32_onnx(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval(), torch.zeros(1, 1, 8, 8), path)
    monkeypatch.setenv(TOLERANCE_ENV, "0")
    result = _run("bench", str(path), "--input-shape", "1,8,8", "--min-time-s", "0.05")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())  # on a loaded machine the busy cores are named first
    assert re.search(r"disturbed: (the machine's speed changed|other processes kept [\d.]+ cores busy) during its "
                     "timed window", shown), shown


def test_a_tail_interval_far_from_symmetric_is_shown_by_its_ends():
    from edgebench.cli.run import _with_interval

    assert _with_interval(0.0630, (0.0610, 9.8)) == "0.06300 [0.061, 9.8]"  # was "0.0630 ±15460.32%"
    assert _with_interval(0.0200, (0.0199, 0.0202)) == "0.02000 ±1.00%"
    assert _with_interval(0.005748, (0.005747, 0.005749)) == "0.005748 ±0.02%"  # was 0.0057: 0.8 % off
    assert _with_interval(12.345678, None) == "12.3457"


def test_bench_corrupt_model_fails_clearly(tmp_path: Path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x00garbage")
    result = _run("bench", str(path), "--input-shape", "1,8,8")
    assert result.exit_code == 2  # bad input: the file is not a model
    assert "broken.onnx: not an ONNX model onnx can read" in result.output and "re-export" in result.output
    tflite = tmp_path / "broken.tflite"
    tflite.write_bytes(b"\x00garbage")
    by_suffix = _run("bench", str(tflite), "--input-shape", "1,8,8")  # no --backend: the one that reads .tflite
    assert by_suffix.exit_code in (2, 3) and ("on litert" in by_suffix.output or "litert" in by_suffix.output)
    unknown = _run("bench", str(path), "--backend", "onnxrt", "--input-shape", "1,8,8")
    assert unknown.exit_code == 2 and "backend 'onnxrt' is not one of" in unknown.output


DYING_BACKENDS = '''
import os
import signal
import time

from edgebench.runtimes.base import BACKENDS
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend


@BACKENDS.register("team_segfaulting")
class Segfaulting(OnnxRuntimeBackend):
    def load(self, artifact, settings):
        os.kill(os.getpid(), signal.SIGSEGV)  # as a runtime's native code dies


@BACKENDS.register("team_hanging")
class Hanging(OnnxRuntimeBackend):
    def load(self, artifact, settings):
        time.sleep(60)
'''


def test_bench_of_a_runtime_that_crashes_or_hangs_exits_4_not_bad_input(tmp_path: Path, monkeypatch):
    """A runtime that died of a signal or hung exited 2, the bad-input status, as if the file were at fault."""
    from edgebench.plugins import PLUGINS_ENV

    monkeypatch.setenv(PLUGINS_ENV, "")  # --plugins sets it for the process; restored after the test
    (tmp_path / "dying.py").write_text(DYING_BACKENDS)
    path = tmp_path / "m.onnx"
    export_fp32_onnx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval(), torch.zeros(1, 1, 8, 8),
                     path)
    common = [str(path), "--input-shape", "1,8,8", "--plugins", str(tmp_path / "dying.py")]
    crashed = _run("bench", *common, "--backend", "team_segfaulting")
    assert crashed.exit_code == 4, crashed.output
    assert "measuring m.onnx on team_segfaulting failed: worker killed by SIGSEGV" in crashed.output
    hung = _run("bench", *common, "--backend", "team_hanging", "--timeout-s", "3")
    assert hung.exit_code == 4 and "failed: timed out after 3 s" in hung.output, hung.output
    assert "bench, profile: --timeout-s" in " ".join(hung.output.split())  # which setting to raise
    measured = _run("bench", *common, "--backend", "onnxruntime")
    assert measured.exit_code == 0, measured.output  # the same file on a runtime that works


def test_ctrl_c_exits_130_on_every_command(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgebench.doctor.list_targets", interrupted)
    result = _run("targets")
    assert result.exit_code == 130 and "interrupted" in result.output


def test_run_whose_every_job_failed_exits_4_and_keeps_the_errors(tmp_path: Path):
    import yaml

    from edgebench.store import Store

    target = tmp_path / "ort.yaml"
    target.write_text(yaml.safe_dump({"backends": ["onnxruntime"]}))
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "doomed", "training": {"epochs": 1},
        "pruning": {"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0]},
        "quantization": {"precisions": ["fp32"]}, "targets": [str(target)],
        "run": {"workdir": str(tmp_path / "runs"), "job_timeout_s": 0.001},  # no measurement finishes in 1 ms
        "report": {"dir": str(tmp_path / "report")},
    }))
    result = _run("run", str(exp))
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    assert "measured 0 jobs, reused 0 stored, failed 2" in result.output
    assert "Pareto-optimal variants" not in result.output  # an empty front table said nothing
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: every job of run ") and "; 2 kept in the store): nothing was measured" in last
    with Store.open(f"sqlite:///{tmp_path / 'runs' / 'results.db'}") as store:
        df = store.measurements(store.runs()["id"].iloc[0])
    assert len(df) == 2 and set(df["status"]) == {"failed"} and df["error"].str.contains("timed out").all()
    assert sorted(df["label"]) == ["baseline/fp32", "l1-0.5-while_training-sensitivity/fp32"]  # by label, not id


_CONSOLE_SCRIPT = '''import sys
from edgebench.cli import app
if __name__ == "__main__":
    app(["targets"], standalone_mode=False)
    from executor_tasks import imported
    from edgebench.executor.base import Task
    from edgebench.executor.local import LocalExecutor
    with LocalExecutor(workers=1) as executor:
        for result in executor.run([Task(key="probe", kind="export", fn=imported,
                                         args=("edgebench.cli", "pandas", "scipy", "typer"))]):
            print(sorted(name for name, done in (result.value or {}).items() if done), result.error)
'''


def test_workers_of_the_console_script_do_not_import_the_cli(tmp_path: Path) -> None:
    """A spawned worker imports the driver's main module; the console script's (``from edgebench.cli import app``)
    cost each worker 2 s of typer, pandas and scipy imports, and each measurement about 50 MiB of peak RSS."""
    script = tmp_path / "edgebench_script.py"  # what pip writes as bin/edgebench, run as the main module
    script.write_text(_CONSOLE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[] None"


def _tiny_experiment(tmp_path: Path) -> Path:
    import yaml

    exp = tmp_path / "tiny.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tiny", "training": {"epochs": 1}, "pruning": {"criteria": []},
        "quantization": {"precisions": ["fp32"]}, "targets": ["local-cpu"],
        "measurement": {"warmup_iters": 2, "min_iters": 10, "min_time_s": 0.0, "precision": None},  # fixed windows
        "run": {"workdir": str(tmp_path / "runs")}, "report": {"dir": str(tmp_path / "report")},
    }))
    return exp


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    """A write that meets a full disk (here the run's first file) is the path and the reason, exit 2, no traceback."""
    import errno

    import edgebench.pipeline

    def full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "eval.npz"))

    monkeypatch.setattr(edgebench.pipeline, "write_eval_data", full)
    result = _run("run", str(_tiny_experiment(tmp_path)))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: cannot write {tmp_path / 'runs' / 'eval.npz'}: No space left on device; free some space or choose "
        "another path (run.workdir, report.dir, --out)")


def test_ctrl_c_during_the_report_says_the_run_is_stored_and_how_to_render_it(tmp_path: Path, monkeypatch) -> None:
    """Every job is stored and the run finished before the report: the same command would measure a new run, so the
    line gives the report command instead."""
    import edgebench.report
    from edgebench.store import Store

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(edgebench.report, "render_report", interrupted)
    result = _run("run", str(_tiny_experiment(tmp_path)))
    assert result.exit_code == 130, result.output
    with Store.open(tmp_path / "runs" / "results.db") as store:
        run = store.runs().iloc[0]
    assert run["finished_at"] is not None
    assert result.output.strip().splitlines()[-1] == (
        f"interrupted while rendering the report: run {run['id']} is stored in full; render it with: edgebench "
        f"report --store {tmp_path / 'runs' / 'results.db'} --run {run['id']}")


def test_jobs_that_failed_for_one_reason_are_listed_once():
    from edgebench.cli.run import grouped_failures

    failed = [f"{label} on local-litert/litert: RuntimeError: Lowering not found" for label in "abcde"]
    failed.append("external:theirs/fp32 on local-cpu/onnxruntime: ArtifactError: cannot load")
    assert grouped_failures(failed) == [
        "5 jobs (a on local-litert/litert; b on local-litert/litert; c on local-litert/litert and 2 more): "
        "RuntimeError: Lowering not found",
        "external:theirs/fp32 on local-cpu/onnxruntime: ArtifactError: cannot load",
    ]


def test_a_variant_whose_build_failed_is_listed_by_its_label(tmp_path: Path):
    """Its jobs fail without a model to measure; they are stored under the variant's label, not a bare id. (The
    criterion breaks only in the build's worker process: the driver's check before training would refuse it.)"""
    import yaml

    from edgebench.store import Store

    (tmp_path / "boom.py").write_text(
        "import multiprocessing\n"
        "from edgebench.prune.criteria import CRITERIA\nfrom edgebench.prune.criteria.magnitude import L1Norm\n\n"
        "@CRITERIA.register('boom')\nclass Boom(L1Norm):\n    def module_scores(self, module, role):\n"
        "        if multiprocessing.parent_process() is not None:\n"
        "            raise RuntimeError('the team criterion broke')\n"
        "        return super().module_scores(module, role)\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "boom", "plugins": ["boom.py"], "training": {"epochs": 1},
        "pruning": {"criteria": ["boom"], "ratios": [0.5], "prune_epochs": [0], "scope": "layer"},
        "quantization": {"precisions": ["fp32"]}, "targets": ["local-cpu"],
        "measurement": {"warmup_iters": 1, "min_iters": 5, "min_time_s": 0.0, "precision": None},
        "run": {"workdir": str(tmp_path / "runs")}, "report": {"dir": str(tmp_path / "report")},
    }))
    result = _run("run", str(exp), "--no-report")  # the report is not read here: rendered later, from the store
    assert result.exit_code == 0 and "the team criterion broke" in result.output, result.output
    with Store.open(f"sqlite:///{tmp_path / 'runs' / 'results.db'}") as store:
        run_id = store.runs()["id"].iloc[0]
        df = store.measurements(run_id)
    failed = df[df["status"] == "failed"]
    assert len(failed) == 2 and set(failed["label"]) == {"boom-0.5-while_training/fp32"}  # torch and onnxruntime
    assert not (tmp_path / "report").exists()  # not even the empty folder the report's check once made
    command = f"edgebench report --store {tmp_path / 'runs' / 'results.db'} --run {run_id} --out {tmp_path / 'report'}"
    assert result.output.strip().splitlines()[-1] == f"report: not rendered; render it with: {command}"
    rendered = _run(*command.split()[1:])
    assert rendered.exit_code == 0 and (tmp_path / "report" / "index.html").is_file(), rendered.output


def test_a_run_says_how_many_timed_windows_were_disturbed_and_marks_them() -> None:
    """A measurement whose window another process's CPU use disturbed is stored and shown, never silently: the
    summary counts such windows and the Pareto table marks their p50."""
    import pandas as pd

    from edgebench.report.run_notes import _disturbed

    busy = {"contention": {"flagged": True, "other_cores": 1.44}}
    df = pd.DataFrame({"status": ["ok", "ok", "failed"], "details": [busy, {}, {}]})
    text = " ".join(map(str, _disturbed(df)))
    assert "disturbed: 1 of 2 measurements' timed windows (e.g. other processes kept 1.44 cores busy during its " \
           "timed window)" in text
    assert _disturbed(df.iloc[1:]) == []


def test_a_run_whose_baseline_never_learned_says_so() -> None:
    """Every variant of a run whose baseline sat at 0.250 on a 4-class test split read 0.250 too, and nothing said
    the model had learned nothing. The bar, by hand: 50 of 200 test images in the largest class, 0.25 + 2 *
    sqrt(0.25 * 0.75 / 200) = 0.25 + 0.0612 = 0.3112."""
    import pandas as pd

    from edgebench.report.run_notes import _at_chance

    def run(accuracies: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"status": ["ok"] * len(accuracies) + ["ok"], "kind": ["baseline"] * len(accuracies)
                             + ["structured"], "accuracy": [*accuracies, 0.9], "n_eval": [200.0] * (len(accuracies) + 1),
                             "label": [f"baseline/p{i}" for i in range(len(accuracies))] + ["l1-0.5/fp32"],
                             "target": ["local-cpu"] * (len(accuracies) + 1),
                             "backend": ["torch"] * (len(accuracies) + 1)})

    text = " ".join(map(str, _at_chance(run([0.25, 0.31]), 0.25)))
    assert text.startswith("chance: the baseline's best accuracy, 0.310 (baseline/p1 on local-cpu/torch), is no "
                           "better than always answering the test split's most common class (0.250 of 200 images)")
    assert _at_chance(run([0.25, 0.32]), 0.25) == []  # above 0.3112: learned something
    assert _at_chance(run([0.25]), None) == []  # a run stored before the chance level was recorded
    assert _at_chance(run([]), 0.25) == []  # no baseline measured (a pruned variant's 0.9 is no baseline)


def test_a_float_artifact_that_does_not_compute_its_model_is_named() -> None:
    """A channels-last model's LiteRT file scored chance with logits 1.23 off PyTorch's, and the run said nothing.
    By hand, the bars are 1 % (fp32) and 5 % (fp16) of the larger of 1 and the reference's largest |logit|: fp32
    1.23 off logits up to 3.0 is past 0.03; fp16 0.04 off logits up to 0.5 is within 0.05, 0.06 is past it; int8
    is not judged (its rounding is the quantization), nor a measurement stored without the scale, nor one whose
    outputs overflowed (the overflow note names it)."""
    import pandas as pd

    from edgebench.report.run_notes import _not_the_model

    rows = [("a/fp32", "fp32", 1.23, 3.0), ("b/fp32", "fp32", 2e-7, 3.0), ("c/fp16", "fp16", 0.04, 0.5),
            ("d/fp16", "fp16", 0.06, 0.5), ("e/int8", "int8", 0.5, 0.5), ("f/fp32", "fp32", 1.0, None),
            ("g/fp16", "fp16", float("inf"), 0.5)]
    details = [{} if r[3] is None else {"reference_max_abs": r[3]} for r in rows]
    details[-1]["non_finite_outputs"] = 4  # overflowed: the overflow note's, not this one's
    df = pd.DataFrame({"status": ["ok"] * len(rows), "label": [r[0] for r in rows], "precision": [r[1] for r in rows],
                       "max_abs_diff": [r[2] for r in rows], "target": ["local-litert"] * len(rows),
                       "backend": ["litert"] * len(rows), "details": details})
    assert list(map(str, _not_the_model(df))) == [
        "not the model: 2 float measurements' outputs differ from their PyTorch model's by more than rounding explains "
        "(a/fp32 on local-litert/litert: 1.23 off logits up to 3; d/fp16 on local-litert/litert: 0.06 off logits up to "
        "0.5): the runtime ran another function (an export or conversion error), so their accuracy and latency are not "
        "the model's"]
    assert _not_the_model(df.iloc[[1, 2, 4, 5, 6]]) == []


def test_a_run_names_the_measurements_whose_outputs_overflowed() -> None:
    """NaN/inf logits (counted as wrong) and hls4ml tensors past the fixed-point range are said in the summary, not
    only in a worker log and the stored details."""
    import pandas as pd

    from edgebench.report.run_notes import _overflow

    wrapped = {"hls4ml": {"precision": "ap_fixed<8,3>", "overflow": ["conv1 reaches 9.2", "add reaches 5"]}}
    df = pd.DataFrame({"status": ["ok", "ok", "ok", "ok"], "label": ["a/fp16", "b/fixed", "c/fp32", "d/fp32"],
                       "target": ["local-cpu", "local-hls4ml-csim", "local-cpu", "local-cpu"],
                       "backend": ["torch", "hls4ml", "torch", "torch"], "n_eval": [297.0] * 4,
                       "details": [{"non_finite_outputs": 297}, wrapped, {}, {"non_finite_outputs": 3}]})
    text = " ".join(map(str, _overflow(df)))
    assert "overflow: a/fp16 on local-cpu/torch: 297 of 297 images gave NaN or inf outputs, counted as wrong" in text
    assert "overflow: b/fixed on local-hls4ml-csim/hls4ml: 2 tensors leave their fixed-point type (ap_fixed<8,3> " \
           "where hls4ml did not widen it) on the calibration images (e.g. conv1 reaches 9.2)" in text
    assert "c/fp32" not in text
    assert "d/fp32 on local-cpu/torch: 3 of 297 images gave NaN or inf outputs, counted as wrong (the model or " \
           "runtime computes NaN or inf" in text  # not fp16's advice for an fp32 model


def test_a_run_names_the_measurements_whose_energy_reading_was_not_kept() -> None:
    """A plug-in meter's unlabelled reading left energy empty with the reason in energy_note alone; the summary, the
    report and Results.notes() were silent (a meter that raised was only a worker warning)."""
    import pandas as pd

    from edgebench.report.run_notes import _energy_not_kept

    df = pd.DataFrame({"status": ["ok", "ok", "ok", "failed"], "label": ["a/fp32", "b/fp32", "c/fp32", "d/fp32"],
                       "target": ["local-cpu"] * 4, "backend": ["onnxruntime"] * 4,
                       "energy_j_per_inference": [None, 2e-6, None, None],
                       "energy_note": ["energy meter w gave 0.2 J with source 'watts', not 'measured:<counter>' or "
                                       "'estimated:<model>': not kept", "from a TDP model", None, "meter broke"]})
    assert list(map(str, _energy_not_kept(df))) == [
        "energy: 1 of 3 measurements have no energy figure: energy meter w gave 0.2 J with source 'watts', not "
        "'measured:<counter>' or 'estimated:<model>': not kept (a/fp32 on local-cpu/onnxruntime)"]
    assert _energy_not_kept(df.iloc[[1, 2]]) == []  # a kept reading's note, and no meter at all


def test_a_run_names_measurements_with_more_threads_than_their_workers_cores() -> None:
    """threads: 8 on a worker that may run on 2 cores was measured and stored without a word; the threads take turns
    there. Counted per target/backend and thread count; a measurement within its cores, one stored without the
    contention record, and a failed one are not named."""
    import pandas as pd

    from edgebench.report.run_notes import _oversubscribed

    two, four = {"contention": {"cores": [0, 1]}}, {"contention": {"cores": [0, 1, 2, 3]}}
    df = pd.DataFrame({"status": ["ok", "ok", "ok", "ok", "failed"], "label": ["a/fp32", "b/fp32", "c/fp32", "d/fp32", "e/fp32"],
                       "target": ["board", "board", "board", "board", "board"], "threads": [8, 8, 4, 8, 8],
                       "backend": ["onnxruntime", "onnxruntime", "onnxruntime", "torch", "torch"],
                       "details": [two, two, four, {}, two]})
    assert list(map(str, _oversubscribed(df))) == [
        "threads: 2 measurements asked for more threads than the cores their worker could use (threads 8 on 2 cores: "
        "board/onnxruntime (2)): the threads took turns on the cores, so their latency includes the waiting; set the "
        "target's threads to at most its cores"]
    assert _oversubscribed(df.iloc[[2, 3, 4]]) == []


def test_a_run_names_quantized_measurements_slower_than_their_float_model() -> None:
    """digits' int8 LiteRT files ran at twice their fp32 files' p50 and nothing said so. Named only where the int8
    p50's interval lies above the fp32 one's on the same target, runtime and settings: a (0.0078 [0.0077, 0.0079]
    against 0.0035 [0.0034, 0.0036]) is; b's intervals overlap; c's float model ran with 2 threads; d's runtime
    measured no fp32."""
    import pandas as pd

    rows = [  # label, variant, parent, backend, threads, precision, p50, low, high
        ("a/fp32", "fa", "base", "litert", 1, "fp32", 0.0035, 0.0034, 0.0036),
        ("a/int8", "qa", "fa", "litert", 1, "int8", 0.0078, 0.0077, 0.0079),
        ("b/fp32", "fb", "base", "litert", 1, "fp32", 0.0100, 0.0090, 0.0110),
        ("b/int8", "qb", "fb", "litert", 1, "int8", 0.0105, 0.0100, 0.0111),
        ("c/fp32", "fc", "base", "litert", 2, "fp32", 0.0035, 0.0034, 0.0036),
        ("c/int8", "qc", "fc", "litert", 1, "int8", 0.0078, 0.0077, 0.0079),
        ("d/int8", "qd", "fd", "onnxruntime", 1, "int8", 0.0078, 0.0077, 0.0079),
    ]
    df = pd.DataFrame(rows, columns=["label", "variant_id", "parent_id", "backend", "threads", "precision", "p50_ms",
                                     "p50_low_ms", "p50_high_ms"]).assign(status="ok", target="local-litert",
                                                                          batch_size=1, scenario="single_stream")
    from edgebench.report.run_notes import _slower_than_float

    assert list(map(str, _slower_than_float(df))) == [
        "precision: 1 of 2 int8 measurements were slower than their fp32 model on the same target and runtime, their "
        "p50 intervals apart (e.g. a/int8 on local-litert/litert: 0.0078 ms against 0.0035 ms): quantizing cost time "
        "there, not saved it"]
    assert _slower_than_float(df.iloc[2:]) == []


def test_a_run_names_a_pruned_variant_that_removed_nothing() -> None:
    """ratio 0.25 at round_to 8 keeps 16 filters (12/8 = 1.5 rounds to 2): the variant is the baseline's model."""
    import pandas as pd

    from edgebench.report.run_notes import _unpruned

    df = pd.DataFrame({"variant_id": ["b", "p", "q", "p8"], "parent_id": [None, "b", "b", "p"],
                       "label": ["baseline/fp32", "l1-0.25/fp32", "l1-0.5/fp32", "l1-0.25/int8"],
                       "kind": ["baseline", "structured", "structured", "structured"], "ratio": [0.0, 0.25, 0.5, 0.25],
                       "precision": ["fp32", "fp32", "fp32", "int8"], "macs": [601600.0, 601600.0, 153344.0, 601600.0]})
    assert list(map(str, _unpruned(df))) == ["pruned nothing: l1-0.25/fp32 kept every filter of its parent (601,600 MACs): ratio 0.25 rounds "
                     "back to each layer's width (see pruning.round_to)"]


def test_a_run_says_which_windows_ended_before_their_rule_was_met() -> None:
    """README: a window that cannot reach the precision times up to max_time_s "and says so"."""
    import pandas as pd

    from edgebench.report.run_notes import _unfinished_windows

    def details(stopped: str, min_iters: int = 20) -> dict:
        return {"window": {"stopped": stopped, "precision": 0.01}, "job": {"measure": {"min_iters": min_iters}}}

    df = pd.DataFrame({"status": ["ok"] * 3, "label": ["a/fp32", "b/fp32", "c/fp32"], "n_samples": [5000, 4, 300],
                       "target": ["local-cpu", "local-openvino", "local-cpu"],
                       "backend": ["onnxruntime", "openvino", "onnxruntime"],
                       "details": [details("max_time"), details("max_time", 50), details("precision")]})
    text = " ".join(map(str, _unfinished_windows(df)))  # each named with its target: one label runs on several
    assert "timing: 2 of 3 timed windows ended before their interval reached measurement.precision: a/fp32 on " \
           "local-cpu/onnxruntime (max_time), b/fp32 on local-openvino/openvino (max_time)" in text
    assert "timing: 1 of 3 timed windows ended by measurement.max_time_s with fewer runs than min_iters: b/fp32 on " \
           "local-openvino/openvino (4 samples)" in text
    assert _unfinished_windows(df.iloc[2:]) == []
    met = df.iloc[:1].assign(details=[{"window": {"stopped": "max_time", "precision": 0.01, "precision_met": True}}])
    assert _unfinished_windows(met) == []  # the cap ended a window that had met the precision (min = max time)
    # min_time_s 15 with the default max_iters: a helper's board windows lasted 6.1 s without a word
    capped = {"window": {"stopped": "max_iters", "precision": None}, "timed_window_s": 6.1,
              "job": {"measure": {"min_iters": 50, "min_time_s": 15.0}}}
    long_enough = {**capped, "timed_window_s": 15.2}
    two = df.iloc[:2].assign(n_samples=[100000, 100000], details=[capped, long_enough])
    assert list(map(str, _unfinished_windows(two))) == [
        "timing: 1 of 2 timed windows ended by measurement.max_iters before min_time_s (raise max_iters for the whole "
        "window): a/fp32 on local-cpu/onnxruntime (6.1 s of 15 s)"]


def test_sigterm_is_an_interrupt_only_while_a_run_runs() -> None:
    """The handler stayed after `run` returned: a notebook's later SIGTERM raised KeyboardInterrupt in other code."""
    import signal

    from edgebench.cli.run import _terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with _terminate_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


def test_python_m_edgebench_runs_the_command_and_its_workers(tmp_path: Path) -> None:
    """`python -m edgebench` had no __main__: the fallback where the console script is not on PATH."""
    import subprocess
    import sys

    import torch
    from torch import nn

    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    path = tmp_path / "tiny.onnx"
    export_fp32_onnx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval(), torch.randn(2, 1, 8, 8),
                     path)
    done = subprocess.run([sys.executable, "-m", "edgebench", "bench", str(path), "--input-shape", "1,8,8",
                           "--min-time-s", "0.05"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and "tiny.onnx on onnxruntime" in done.stdout, done.stdout + done.stderr


def test_bench_reads_a_tflite_files_input_shape_as_an_onnx_one(tmp_path: Path) -> None:
    """README's `edgebench bench ARTIFACT` of the default run's .tflite asked for --input-shape."""
    pytest.importorskip("litert_torch", reason="LiteRT export is the extra 'litert'")
    import numpy as np
    from torch import nn

    from edgebench.runtimes.base import get_exporter
    from edgebench.variants import QuantSpec

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 10, 5)).eval()
    path = get_exporter("tflite").export(model, QuantSpec(), np.zeros((2, 3, 8, 12), np.float32), tmp_path / "m.tflite")
    result = _run("bench", str(path), "--min-time-s", "0.05")
    assert result.exit_code == 0 and "m.tflite on litert" in result.output, result.output
    from edgebench.cli.profile import _tflite_image

    assert _tflite_image(path) == (3, 8, 12)


def test_bench_of_an_ir_without_its_bin_names_the_missing_file(tmp_path: Path) -> None:
    """OpenVINO's own error says only "Check 'm_weights_provider' failed"."""
    ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (CI installs it)")
    onnx_path = tmp_path / "net.onnx"
    torch.onnx.export(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval(),
                      (torch.zeros(1, 1, 8, 8),), onnx_path, dynamo=False)
    ov.save_model(ov.convert_model(str(onnx_path)), str(tmp_path / "ir" / "model.xml"))
    (tmp_path / "ir" / "model.bin").unlink()
    result = _run("bench", str(tmp_path / "ir" / "model.xml"))
    assert result.exit_code == 2
    assert "model.xml: its weights file model.bin is not beside it" in " ".join(result.output.split())
