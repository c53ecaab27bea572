"""edgebench as a user installs it: a wheel built from this checkout, installed through constraints.txt into a
fresh virtual environment outside the repository, finds its shipped target files and runs an experiment.

The install is real (torch and the other core dependencies come from pip, as for a user), so the test takes
minutes; ``--no-compile`` skips byte-compiling torch's thousands of modules (~2.5x faster, measured): the venv's
processes compile what they import once, as a user's do (PYTHONDONTWRITEBYTECODE is not passed on to them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

TINY = {
    "name": "tiny",
    "training": {"epochs": 1},
    "pruning": {"criteria": []},
    "quantization": {"precisions": ["fp32"]},
    "targets": ["local-cpu"],
    "measurement": {"warmup_iters": 2, "min_iters": 10, "min_time_s": 0.0, "precision": None},  # fixed windows
}


def _run(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    # the fresh venv's edgebench, not a checkout's; and its imports byte-compiled once, as a user's are: with
    # --no-compile below, a PYTHONDONTWRITEBYTECODE inherited from a CI machine made every process of the venv (the
    # run's workers included) compile torch's and pandas' sources anew
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout's files (tracked and new, not ignored), built away from the checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the package's files")
    tmp = tmp_path_factory.mktemp("wheel")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    src = tmp / "src"
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp / "dist"), str(src)], tmp, 600)
    (built,) = (tmp / "dist").glob("edgebench-*.whl")
    return built


def test_wheel_carries_target_files_experiments_and_report_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"edgebench/target_files/{p.name}" for p in (ROOT / "edgebench" / "target_files").glob("*.yaml")}
    assert "edgebench/target_files/local-cpu.yaml" in shipped and shipped <= names
    assert "edgebench/experiments/default.yaml" in names and "edgebench/report/explore.js" in names
    assert "edgebench/docs/plugins.md" in names  # the guide errors about a plug-in name (PLUGINS_DOC)
    assert "edgebench/docs/experiment.md" in names  # README sends a wheel user to the field reference too
    assert not any(n.startswith(("tests/", "scripts/", "examples/")) for n in names)


def test_fresh_venv_outside_the_repo_lists_targets_and_runs(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys._base_executable, "-m", "venv", str(venv)], tmp_path, 300)  # type: ignore[attr-defined]
    python, edgebench = venv / "bin" / "python", venv / "bin" / "edgebench"
    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", "-c", str(ROOT / "constraints.txt"), str(wheel)],
         tmp_path, 1200)
    work = tmp_path / "work"  # no targets/ here: the shipped files must be found in the installed package
    work.mkdir()
    where = _run([str(python), "-c", "import edgebench; print(edgebench.__file__)"], work, 120).stdout.strip()
    assert Path(where).is_relative_to(venv) and not Path(where).is_relative_to(ROOT)

    listed = _run([str(edgebench), "targets"], work, 300).stdout
    local_cpu = next(line for line in listed.splitlines() if "local-cpu " in line)
    assert "available" in local_cpu and "unavailable" not in local_cpu
    hint = _run([str(python), "-c", "from edgebench.errors import extra_install_hint as h; print(h('litert'))"], work,
                120).stdout.strip()
    assert hint == "pip install 'edgebench[litert]'"  # no checkout, no constraints.txt: the extra by package name

    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    _run([str(edgebench), "run", "tiny.yaml"], work, 900)
    counted = _run([str(python), "-c", "import edgebench; df = edgebench.load('runs/tiny/results.db').measurements(); "
                    "print(len(df), sorted(df.backend), (df.accuracy > 0.3).all())"], work, 120).stdout
    assert counted.split() == ["2", "['onnxruntime',", "'torch']", "True"]
