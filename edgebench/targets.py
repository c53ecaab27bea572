"""Targets: YAML-described places to run (a backend set, a host, limits, a meter).

One file per target in ``targets/``. A user adds a device by adding a file; an
unknown or wrong field is reported with the file and field named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgebench.errors import ConfigError, format_validation_error

REPO_TARGETS_DIR = Path(__file__).resolve().parent.parent / "targets"


class SSHSpec(BaseModel):
    """How to reach a remote target."""

    model_config = ConfigDict(extra="forbid")

    host: str
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    known_hosts: str | None = Field(None, description="known_hosts file; default ~/.ssh/known_hosts")
    python: str = Field("python3", description="python on the device that has edgebench installed")
    workdir: str = "/tmp/edgebench"
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 600.0
    retries: int = 2


class TargetSpec(BaseModel):
    """A device/runtime combination measurements run on."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    kind: Literal["local", "ssh"] = "local"
    backends: list[str] = Field(min_length=1, description="backend names, e.g. torch, onnxruntime")
    device: str = "cpu"
    threads: int = Field(1, ge=1)
    precisions: list[str] | None = Field(None, description="precisions this target runs; None = all")
    backend_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    energy: dict[str, Any] | None = Field(None, description="energy meter spec, e.g. {type: rapl}")
    ssh: SSHSpec | None = None
    notes: dict[str, Any] = Field(default_factory=dict, description="power mode, board, part...")


def targets_dirs(extra: Path | None = None) -> list[Path]:
    """Directories searched for target files: ``extra``, ./targets, the repo's targets/."""
    dirs = [d for d in (extra, Path.cwd() / "targets", REPO_TARGETS_DIR) if d is not None]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def load_target_file(path: Path) -> TargetSpec:
    """Parse and validate one target file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    data.setdefault("name", path.stem)
    try:
        return TargetSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(path))) from None


def list_targets(extra_dir: Path | None = None) -> dict[str, Path]:
    """Map target name -> file, earlier directories winning."""
    found: dict[str, Path] = {}
    for d in targets_dirs(extra_dir):
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def get_target(name: str, extra_dir: Path | None = None) -> TargetSpec:
    """Load the target called ``name`` (a file stem or a path to a YAML file)."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_target_file(Path(name))
    files = list_targets(extra_dir)
    if name not in files:
        allowed = ", ".join(sorted(files)) or "(none found)"
        raise ConfigError(f"unknown target '{name}'; available: {allowed}. Add targets/{name}.yaml to define it.")
    return load_target_file(files[name])
