"""Experiment files for tests: the built-in default with some top-level sections replaced, written to disk so
tests go through the real loader."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgebench.config import DEFAULT_EXPERIMENT


def default_with(tmp_path: Path, name: str = "exp.yaml", **sections: object) -> Path:
    """Write the default experiment with ``sections`` (top-level keys) replaced to ``tmp_path / name``."""
    data = yaml.safe_load(DEFAULT_EXPERIMENT.read_text())
    data.update(sections)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path
