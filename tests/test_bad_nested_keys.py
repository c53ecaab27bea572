"""A misspelt key in a list item whose correct spelling is a required field (``lable:`` in an ``artifacts:`` entry):
one line naming the typo and its fix, as every other nested typo gets, through the real CLI (the pattern of
tests/test_bad_inputs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edgebench.cli import app


def _run(tmp_path: Path, artifact: dict[str, str]) -> str:
    """The output of ``edgebench run`` on an experiment listing ``artifact``, checked to be one line and exit 2."""
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "typo", "artifacts": [artifact], "run": {"workdir": str(tmp_path / "runs")},
                                    "store": {"url": str(tmp_path / "results.db")}}))
    result = CliRunner().invoke(app, ["run", str(path)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.db").exists()
    return lines[0]


def test_a_misspelt_required_artifact_key_is_named_with_its_fix(tmp_path: Path) -> None:
    """``lable:`` was reported as ``artifacts.0.label: Field required; and 1 more (artifacts.0.lable)``."""
    line = _run(tmp_path, {"path": "x.onnx", "lable": "team", "precision": "fp32"})
    assert line.endswith("exp.yaml: artifacts.0.lable: unknown field (did you mean 'label'?); allowed: path, label, "
                         "precision, parent (got 'team')"), line


@pytest.mark.parametrize("artifact", [{"path": "x.onnx", "precision": "fp32", "colour": "red"},
                                      {"path": "x.onnx", "precision": "fp32", "lable": "team", "colour": "red"}])
def test_an_unknown_artifact_key_comes_first_and_a_missing_one_it_does_not_spell_is_still_named(
        tmp_path: Path, artifact: dict[str, str]) -> None:
    """``colour`` misspells no field: the missing ``label`` is still a problem, named after it."""
    line = _run(tmp_path, artifact)
    first = ("artifacts.0.colour: unknown field (check its spelling)" if "lable" not in artifact else
             "artifacts.0.lable: unknown field (did you mean 'label'?)")
    assert f"exp.yaml: {first}; allowed: path, label, precision, parent (got " in line, line
    rest = "artifacts.0.label" if "lable" not in artifact else "artifacts.0.colour"
    assert line.endswith(f"; and 1 more ({rest})"), line
