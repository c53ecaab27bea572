"""Targets: YAML-described places to run (a backend set, a host, limits, a meter).

One file per target in ``targets/``. A user adds a device by adding a file; an
unknown or wrong field is reported with the file and field named.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(600.0, gt=0)
    retries: int = Field(2, ge=0, description="reconnect-and-retry attempts after a dropped connection")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment of the remote worker")


class FPGASpec(BaseModel):
    """hls4ml settings of an FPGA target: part, clock, I/O style and whether to synthesise."""

    model_config = ConfigDict(extra="forbid")

    part: str = Field(description="FPGA part, e.g. xczu9eg-ffvb1156-2-e")
    board: str | None = Field(None, description="board name, informational (e.g. zcu102)")
    hls_backend: Literal["Vitis", "Vivado"] = Field("Vitis", description="hls4ml backend / HLS tool family")
    clock_period_ns: float = Field(5.0, gt=0)
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    strategy: Literal["Latency", "Resource"] = "Latency"
    default_precision: str = Field("ap_fixed<16,6>", description="used when a variant gives no fixed_point")
    synthesize: bool = Field(False, description="run C synthesis (needs vitis_hls / vivado_hls on PATH)")

    @field_validator("default_precision")
    @classmethod
    def _ap_type(cls, value: str) -> str:
        if not value.startswith(("ap_fixed<", "ap_ufixed<", "ap_int<", "ap_uint<", "fixed<", "ufixed<")):
            raise ValueError("must be an HLS type such as ap_fixed<16,6>")
        return value

    @property
    def hls_tool(self) -> str:
        """Executable that synthesises for ``hls_backend``."""
        return "vitis_hls" if self.hls_backend == "Vitis" else "vivado_hls"


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
    artifact_formats: dict[str, str] = Field(
        default_factory=dict,
        description="backend -> artifact format when not the backend's first, e.g. {tensorrt: onnx} for engines "
        "built on the device (an engine only runs on the GPU and TensorRT version that built it)",
    )
    energy: dict[str, Any] | None = Field(None, description="energy meter spec, e.g. {type: rapl}")
    ssh: SSHSpec | None = None
    fpga: FPGASpec | None = None
    notes: dict[str, Any] = Field(default_factory=dict, description="power mode, board, part...")

    @model_validator(mode="after")
    def _kind_needs_fields(self) -> TargetSpec:
        if self.kind == "ssh" and self.ssh is None:
            raise ValueError("kind: ssh needs an 'ssh:' block with at least 'host'")
        if "hls4ml" in self.backends and self.fpga is None:
            raise ValueError("backend hls4ml needs an 'fpga:' block with at least 'part'")
        return self


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


def target_unavailable_reason(spec: TargetSpec, connect_timeout_s: float = 1.5) -> str | None:
    """None when jobs can run on ``spec`` now, else why not (missing extra, no GPU, host down, tool missing).

    Remote targets are checked by reachability only: their backends live on the device.
    """
    if spec.kind == "ssh":
        return _remote_unavailable_reason(spec, connect_timeout_s)
    from edgebench.backends.base import get_backend

    reasons = []
    for name in spec.backends:
        try:
            reason = get_backend(name).available()
        except KeyError as exc:
            reason = str(exc).strip("'\"")
        if reason:
            reasons.append(f"{name}: {reason}")
    if spec.fpga is not None and spec.fpga.synthesize and shutil.which(spec.fpga.hls_tool) is None:
        reasons.append(
            f"{spec.fpga.hls_tool} not on PATH: install {spec.fpga.hls_backend} HLS and source its settings64.sh "
            f"to synthesise for {spec.fpga.part} (or use local-hls4ml-csim for C simulation only)"
        )
    return "; ".join(reasons) or None


def _remote_unavailable_reason(spec: TargetSpec, connect_timeout_s: float) -> str | None:
    assert spec.ssh is not None  # guaranteed by TargetSpec validation
    try:
        import paramiko  # noqa: F401
    except ImportError:
        return "the 'remote' extra is not installed: pip install -c constraints.txt -e '.[remote]'"
    try:
        with socket.create_connection((spec.ssh.host, spec.ssh.port), timeout=connect_timeout_s):
            pass
    except OSError as exc:
        return f"host {spec.ssh.host}:{spec.ssh.port} unreachable ({exc.strerror or exc})"
    if spec.ssh.key_file and not Path(spec.ssh.key_file).expanduser().is_file():
        return f"ssh key_file {spec.ssh.key_file} does not exist"
    return None
