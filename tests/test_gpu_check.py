"""scripts/gpu_check.sh on a machine without an NVIDIA GPU: one line saying so, nothing installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return listed.stdout.startswith("GPU ")


@pytest.mark.skipif(_has_gpu(), reason="an NVIDIA GPU is here: the script would install and run the GPU check")
def test_without_a_gpu_the_check_says_so_in_one_line(tmp_path: Path) -> None:
    venv = tmp_path / "venv-gpu"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "GPU_VENV": str(venv), "GPU_CHECK_OUT": str(tmp_path / "o")},
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpu_check: no NVIDIA GPU on this machine (nvidia-smi lists none): nothing to check"]
    assert done.stderr == ""
    assert not venv.exists() and not (tmp_path / "o").exists()
