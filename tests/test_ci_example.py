"""examples/ci/deployment-cost.yml as a team pastes it: its structure, and its compare-and-gate step's own shell
script run with bash against real stores (the base branch's restored store and the change's runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_gate import LARGE, _runs

from edgebench.store import Store

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "ci" / "deployment-cost.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> dict[str, dict]:
    return {s.get("id") or s.get("name") or s["uses"]: s for s in workflow["jobs"]["cost"]["steps"]}


def test_workflow_structure(workflow: dict) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    steps = _steps(workflow)
    restore = steps["baseline"]
    saves = [s for s in steps.values() if s.get("uses", "").startswith("actions/cache/save")]
    assert restore["uses"].startswith("actions/cache/restore") and len(saves) == 1
    assert restore["with"]["path"] == saves[0]["with"]["path"] == "baseline/results.db"  # the store, not artifacts
    assert restore["with"]["restore-keys"].startswith("edgebench-baseline-")
    assert saves[0]["with"]["key"].startswith("edgebench-baseline-")
    assert "constraints.txt" in steps["Install edgebench (torch pinned by constraints.txt)"]["run"]
    assert "gh pr comment" in steps["Post the comment"]["run"] and "always()" in steps["Post the comment"]["if"]
    assert steps["Fail on regression"]["if"].endswith("steps.gate.outputs.code == '1'")
    assert workflow["permissions"]["pull-requests"] == "write"


def _run_gate_step(workflow: dict, workdir: Path) -> tuple[str, str]:
    """Run the step's script as Actions would (bash -e, the workflow's env, GITHUB_OUTPUT); return (code, comment)."""
    script = _steps(workflow)["gate"]["run"].replace("${{ github.base_ref }}", "main")
    assert "${{" not in script
    output = workdir / "github_output"
    env = {**os.environ, **workflow["env"], "GITHUB_OUTPUT": str(output),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # the step itself never fails: the last step does, after the comment
    code = re.search(r"code=(\d+)", output.read_text())[1]
    return code, (workdir / "comment.md").read_text()


def test_gate_step_fails_a_regression_and_comments(workflow: dict, tmp_path: Path) -> None:
    store = tmp_path / workflow["env"]["STORE"]
    (tmp_path / "baseline").mkdir()
    with Store.open(tmp_path / "baseline" / "results.db") as base:  # what the push to main saved
        _runs(base, "main", 2, 0.003, seed=1)
    with Store.open(store) as cand:  # the change, measured twice
        _runs(cand, "candidate", 2, 0.003, seed=2, slowdown={LARGE: 1.08})
    code, comment = _run_gate_step(workflow, tmp_path)
    assert code == "1"
    assert comment.startswith("### edgebench deployment-cost gate ❌ fails")
    assert f"| fail | {LARGE} |" in comment and "--fail latency=5" in comment
    assert "### edgebench compare:" in comment  # compare's own verdict table follows


def test_gate_step_without_a_cached_baseline_gates_on_the_base_run_of_this_job(workflow: dict, tmp_path: Path) -> None:
    """Before the first push to main saves a store, every pull request passed unjudged, though the job had just
    measured the base commit (tag main) beside the change: that run is the baseline now, and the comment says so."""
    with Store.open(tmp_path / workflow["env"]["STORE"]) as store:  # the base commit's run and the change's two
        _runs(store, "main", 1, 0.003, seed=1)
        _runs(store, "candidate", 2, 0.003, seed=2, slowdown={LARGE: 1.30})  # past the 20 % one base run allows
    code, comment = _run_gate_step(workflow, tmp_path)
    assert code == "1" and f"| fail | {LARGE} |" in comment
    assert "No cached store of main yet (the first push there saves one): the base commit measured in this job is " \
           "the baseline" in comment
