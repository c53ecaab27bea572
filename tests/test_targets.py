"""Target files: every shipped file validates, wrong fields are named, availability reasons are specific."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgebench.cli.common import friendly_errors
from edgebench.cli.targets import register
from edgebench.doctor import components, target_statuses
from edgebench.errors import ConfigError
from edgebench.executor.runners import SSHRunner, runner_for
from edgebench.runtimes.hls4ml.target import FPGASpec
from edgebench.targets import SHIPPED_TARGETS_DIR, SSHSpec, TargetSpec, get_target, list_targets, load_target_file

SHIPPED = {
    "local-cpu", "local-cuda", "local-litert", "local-hls4ml-csim", "zcu102", "alveo-u250",
    "jetson-orin-nano", "jetson-agx-orin", "jetson-xavier-nx", "jetson-nano", "rpi5",
}


def test_every_shipped_target_validates() -> None:
    files = {p.stem: p for p in SHIPPED_TARGETS_DIR.glob("*.yaml")}
    assert set(files) >= SHIPPED
    for name, path in files.items():
        spec = load_target_file(path)
        assert spec.name == name
        if spec.kind == "ssh":
            assert spec.ssh is not None and spec.ssh.host
        if "hls4ml" in spec.backends:
            assert "fpga" in spec.blocks and spec.precisions == ["fixed"]
    fpga = get_target("zcu102").blocks["fpga"]
    assert isinstance(fpga, FPGASpec) and fpga.part == "xczu9eg-ffvb1156-2-e" and fpga.hls_tool == "vitis-run"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("backends: [onnxruntime]\nthreds: 2\n", "threds: unknown field"),
        ("kind: ssh\nbackends: [onnxruntime]\nssh: {host: h, prot: 22}\n", "ssh.prot: unknown field"),
        ("kind: ssh\nbackends: [onnxruntime]\n", "needs an 'ssh:' block"),
        ("backends: [hls4ml]\n", "needs an 'fpga:' block"),
        ("backends: [hls4ml]\nfpga: {part: x, default_precision: 'float'}\n", "ap_fixed<16,6>"),
        # checked as the experiment's fixed_point is (a prefix check let these through to the conversion)
        ("backends: [hls4ml]\nfpga: {part: x, default_precision: 'ap_fixed<16,6,AP_RNDD>'}\n",
         "fpga.default_precision: rounding mode 'AP_RNDD' is not one of AP_RND"),
        ("backends: [hls4ml]\nfpga: {part: x, default_precision: 'ap_fixed<16>'}\n",
         "fpga.default_precision: not an hls4ml fixed-point type"),
        ("backends: [hls4ml]\nfpga: {part: x, default_precision: 'ap_fixed<0,0>'}\n",
         "fpga.default_precision: a width of 0 bits; Vivado HLS's AP types take 1 to 1024"),
        ("backends: [hls4ml]\nfpga: {part: x, io_type: io_serial}\n", "fpga.io_type"),
        ("backends: [hls4ml]\nfpga: {part: x, clock_period_ns: 0}\n", "fpga.clock_period_ns: Input should be greater than 0"),
        ("backends: [hls4ml]\nfpga: {prat: x}\n", "fpga.prat: unknown field (did you mean 'part'?); allowed: part, "),
        # a runtime's block lists its own fields, not the experiment's (the target file's model does not hold them)
        ("backends: [hls4ml]\nfpga: {part: x, zzz: 1}\n",
         "fpga.zzz: unknown field (check its spelling); allowed: part, board, hls_backend, clock_period_ns"),
        ("backends: [onnxruntime]\ngpu: {arch: sm_87}\n", "gpu: unknown field"),
        ("backends: []\n", "backends"),
        # a plug-in's backend named where no plug-in was loaded: say how one is loaded (was "broken ... remove them")
        ("backends: [onnxruntime, no_such_runtime]\n", "unknown backend 'no_such_runtime' (no plug-in loaded registers "
         "it: an experiment's plugins: list loads one, --plugins FILE for a command that reads no experiment); known: "
         "hls4ml"),
        ("backends: [litert]\nbackend_options: {litert: {xnnpak: false}}\n",
         "backend_options.litert: unknown option 'xnnpak' (did you mean 'xnnpack'?); allowed: xnnpack"),
        ("backends: [litert]\nbackend_options: {onnxruntime: {}}\n", "backend_options.onnxruntime: not one of"),
        ("backends: [openvino]\nbackend_options: {openvino: {performance_hint: FASTEST}}\n",
         "backend_options.openvino: option 'performance_hint': Input should be 'LATENCY', 'THROUGHPUT'"),
        ("backends: [onnxruntime]\nbackend_options: {onnxruntime: {graph_optimization_level: fast}}\n",
         "backend_options.onnxruntime: option 'graph_optimization_level': Input should be 'all', 'extended', 'basic'"),
        ("backends: [litert]\nartifact_formats: {litert: onnx}\n", "'onnx' is not a format litert loads"),
        ("backends: [onnxruntime]\nenergy: {type: rapl, zone: [package-0]}\n",
         "energy: unknown option 'zone' (did you mean 'zones'?); allowed: root, zones"),
        ("backends: [onnxruntime]\nenergy: {type: estimated, tdp_w: -5}\n",  # was no energy after the training
         "energy: option 'tdp_w': Input should be greater than 0 (got -5)"),
        ("backends: [onnxruntime]\nenergy: {type: estimated, tdp: 15}\n",  # was "option 'tdp_w' is required"
         "energy: unknown option 'tdp' (did you mean 'tdp_w'?); allowed: tdp_w, idle_w, cores"),
        ("backends: [onnxruntime]\nenergy: {type: estimated}\n", "energy: option 'tdp_w' is required"),
        ("kind: ssh\nbackends: [onnxruntime]\nssh: {host: ''}\n",  # was refused only when the run connected
         "ssh.host: not a host name (empty, or with spaces): give the board's host name or address (e.g. jetson.local "
         "or 192.168.1.20) (got '')"),
        ("kind: ssh\nbackends: [onnxruntime]\nssh: {host: my board}\n", "ssh.host: not a host name"),
        # YAML's .inf and .nan are floats: no timeout, quantity or clock
        ("kind: ssh\nbackends: [onnxruntime]\nssh: {host: h, command_timeout_s: .inf}\n",
         "ssh.command_timeout_s: Input should be a finite number (got inf)"),
        ("backends: [onnxruntime]\nray: {resources: {'board:a': .nan}}\n",
         "ray.resources.board:a: Input should be a finite number (got nan)"),
        ("backends: [hls4ml]\nfpga: {part: xc7z020clg400-1, clock_period_ns: .inf}\n",
         "fpga.clock_period_ns: Input should be a finite number (got inf)"),
        ("backends: [onnxruntime]\nenergy: {type: powermeter}\n", "unknown meter 'powermeter'"),
        # a misspelt key (or a meter's options alone) measured no energy and said nothing
        ("backends: [onnxruntime]\nenergy: {kind: rapl}\n", "energy: no type given (only kind); name the meter"),
        ("backends: [onnxruntime]\nprecisions: [int4]\n", "precisions.0"),
        # a copied board file without its kind measured this machine, stored under the board's name
        ("backends: [onnxruntime]\nssh: {host: 127.0.0.2, user: pi}\n",
         "an 'ssh:' block (host 127.0.0.2) needs kind: ssh; kind local measures on this machine"),
        ("backends: [torch_cuda]\ndevice: cuda:1\nenergy: {type: nvml, device_index: 0}\n",
         "energy.device_index: 0 reads another GPU than device cuda:1; set it to 1"),
    ],
)
def test_wrong_fields_are_named(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_target_file(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_user_target_dir_wins(tmp_path: Path) -> None:
    (tmp_path / "my-board.yaml").write_text("backends: [onnxruntime]\nthreads: 4\n")
    assert "my-board" in list_targets(tmp_path)
    assert get_target("my-board", tmp_path).threads == 4
    with pytest.raises(ConfigError, match="unknown target 'nope'.*my-board"):
        get_target("nope", tmp_path)


def test_two_files_of_one_name_in_a_directory_are_refused_not_one_left_unused(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        (tmp_path / f"dup{suffix}").write_text("backends: [onnxruntime]\n")
    with pytest.raises(ConfigError, match=r"dup.yaml and dup.yml both define target dup"):
        list_targets(tmp_path)


def test_local_reasons() -> None:
    assert runner_for(get_target("local-cpu")).available() is None
    reason = runner_for(get_target("zcu102")).available()
    if shutil.which("vitis-run") is None:
        assert reason is not None and "vitis-run not on PATH" in reason and "local-hls4ml-csim" in reason


def test_a_local_target_runs_the_backends_this_machine_has_and_names_the_others(tmp_path: Path) -> None:
    from edgebench.config import TargetSelection
    from edgebench.pipeline import available_targets
    from edgebench.runtimes.base import get_backend

    missing = get_backend("tensorrt").available()
    if missing is None:
        pytest.skip("TensorRT runs here: no backend of this target is missing")
    mixed = TargetSpec(name="mixed", kind="local", backends=["onnxruntime", "tensorrt"])
    runner = runner_for(mixed)
    assert runner.available() is None and runner.unavailable_backends() == {"tensorrt": missing}
    ready, unavailable = available_targets([(TargetSelection(name="mixed"), mixed)], {"mixed": runner})
    assert [target.backends for _, target in ready] == [["onnxruntime"]]  # its jobs: ONNX Runtime's only
    assert unavailable == [f"target mixed/tensorrt: {missing}"]  # listed as not run, with why

    (tmp_path / "mixed.yaml").write_text("kind: local\nbackends: [onnxruntime, tensorrt]\n")
    status = {s.name: s for s in target_statuses(tmp_path)}["mixed"]  # `edgebench targets` says the same
    assert status.state == "available" and status.partial == f"tensorrt: {missing}"

    none_here = TargetSpec(name="gpu", kind="local", backends=["tensorrt"])
    ready, unavailable = available_targets([(TargetSelection(name="gpu"), none_here)], {"gpu": runner_for(none_here)})
    assert ready == [] and unavailable == [f"target gpu: tensorrt: {missing}"]


def test_ssh_reachability() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        up = TargetSpec(name="up", kind="ssh", backends=["onnxruntime"],
                        ssh=SSHSpec(host="127.0.0.1", port=port, connect_timeout_s=1))
        not_sshd = runner_for(up).available()  # reachable, but no SSH server answers (the real one: test_bad_inputs)
        assert not_sshd is not None and f"127.0.0.1:{port} accepted the connection but sent no SSH banner" in not_sshd
        missing_key = up.model_copy(update={"ssh": up.ssh.model_copy(update={"key_file": "/nonexistent/key"})})
        assert "key_file /nonexistent/key does not exist" in (runner_for(missing_key).available() or "")
    down = SSHRunner(up, connect_timeout_s=0.5).available()  # the listener is closed now
    assert down is not None and f"127.0.0.1:{port} unreachable" in down
    assert down.endswith("; check ssh.host and ssh.port in the target file, and that the board is up and runs sshd")
    rpi = SSHRunner(get_target("rpi5"), connect_timeout_s=0.5).available()
    assert rpi is not None and "rpi5.local:22 unreachable" in rpi


def test_doctor_lists_components_and_needs() -> None:
    found = {f.component.name: f for f in components()}
    assert found["torch"].present and found["onnxruntime"].present
    assert found["tensorrt"].component.install_hint and found["paramiko"].component.extra == "remote"
    assert {"nvidia-ml-py", "tegrastats", "g++", "litert-torch"} <= set(found)  # meters' and runtimes' needs
    # the features' extras beside the targets (the store, exports, the cluster, tracking), each with its extra
    assert {found[n].component.extra for n in ("psycopg", "pyarrow", "ray", "mlflow")} == {"postgres", "parquet", "ray",
                                                                                         "mlflow"}
    statuses = {s.name: s for s in target_statuses()}
    assert set(statuses) >= SHIPPED
    assert statuses["local-cpu"].available
    assert statuses["zcu102"].needs == ["hls4ml", "g++", "vitis-run"]
    assert statuses["jetson-nano"].needs == ["paramiko"]
    if shutil.which("vitis-run") is None:
        assert "vitis-run" in statuses["zcu102"].missing


def test_cli_commands() -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app, friendly_errors)
    runner = CliRunner()
    result = runner.invoke(app, ["targets"])
    assert result.exit_code == 0, result.output
    for name in ("local-cpu", "zcu102", "rpi5"):
        assert name in result.output
    assert "unavailable" in result.output and "available" in result.output
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "packages and tools" in result.output and "hls4ml" in result.output
    assert "unavailable" in result.output and "[/]" not in result.output  # styles rendered, not printed as text


@pytest.mark.parametrize("command", ["targets", "doctor"])
def test_a_broken_target_file_is_listed_as_broken_and_exits_2(tmp_path: Path, command: str) -> None:
    (tmp_path / "listed.yaml").write_text("- onnxruntime\n- torch\n")  # a list, not a mapping of fields
    (tmp_path / "ok-board.yaml").write_text("backends: [onnxruntime]\n")
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app, friendly_errors)
    result = CliRunner().invoke(app, [command, "--targets-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    row = next(line for line in result.output.splitlines() if "listed" in line and "│" in line)
    assert "broken" in row and "unavailable" not in row
    assert "ok-board" in result.output  # the other targets are still listed
    assert result.output.strip().splitlines()[-1].startswith("error: 1 target file(s) do not load: listed;")


def test_a_port_that_is_not_ssh_is_one_reason_without_paramikos_traceback(tmp_path: Path) -> None:
    """A port that accepts TCP and says nothing (a web app's, say): paramiko logs the failed handshake's traceback
    from its transport thread; `edgebench targets` shows the one-line reason only (run as a user would)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # connections complete in the backlog; nothing ever answers
        port = listener.getsockname()[1]
        (tmp_path / "silent-board.yaml").write_text(
            f"kind: ssh\nbackends: [onnxruntime]\nssh: {{host: 127.0.0.1, port: {port}, connect_timeout_s: 1, retries: 0}}\n")
        done = subprocess.run([str(Path(sys.executable).parent / "edgebench"), "targets", "--targets-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "paramiko" not in done.stderr, done.stderr
    words = " ".join(word for word in done.stdout.split() if word != "│")  # the reason, wrapped in its cell, read on
    assert "silent-board" in words and f"127.0.0.1:{port} accepted the connection but sent no SSH banner" in words, done.stdout
    assert "is the port an SSH server's?" in words, done.stdout


def test_targets_dir_reaches_run_and_variants_and_yml_files_count(tmp_path: Path, monkeypatch) -> None:
    """``--targets-dir`` works where README says (``run``, ``variants``, ``targets``, ``doctor``), and a target
    file may end in .yml."""
    from edgebench.cli import app
    from edgebench.targets import TARGETS_DIR_ENV

    monkeypatch.setenv(TARGETS_DIR_ENV, "")  # restored after the test: --targets-dir sets it for the process
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "lab-ort.yml").write_text("backends: [onnxruntime]\n")
    (tmp_path / "exp.yaml").write_text("name: lab\ntraining: {epochs: 1}\npruning: {criteria: []}\ntargets: [lab-ort]\n")
    listed = CliRunner().invoke(app, ["variants", "exp.yaml", "--targets-dir", "boards"])
    assert listed.exit_code == 0 and "baseline/fp32" in listed.output, listed.output
    assert "lab-ort" in list_targets() and get_target("lab-ort").backends == ["onnxruntime"]
    monkeypatch.setenv(TARGETS_DIR_ENV, "")
    missing = CliRunner().invoke(app, ["variants", "exp.yaml"])
    assert missing.exit_code == 2 and "unknown target 'lab-ort'" in missing.output


PLUGIN_BACKEND = '''
from edgebench.runtimes.base import BACKENDS
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend


@BACKENDS.register("team_ort")
class TeamOrt(OnnxRuntimeBackend):
    """The team's backend (here: ONNX Runtime under another name)."""
'''


def test_targets_and_doctor_see_a_backend_from_a_plugins_file(tmp_path: Path, monkeypatch) -> None:
    """A target using a plug-in backend is 'available' to ``targets --plugins`` (without it: broken, exit 2)."""
    from edgebench.cli import app
    from edgebench.plugins import PLUGINS_ENV

    monkeypatch.setenv(PLUGINS_ENV, "")  # --plugins sets it for the process; restored after the test
    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "team-board.yaml").write_text("backends: [team_ort]\n")
    (tmp_path / "team_backends.py").write_text(PLUGIN_BACKEND)
    without = CliRunner().invoke(app, ["targets"], env={"COLUMNS": "250"})
    assert without.exit_code == 2 and "do not load: team-board" in without.output
    listed = CliRunner().invoke(app, ["targets", "--plugins", "team_backends.py"], env={"COLUMNS": "250"})
    row = next(line for line in listed.output.splitlines() if "team-board" in line)
    assert listed.exit_code == 0 and "available" in row, listed.output


def test_targets_and_doctor_say_a_local_meter_that_cannot_read_here(tmp_path: Path, monkeypatch) -> None:
    """A target whose meter could not read (its logger's file not there) was 'available' with nothing said: the
    run measured every job without energy and said so only at its end."""
    from edgebench.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "logged.yaml").write_text(
        "backends: [onnxruntime]\nenergy: {type: external_csv, path: power.csv}\n")
    from edgebench.doctor import target_statuses

    status = next(s for s in target_statuses() if s.name == "logged")
    assert status.available and status.no_energy == ("external_csv: meter log power.csv not found (start the meter's "
                                                     "logger first)")
    for command in ("targets", "doctor"):
        shown = CliRunner().invoke(app, [command], env={"COLUMNS": "400"})
        row = next(line for line in shown.output.splitlines() if "logged " in line)
        assert shown.exit_code == 0 and "available" in row and "no energy here: external_csv" in row, shown.output
    (tmp_path / "power.csv").write_text("timestamp,power_w\n0,1.0\n")
    assert next(s for s in target_statuses() if s.name == "logged").no_energy is None


def test_profile_takes_the_plugins_file_of_its_target_s_backend(tmp_path: Path, monkeypatch) -> None:
    """``profile`` had no --plugins: a target of a plug-in backend could not be profiled (its file does not load)."""
    import torch
    from torch import nn

    from edgebench.cli import app
    from edgebench.plugins import PLUGINS_ENV
    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    monkeypatch.setenv(PLUGINS_ENV, "")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "team-board.yaml").write_text("backends: [team_ort]\n")
    (tmp_path / "team_backends.py").write_text(PLUGIN_BACKEND)
    export_fp32_onnx(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 3)).eval(), torch.zeros(1, 1, 8, 8),
                     tmp_path / "m.onnx")
    args = ["profile", "m.onnx", "--target", "team-board", "--input-shape", "1,8,8", "--runs", "5"]
    assert CliRunner().invoke(app, args).exit_code == 2  # the target file names a backend nothing registered
    done = CliRunner().invoke(app, [*args, "--plugins", "team_backends.py"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "m.onnx on team-board (team_ort, 1 thread(s))" in done.output and "per-layer profile: team_ort" in done.output


PROBE_CRASHING_BACKEND = '''
from edgebench.runtimes.base import BACKENDS
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend


@BACKENDS.register("team_crashing_probe")
class CrashingProbe(OnnxRuntimeBackend):
    def available(self):
        raise RuntimeError("probe crashed")
'''


def test_a_backend_whose_availability_check_raises_is_unavailable_with_that_error(tmp_path: Path, monkeypatch) -> None:
    """Its RuntimeError stopped every target's run, with a traceback, before anything ran."""
    from edgebench.cli import app
    from edgebench.plugins import PLUGINS_ENV

    monkeypatch.setenv(PLUGINS_ENV, "")  # --plugins sets it for the process; restored after the test
    (tmp_path / "probe.py").write_text(PROBE_CRASHING_BACKEND)
    listed = CliRunner().invoke(app, ["targets", "--plugins", str(tmp_path / "probe.py"),
                                      "--targets-dir", str(_board_of(tmp_path, "team_crashing_probe"))],
                                env={"COLUMNS": "250"})
    assert "Traceback" not in listed.output and not isinstance(listed.exception, RuntimeError)
    row = next(line for line in listed.output.splitlines() if "team-board" in line)
    assert "unavailable" in row and "its available() raised RuntimeError:" in row and "probe crashed" in listed.output


def _board_of(tmp_path: Path, backend: str) -> Path:
    """A targets directory with one target, team-board, measured by ``backend``."""
    directory = tmp_path / "board-targets"
    directory.mkdir()
    (directory / "team-board.yaml").write_text(f"backends: [{backend}]\n")
    return directory
