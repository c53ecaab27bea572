"""edgebench/docs/experiment.md is what the schema says: regenerated, it is the same text, and it names every field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgebench.config import Experiment
from edgebench.config_reference import REFERENCE_FILE, experiment_reference

ROOT = Path(__file__).resolve().parents[1]


def test_the_reference_is_current_and_names_every_field() -> None:
    text = REFERENCE_FILE.read_text()
    assert text == experiment_reference(), "run python scripts/write_experiment_reference.py"
    for section in ("pruning", "quantization", "measurement", "store", "run"):
        model = type(getattr(Experiment(), section))
        assert all(f"| `{name}` |" in text for name in model.model_fields), section
    assert "| `job_timeout_s` | float | `300.0` |" in text and "| `max_iters` | int | `100000` |" in text


def test_the_script_checks_the_file() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "write_experiment_reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_the_store_default_it_states_is_the_one_used() -> None:
    """It said store.url defaults to runs/<experiment name>/results.db; with run.workdir set it is <workdir>/results.db."""
    text = REFERENCE_FILE.read_text()
    assert "default: <run.workdir>/results.db, which is runs/<experiment name>/results.db when run.workdir is unset" in text
    assert Experiment(name="x", run={"workdir": "/data/w"}).store_url() == "/data/w/results.db"
    assert Experiment(name="x").store_url() == "runs/x/results.db"
