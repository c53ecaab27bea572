"""The SSH transport against a real sshd on 127.0.0.1 (Debian's openssh-server), key-only auth.

The "device" is this machine: the worker runs through sshd with this venv's python,
so the ONNX Runtime backend measures an ONNX model the test exports.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from sshd_fixtures import Sshd, free_port, keygen

pytest.importorskip("paramiko", reason="the 'remote' extra (paramiko) is not installed")

from edgebench.executor.ssh import RemoteError, probe, remote_job, run_job_remote
from edgebench.job import Job, MeasureSettings
from edgebench.targets import SSHSpec, TargetSpec


@pytest.fixture(scope="module")
def onnx_job_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, list[Path]]:
    import torch
    from torch import nn

    from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    local = tmp_path_factory.mktemp("local files")
    x = torch.randn(32, 3, 8, 8)
    with torch.no_grad():
        logits = model(x).numpy()
    onnx_path = local / "model.onnx"
    export_fp32_onnx(model, x[:1], onnx_path)
    eval_path, ref_path = local / "eval.npz", local / "reference.npz"
    np.savez(eval_path, x=x.numpy(), y=logits.argmax(1))
    np.savez(ref_path, logits=logits[:16])
    job = Job(
        job_id="job-1",
        variant_id="v1",
        target="loopback",
        backend="onnxruntime",
        artifact=str(onnx_path),
        eval_data=str(eval_path),
        reference=str(ref_path),
        measure=MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, precision=None),
    )
    return job, [onnx_path, eval_path, ref_path]


def test_remote_job_paths_are_rewritten(onnx_job_files: tuple[Job, list[Path]]) -> None:
    job, files = onnx_job_files
    moved = remote_job(job, files, "/remote/dir")
    assert (moved.artifact, moved.eval_data, moved.reference) == (
        "/remote/dir/model.onnx", "/remote/dir/eval.npz", "/remote/dir/reference.npz")
    with pytest.raises(ValueError, match="not among the files"):
        remote_job(job, files[:1], "/remote/dir")


def test_onnxruntime_runs_remotely(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    job, files = onnx_job_files
    result = run_job_remote(job, sshd.spec(), files)
    assert result.status == "ok", result.error
    assert result.accuracy == 1.0  # labels are the model's own argmax
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert len(result.samples_ns) >= 20 and result.latency_ms["p50"] > 0
    assert "onnxruntime" in result.runtime
    ssh = sshd.spec().ssh
    assert result.details["board"] == f"{ssh.host}:{ssh.port}"  # type: ignore[union-attr]
    # "where the jobs ran" named the driving host only ("local vm"), not the board
    from edgebench.store.store import _ran_on

    placement = {"executor": "local", "host": "vm", "pid": 7}
    assert _ran_on(placement, result.details["board"]) == f"local vm → ssh {ssh.host}:{ssh.port}"  # type: ignore[union-attr]
    assert _ran_on(placement, None) == "local vm"
    workdir = Path(sshd.spec().ssh.workdir)  # type: ignore[union-attr]
    assert workdir.is_dir() and not (workdir / job.job_id).exists()  # per-job directory cleaned up


def test_unknown_host_key_is_rejected(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    empty = sshd.root / "empty_known_hosts"
    empty.write_text("")
    job, files = onnx_job_files
    with pytest.raises(RemoteError, match="unknown host key.*ssh-keyscan -p"):
        run_job_remote(job, sshd.spec(known_hosts=str(empty)), files)


def test_changed_host_key_is_rejected(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    other = keygen(sshd.root / "other_host_key")
    key_type, key_b64 = Path(f"{other}.pub").read_text().split()[:2]
    wrong = sshd.root / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key_b64}\n")
    job, files = onnx_job_files
    with pytest.raises(RemoteError, match="does not match"):
        run_job_remote(job, sshd.spec(known_hosts=str(wrong)), files)


def test_auth_failure_is_explained(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    stranger = keygen(sshd.root / "stranger_ed25519")
    job, files = onnx_job_files
    with pytest.raises(RemoteError, match="authentication to .* failed"):
        run_job_remote(job, sshd.spec(key_file=str(stranger)), files)


def test_dead_host_becomes_failed_result_after_retries(onnx_job_files: tuple[Job, list[Path]], tmp_path: Path) -> None:
    job, files = onnx_job_files
    dead = TargetSpec(name="dead", kind="ssh", backends=["onnxruntime"], ssh=SSHSpec(
        host="127.0.0.1", port=free_port(), key_file=None, known_hosts=str(tmp_path / "kh"),
        connect_timeout_s=1, retries=1))
    start = time.monotonic()
    result = run_job_remote(job, dead, files)
    assert result.status == "failed"
    assert "cannot connect to 127.0.0.1" in (result.error or "") and "after 2 attempts" in (result.error or "")
    assert "Unable to connect to port" in (result.error or "") and "[Errno None]" not in (result.error or "")
    assert result.unreachable  # not a result of the job: a host that died mid-run leaves the run open to resume
    gone = run_job_remote(job, dead, [*files, tmp_path / "no-such.onnx"])  # a local file: no retry, no resume
    assert gone.error == f"cannot copy to 127.0.0.1: no file {tmp_path / 'no-such.onnx'} here" and not gone.unreachable
    assert time.monotonic() - start < 10


def _remote_workers(workdir: str) -> list[psutil.Process]:
    """Worker processes the device (this machine's sshd) still runs in ``workdir``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        if "edgebench.measure.worker" in " ".join(proc.info["cmdline"] or ()) and (proc.info["cwd"] or "").startswith(
                workdir):
            found.append(proc)
    return found


def test_remote_command_timeout_kills_the_worker_on_the_device(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]
                                                               ) -> None:
    """A worker still running at the command timeout is killed there with its directory, so the board's next job
    is not timed beside it."""
    job, files = onnx_job_files
    target = sshd.spec(command_timeout_s=0.3)
    result = run_job_remote(job.model_copy(update={"job_id": "slow"}), target, files)
    # the setting is named, as a local job's timeout names run.job_timeout_s
    assert result.status == "failed" and "timed out after ssh.command_timeout_s (0.3 s; killed there" in (result.error or "")
    workdir = target.ssh.workdir
    deadline = time.monotonic() + 5
    while _remote_workers(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _remote_workers(workdir) == [] and not (Path(workdir) / "slow").exists()


def test_a_worker_killed_by_a_signal_on_the_device_names_it(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]],
                                                              tmp_path: Path) -> None:
    """A device python that dies by SIGSEGV: the failure names the signal (paramiko drops SSH's exit-signal)."""
    job, files = onnx_job_files
    crashing = tmp_path / "python-segv"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    result = run_job_remote(job.model_copy(update={"job_id": "segv"}), sshd.spec(python=str(crashing)), files)
    assert result.status == "failed" and "remote worker on 127.0.0.1 killed by SIGSEGV" in (result.error or "")


def test_two_target_files_for_one_board_share_its_lane(tmp_path: Path) -> None:
    """One timed job per board: two target files naming the same host and port hold one lane (and one lock)."""
    from edgebench.executor.runners import SSHRunner

    def target(name: str, port: int) -> TargetSpec:
        return TargetSpec(name=name, kind="ssh", backends=["onnxruntime"],
                          ssh=SSHSpec(host="10.0.0.5", port=port, key_file=None, known_hosts=str(tmp_path / "kh")))

    assert SSHRunner(target("board-a", 22)).lane() == SSHRunner(target("board-a-int8", 22)).lane()
    assert SSHRunner(target("board-a", 22)).lane() != SSHRunner(target("board-b", 2222)).lane()


def test_a_probe_of_a_hung_board_leaves_nothing_running_there(sshd: Sshd, tmp_path: Path) -> None:
    """A python whose import hangs: the probe said so after its timeout, and left the process busy on the board
    (one more per `targets` or run), beside the jobs timed there later."""
    marker = f"4242.{os.getpid()}{time.monotonic_ns() % 100000}"  # this test's sleep, not another process's
    hanging = tmp_path / "hanging-python"
    hanging.write_text(f"#!/bin/sh\nexec sleep {marker}\n")
    hanging.chmod(0o755)
    # the import's limit alone is short: a 0.5 s connect timeout also bounded the handshake with this machine's sshd,
    # which a loaded CI guest took longer than (the probe then said "SSH handshake ... failed", no kill to check)
    reason, _ = probe(sshd.spec(python=str(hanging)).ssh, import_limit_s=1.5)
    assert reason is not None and "importing it did not finish in 1.5 s and was killed" in reason

    def left() -> bool:
        return any(marker in " ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"]))

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and left():
        time.sleep(0.1)
    assert not left()


def test_a_file_the_board_refuses_fails_the_job_and_is_not_retried_as_a_lost_connection(
        sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    """A board whose disk is full answered 'size mismatch in put': taken for a dropped connection, the job was
    never stored and every run met it again. Here the board's copy of the model cannot be written (a directory
    stands in its place)."""
    job, files = onnx_job_files
    target = sshd.spec()
    blocked = Path(target.ssh.workdir) / "refused" / files[0].name
    blocked.mkdir(parents=True)
    result = run_job_remote(job.model_copy(update={"job_id": "refused"}), target, files)
    assert result.status == "failed" and not result.unreachable
    assert result.error.startswith(f"copy to 127.0.0.1:{target.ssh.workdir}/refused failed:")
    assert "disk full, or its ssh.workdir not writable" in result.error
    assert not blocked.parent.exists()  # the job's directory removed from the board


_DRIVER = """
import sys
from pathlib import Path
from edgebench.executor import ssh
from edgebench.job import Job
from edgebench.targets import TargetSpec
ssh._REMOTE_GRACE_S = 0.5
target = TargetSpec.model_validate_json(Path(sys.argv[1]).read_text())
job = Job.model_validate_json(Path(sys.argv[2]).read_text())
ssh.run_job_remote(job, target, [Path(f) for f in sys.argv[3:]])
"""


def _hanging_worker_on_the_board(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]], tmp_path: Path,
                                 command_timeout_s: float) -> tuple[psutil.Popen, str]:
    """A driver process running a job whose device python hangs, started and seen running on the board."""
    job, files = onnx_job_files
    marker = f"4343.{os.getpid()}{time.monotonic_ns() % 100000}"  # this test's sleep, not another process's
    hanging = tmp_path / "hanging-python"
    hanging.write_text(f"#!/bin/sh\nexec sleep {marker}\n")
    hanging.chmod(0o755)
    target_file, job_file = tmp_path / "target.json", tmp_path / "job.json"
    target_file.write_text(sshd.spec(python=str(hanging), command_timeout_s=command_timeout_s).model_dump_json())
    job_file.write_text(job.model_copy(update={"job_id": "orphan"}).model_dump_json())
    driver = psutil.Popen([sys.executable, "-c", _DRIVER, str(target_file), str(job_file), *map(str, files)])
    deadline = time.monotonic() + 30
    while not _board_runs(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _board_runs(marker), "the worker never started on the board"
    return driver, marker


def _board_runs(marker: str) -> bool:
    return any((p.info["cmdline"] or [])[:2] == ["sleep", marker] for p in psutil.process_iter(["cmdline"]))


def _gone_within(marker: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _board_runs(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _board_runs(marker)


def test_a_driver_killed_mid_job_leaves_nothing_running_on_the_board(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]],
                                                                     tmp_path: Path) -> None:
    """A Ray node that died with its driver left the board's worker running, timed beside the board's next job: the
    connection's close now ends it there."""
    driver, marker = _hanging_worker_on_the_board(sshd, onnx_job_files, tmp_path, command_timeout_s=120)
    driver.kill()
    driver.wait(10)
    assert _gone_within(marker, 10)


def test_a_driver_that_stops_answering_has_its_board_worker_cut_after_the_command_timeout(
        sshd: Sshd, onnx_job_files: tuple[Job, list[Path]], tmp_path: Path) -> None:
    """A frozen driver keeps its connection open (so does a network that vanished without a close): the board's
    timeout ends the worker a grace (0.5 s here) after the command timeout."""
    driver, marker = _hanging_worker_on_the_board(sshd, onnx_job_files, tmp_path, command_timeout_s=2)
    driver.suspend()
    try:
        assert _gone_within(marker, 15)
    finally:
        driver.kill()
        driver.wait(10)


def test_a_backend_whose_runtime_the_board_cannot_import_is_not_run(sshd: Sshd, tmp_path: Path) -> None:
    """A board without onnxruntime passed the login check, then every onnxruntime job failed and was stored with
    advice to re-export the artifact. The login check imports each backend's runtime there: the backend is "not
    run", naming the module and the board; the target's other backends still run."""
    from edgebench.executor.runners import SSHRunner
    from edgebench.pipeline import available_targets

    blocked = tmp_path / "block" / "onnxruntime"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ModuleNotFoundError('No module named onnxruntime (blocked)')\n")
    python = tmp_path / "python-without-ort"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={blocked.parent} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    both = sshd.spec(python=str(python)).model_copy(update={"backends": ["litert", "onnxruntime"]})
    ready, not_run = available_targets([(None, both)], {"loopback": SSHRunner(both)})  # type: ignore[list-item]
    assert [target.backends for _, target in ready] == [["litert"]]
    assert not_run == [f"target loopback/onnxruntime: {python} on 127.0.0.1 cannot import onnxruntime (No module "
                       "named onnxruntime (blocked)): install it there for that python, or set ssh.python to a python "
                       "that has it"]
    alone = sshd.spec(python=str(python))  # its only backend: the target is not run
    assert SSHRunner(alone).available() == f"onnxruntime: {not_run[0].split(': ', 1)[1]}"
    assert SSHRunner(sshd.spec()).available() is None  # a board that has it


def _forced_key(sshd: Sshd, tmp_path: Path, command: str) -> Path:
    """A client key the sshd runs ``command`` for, whatever the client asked (authorized_keys' ``command=``, what a
    ``ForceCommand`` does for every key)."""
    key = keygen(tmp_path / "forced_ed25519")
    with (sshd.root / "authorized_keys").open("a") as fh:
        fh.write(f'command="{command}" {Path(f"{key}.pub").read_text()}')
    return key


def _kill_marked(marker: str) -> None:
    """End the board's processes this test started (a hung command sshd leaves running)."""
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def test_a_host_that_runs_no_command_is_said_to_hang_not_to_lack_edgebench(sshd: Sshd, tmp_path: Path) -> None:
    """A host that takes the login, then hangs every command (ForceCommand sleep): the probe said its python
    "cannot run edgebench's worker" and advised installing edgebench there."""
    marker = f"4545.{os.getpid()}{time.monotonic_ns() % 100000}"
    key = _forced_key(sshd, tmp_path, f"sleep {marker}")
    try:
        reason, _ = probe(sshd.spec(key_file=str(key), connect_timeout_s=1).ssh)
    finally:
        _kill_marked(marker)
    assert reason == ("127.0.0.1 accepted the login but did not finish a trivial command (`true`) within "
                      "ssh.connect_timeout_s (1 s): check the board's sshd_config (ForceCommand) and its shell "
                      "start-up files")


def test_a_board_whose_setup_command_hangs_is_lost_not_a_failed_job(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]],
                                                                    tmp_path: Path) -> None:
    """A board that hangs `mkdir` of the job's directory failed, not the job: like a dropped connection, it is
    retried and then lost (not stored; the same command measures it again), not stored as the job's failure."""
    marker = f"4646.{os.getpid()}{time.monotonic_ns() % 100000}"
    script = tmp_path / "force.sh"
    script.write_text(f'#!/bin/sh\ncase "$SSH_ORIGINAL_COMMAND" in mkdir*) exec sleep {marker};; esac\n'
                      'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    script.chmod(0o755)
    key = _forced_key(sshd, tmp_path, str(script))
    job, files = onnx_job_files
    try:
        result = run_job_remote(job.model_copy(update={"job_id": "mkdir-hangs"}),
                                sshd.spec(key_file=str(key), connect_timeout_s=1, retries=0), files)
    finally:
        _kill_marked(marker)
    assert result.status == "failed" and result.unreachable
    assert result.error == ("127.0.0.1 did not finish `mkdir` of the job's directory within 3 x ssh.connect_timeout_s "
                            "(3 s) (after 1 attempts)")


def test_key_and_known_hosts_mistakes_name_the_mistake(sshd: Sshd, tmp_path: Path) -> None:
    """Each read as something else: a .pub key_file or a listener without SSH as 'is an SSH server listening?', an
    encrypted key as a refused login, a key_file directory as missing, a missing known_hosts as a key to append."""
    from edgebench.executor.runners import SSHRunner

    def said(**ssh: object) -> str | None:
        return SSHRunner(sshd.spec(connect_timeout_s=1, retries=0, **ssh)).available()

    public = f"{sshd.client_key}.pub"
    assert said(key_file=public) == f"ssh.key_file {public} is a public key: name its private key (without .pub)"
    encrypted = tmp_path / "encrypted_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(encrypted)], check=True)
    assert said(key_file=str(encrypted)) == (
        f"ssh.key_file {encrypted} is encrypted (it has a passphrase, which edgebench cannot ask for): use a key "
        "without one, or leave ssh.key_file unset to use the keys loaded in ssh-agent")
    assert said(key_file=str(tmp_path)) == f"ssh.key_file {tmp_path} cannot be read: Is a directory"
    assert said(known_hosts="/nonexistent/known_hosts") == (
        f"unknown host key for {sshd.spec().ssh.user}@127.0.0.1:{sshd.port}: ssh.known_hosts /nonexistent/known_hosts "  # type: ignore[union-attr]
        "does not exist. Point ssh.known_hosts at the file holding the board's host key (default ~/.ssh/known_hosts), "
        "or create it with the checked key")
    with socket.socket() as silent:  # accepts connections (the kernel completes them) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        assert said(port=port) == (f"{sshd.spec().ssh.user}@127.0.0.1:{port} accepted the connection but sent no "  # type: ignore[union-attr]
                                   "SSH banner within ssh.connect_timeout_s (1 s): is the port an SSH server's?")


def test_a_remote_crash_names_the_python_frame_not_the_shell_wrapper(
        sshd: Sshd, onnx_job_files: tuple[Job, list[Path]], tmp_path: Path) -> None:
    """A board's worker that segfaults: the failure's line held bash's notice of edgebench's own wrapper ("bash: line
    1: 886 Segmentation fault ( if timeout --foreground ..."); it names the frame faulthandler printed, as locally."""
    crashing = tmp_path / "python-crash"
    crashing.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import os, signal\ndef timed_call(): os.kill(os.getpid(), "
                        "signal.SIGSEGV)\ntimed_call()'\n")
    crashing.chmod(0o755)
    job, files = onnx_job_files
    result = run_job_remote(job.model_copy(update={"job_id": "crash"}), sshd.spec(python=str(crashing)), files)
    assert result.status == "failed"
    assert result.error == 'remote worker on 127.0.0.1 killed by SIGSEGV: File "<string>", line 2 in timed_call'
