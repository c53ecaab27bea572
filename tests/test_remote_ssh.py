"""The SSH transport against a real sshd on 127.0.0.1 (Debian's openssh-server), key-only auth.

The "device" is this machine: the worker runs through sshd with this venv's python,
so the ONNX Runtime backend measures an ONNX model the test exports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("paramiko", reason="the 'remote' extra (paramiko) is not installed")

from edgebench.executor.ssh import RemoteError, remote_job, run_job_remote
from edgebench.job import Job, MeasureSettings
from edgebench.targets import SSHSpec, TargetSpec

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class Sshd:
    port: int
    client_key: Path
    known_hosts: Path
    host_key: Path
    root: Path

    def spec(self, **overrides: object) -> TargetSpec:
        ssh = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": os.environ.get("USER") or __import__("getpass").getuser(),
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "python": sys.executable,
            "workdir": str(self.root / "remote work dir with 'quotes' & spaces"),
            "connect_timeout_s": 5,
            "command_timeout_s": 120,
            "retries": 1,
        }
        ssh.update(overrides)
        return TargetSpec(name="loopback", kind="ssh", backends=["onnxruntime"], ssh=SSHSpec(**ssh))


@contextlib.contextmanager
def start_sshd(root: Path) -> Iterator[Sshd]:
    """A key-only sshd on 127.0.0.1 with its keys and known_hosts under ``root`` (also used by scripts)."""
    host_key = keygen(root / "host_ed25519")
    client_key = keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation directory
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}") from None
            time.sleep(0.05)
    known_hosts = root / "known_hosts"
    key_type, key_b64 = (root / "host_ed25519.pub").read_text().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
    try:
        yield Sshd(port, client_key, known_hosts, host_key, root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server not installed (apt-get install -y openssh-server)")
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


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
    assert time.monotonic() - start < 10


def test_remote_command_timeout(sshd: Sshd, onnx_job_files: tuple[Job, list[Path]]) -> None:
    job, files = onnx_job_files
    result = run_job_remote(job.model_copy(update={"job_id": "slow"}), sshd.spec(command_timeout_s=0.3), files)
    assert result.status == "failed" and "timed out after 0.3 s" in (result.error or "")
