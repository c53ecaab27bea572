"""Targets: YAML-described places to run (a backend set, a host, limits, a meter).

One file per target: edgebench ships its own in ``edgebench/target_files/`` (package data); a user's ``./targets/``
or ``--targets-dir`` come first. A user adds a device by adding a file; an unknown or wrong field,
an unknown backend, a backend option or energy-meter option the plug-in does not take: each is reported
when the file loads, with the file and field named. Runtimes add blocks of their own (hls4ml's ``fpga:``),
validated by the runtime's model (``Runtime.target_blocks``): this module knows no runtime, only the
registries. Whether a target can run *now* (packages, GPU, a reachable host) is the runner's question
(``edgebench.executor.runners``), not the file's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from edgebench import yaml_file
from edgebench.errors import ConfigError, did_you_mean
from edgebench.options import validate_options
from edgebench.runtimes.base import BACKENDS, TargetBlock, target_blocks
from edgebench.variants import Precision

#: the target files edgebench ships, as package data: found the same way from a checkout and from a wheel install
SHIPPED_TARGETS_DIR = Path(__file__).resolve().parent / "target_files"


class TargetRay(BaseModel):
    """How a target's measurements are placed: its board's Ray resource, or cores it is pinned to."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf/.nan are no timeouts or quantities

    resources: dict[str, float] = Field(
        default_factory=dict,
        description="the board's Ray custom resource, e.g. {'board:jetson-a': 1}; one measurement per board at a time",
    )
    # a core id is >= 0; whether it exists is known only on the machine that measures (a Ray node)
    cores: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1), AfterValidator(yaml_file.no_repeats)] | None = Field(
        None, description="cores this target's measurements are pinned to; targets pinned to disjoint cores "
        "measure side by side (builds and exports still wait for them)")

    @field_validator("resources")
    @classmethod
    def _positive(cls, resources: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in resources.items() if v <= 0}
        if bad:
            raise ValueError(f"resource quantities must be positive, got {bad}")
        return resources


class SSHSpec(BaseModel):
    """How to reach a remote target."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = Field(description="the board's host name or address")
    user: str | None = None
    port: int = Field(22, ge=1, le=65535)
    key_file: str | None = None
    known_hosts: str | None = Field(None, description="known_hosts file; default ~/.ssh/known_hosts")
    python: str = Field("python3", description="python on the device that has edgebench installed")
    workdir: str = "/tmp/edgebench"
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(600.0, gt=0)
    retries: int = Field(2, ge=0, description="reconnect-and-retry attempts after a dropped connection")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment of the remote worker")

    @field_validator("host")
    @classmethod
    def _a_host(cls, host: str) -> str:
        if not host or any(c.isspace() for c in host):  # else known only when the run connects
            raise ValueError("not a host name (empty, or with spaces): give the board's host name or address (e.g. "
                             "jetson.local or 192.168.1.20)")
        return host


class TargetSpec(BaseModel):
    """A device/runtime combination measurements run on; runtimes' own blocks (``fpga:``) are in :attr:`blocks`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    description: str = ""
    kind: Literal["local", "ssh"] = "local"
    backends: Annotated[list[str], AfterValidator(yaml_file.no_repeats)] = Field(
        min_length=1, description="backend names, e.g. torch, onnxruntime")
    device: str = "cpu"
    threads: int = Field(1, ge=1)
    # an empty list would refuse every variant, reported as runs of "" at run time
    precisions: Annotated[list[Precision], Field(min_length=1), AfterValidator(yaml_file.no_repeats)] | None = Field(
        None, description="precisions this target runs; None = all")
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="backend -> its options, e.g. {litert: {xnnpack: false}}"
    )
    artifact_formats: dict[str, str] = Field(
        default_factory=dict,
        description="backend -> artifact format when not the backend's first, e.g. {tensorrt: onnx} for engines "
        "built on the device (an engine only runs on the GPU and TensorRT version that built it)",
    )
    energy: dict[str, Any] | None = Field(None, description="energy meter spec, e.g. {type: rapl}")
    ssh: SSHSpec | None = None
    notes: dict[str, Any] = Field(default_factory=dict, description="power mode, board, part...")
    ray: TargetRay | None = Field(None, description="placement: the board's Ray resource, or the cores it is pinned to")
    _blocks: dict[str, TargetBlock] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TargetSpec:
        if self.kind == "ssh" and self.ssh is None:
            raise ValueError("kind: ssh needs an 'ssh:' block with at least 'host'")
        if self.kind != "ssh" and self.ssh is not None:  # else it measures this machine, stored as the board
            raise ValueError(f"an 'ssh:' block (host {self.ssh.host}) needs kind: ssh; kind {self.kind} measures on "
                             "this machine")
        _check_plugins(self)
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _runtime_blocks(cls, data: Any, handler: ModelWrapValidatorHandler[TargetSpec]) -> TargetSpec:
        """Validate the blocks runtimes declare by their own models, and require them where a backend needs one."""
        if not isinstance(data, Mapping):
            return handler(data)
        declared = target_blocks()
        spec = handler({key: value for key, value in data.items() if key not in declared})
        errors: list[Any] = []
        for key in declared.keys() & data.keys():
            try:
                spec._blocks[key] = declared[key].model_validate(data[key])
            except ValidationError as exc:  # reported with the block's key in front of each field, like any field
                errors += [{"type": e["type"], "loc": (key, *e["loc"]), "input": e["input"],
                            "ctx": _with_allowed(e, declared[key])} for e in exc.errors()]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for key, model in declared.items():
            needing = [name for name in spec.backends if name in model.required_by]
            if needing and key not in spec._blocks:
                least = ", ".join(f"'{name}'" for name, f in model.model_fields.items() if f.is_required())
                raise ValueError(f"backend {needing[0]} needs an '{key}:' block" + (f" with at least {least}" if least else ""))
        return spec

    @model_serializer(mode="wrap")
    def _blocks_at_top_level(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # written back where the file has them, so a dumped target loads again
        return {**handler(self), **{key: block.model_dump(mode=info.mode) for key, block in self._blocks.items()}}

    @property
    def blocks(self) -> dict[str, TargetBlock]:
        """The runtimes' blocks this target sets, by key (``fpga`` -> the hls4ml runtime's FPGASpec)."""
        return dict(self._blocks)

    def artifact_format(self, backend: str) -> str:
        """The artifact format ``backend`` receives on this target."""
        return self.artifact_formats.get(backend, BACKENDS.get(backend).formats[0])


def _with_allowed(error: Any, block: type[TargetBlock]) -> dict[str, Any]:
    """An error's ctx, with the block's fields where it is an unknown field at the block's top level: the message then
    lists them (the target file's model does not describe a runtime's block)."""
    ctx = dict(error.get("ctx", {}))
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        ctx["allowed"] = list(block.model_fields)
    return ctx


def _check_plugins(spec: TargetSpec) -> None:
    """Backend names, their options and formats, and the energy meter's options exist and have the right types."""
    from edgebench.measure.energy import METERS

    known = BACKENDS.names()
    for name in spec.backends:
        if name not in BACKENDS:
            raise ValueError(f"backends: unknown backend '{name}' (no plug-in loaded registers it: an experiment's "
                             f"plugins: list loads one, --plugins FILE for a command that reads no experiment); "
                             f"known: {', '.join(known)}")
    for field, mapping in (("backend_options", spec.backend_options), ("artifact_formats", spec.artifact_formats)):
        for name in mapping:
            if name not in spec.backends:
                raise ValueError(f"{field}.{name}: not one of this target's backends ({', '.join(spec.backends)})")
    for name, options in spec.backend_options.items():
        validate_options(BACKENDS.get(name).Options, options, f"backend_options.{name}")
    for name, fmt in spec.artifact_formats.items():
        formats = BACKENDS.get(name).formats
        if fmt not in formats:
            raise ValueError(f"artifact_formats.{name}: '{fmt}' is not a format {name} loads; allowed: {', '.join(formats)}")
    if spec.energy and "type" not in spec.energy:  # {kind: rapl} or options alone measured no energy, silently
        raise ValueError(f"energy: no type given (only {', '.join(map(str, spec.energy))}); name the meter with "
                         f"energy.type ({', '.join(METERS.names())}), or write energy: null for none")
    if spec.energy and spec.energy.get("type") not in (None, "none"):
        kind = spec.energy["type"]
        if kind not in METERS:
            raise ValueError(f"energy.type: unknown meter '{kind}'; known: {', '.join(METERS.names())}, none")
        validate_options(METERS.get(kind), {k: v for k, v in spec.energy.items() if k != "type"}, "energy")
        _check_meter_device(spec)


def _check_meter_device(spec: TargetSpec) -> None:
    """A GPU meter reads the GPU the target measures on (``device: cuda:N`` and ``energy.device_index: N``)."""
    assert spec.energy is not None
    index = spec.energy.get("device_index")
    number = spec.device.partition(":")[2] or "0"
    if index is None or not spec.device.startswith("cuda") or not number.isdigit():
        return
    device_index = int(number)
    if int(index) != device_index:
        raise ValueError(f"energy.device_index: {index} reads another GPU than device {spec.device}; set it to "
                         f"{device_index}")


#: the environment variable ``--targets-dir`` sets: every later lookup in this process (and its workers) sees it
TARGETS_DIR_ENV = "EDGEBENCH_TARGETS_DIR"


def targets_dirs(extra: Path | None = None) -> list[Path]:
    """Directories searched for target files, the first holding a name winning: ``extra`` (``--targets-dir``, or
    ``$EDGEBENCH_TARGETS_DIR``; a directory), ``./targets`` in the working directory, then the files edgebench
    ships."""
    if extra is None and os.environ.get(TARGETS_DIR_ENV):
        extra = Path(os.environ[TARGETS_DIR_ENV])
    if extra is not None and not extra.is_dir():
        state = "is a file" if extra.exists() else "does not exist"
        raise ConfigError(f"targets directory {extra} {state}; give a directory of target YAML files")
    dirs = [d for d in (extra, Path.cwd() / "targets", SHIPPED_TARGETS_DIR) if d is not None]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.append(d.resolve())
    return seen


def load_target_file(path: Path) -> TargetSpec:
    """Parse and validate one target file; its name is the file's (``targets/my-board.yaml``: ``my-board``), so
    what ``edgebench targets`` lists, what an experiment names and what the store records are one name."""
    data = yaml_file.read_mapping(path, "target file")
    if "name" in data and not isinstance(data["name"], str):  # name: null, or a number: nothing to rename to
        raise ConfigError(f"{path}: name: {data['name']!r} is not the file's name '{path.stem}'; a target is named "
                          "by its file: drop the name field")
    if "name" in data and data["name"] != path.stem:
        raise ConfigError(f"{path}: name: '{data['name']}' differs from the file's name '{path.stem}'; a target is "
                          f"named by its file: rename the file to {data['name']}.yaml or drop the name field")
    return yaml_file.validate(TargetSpec, {"name": path.stem, **data}, str(path))


def use_targets_dir(extra: Path | None) -> None:
    """Make ``extra`` (``--targets-dir`` of ``run``, ``variants``) the first directory of every later lookup, in this
    process and the workers it starts."""
    if extra is not None:
        targets_dirs(extra)  # a missing directory fails here, in one line
        os.environ[TARGETS_DIR_ENV] = str(extra.resolve())


def list_targets(extra_dir: Path | None = None) -> dict[str, Path]:
    """Map target name -> file, earlier directories winning."""
    found: dict[str, Path] = {}
    for d in targets_dirs(extra_dir):
        for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            if (other := found.get(path.stem)) is not None and other.parent == path.parent:  # else one is unused
                raise ConfigError(f"{other} and {path.name} both define target {path.stem}; keep one")
            found.setdefault(path.stem, path)
    return found


def target_name(name: str) -> str:
    """The name of the target ``name`` selects: a YAML file's path names the target called as the file."""
    return Path(name).stem if name.endswith((".yaml", ".yml")) else name


def unknown_target(name: str, extra_dir: Path | None = None) -> str | None:
    """Why ``name`` (a file stem or a path to a YAML file) names no target, with the names there are; None if it
    names one."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return None
    files = list_targets(extra_dir)
    if name in files:
        return None
    allowed = ", ".join(sorted(files)) or "(none found)"
    stem = Path(name).stem if name.endswith((".yaml", ".yml")) else name  # a file path that is not there
    guess = did_you_mean(stem, files)
    if stem != name:
        return (f"unknown target '{name}': no such file{guess}; available: {allowed}. A target is a name, or the path "
                "of a target YAML file")
    return f"unknown target '{name}'{guess}; available: {allowed}. Add targets/{name}.yaml to define it."


def users_target_file(name: str) -> Path | None:
    """The user's YAML file target ``name`` is read from (a path, ``--targets-dir``, ``./targets``); None for a
    target edgebench ships (it changes only with edgebench) or one not found."""
    path = Path(name) if name.endswith((".yaml", ".yml")) and Path(name).is_file() else list_targets().get(name)
    return path if path is not None and path.resolve().parent != SHIPPED_TARGETS_DIR else None


def get_target(name: str, extra_dir: Path | None = None) -> TargetSpec:
    """Load the target called ``name`` (a file stem or a path to a YAML file)."""
    if problem := unknown_target(name, extra_dir):
        raise ConfigError(problem)
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_target_file(Path(name))
    return load_target_file(list_targets(extra_dir)[name])
