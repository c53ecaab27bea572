"""A real sshd on 127.0.0.1 (Debian's openssh-server), key-only auth, for the remote tests (a pytest plugin named in
conftest.py's ``pytest_plugins``) and for scripts/bench_executor.py (``start_sshd``). The fixture skips with the
reason when openssh-server is not installed."""

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

import pytest

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
