"""What is installed here, what each target needs, and what is missing.

The components are what the runtime folders, the energy meters and the SSH runner declare
(``edgebench.components``), and the extras of the features beside them (``FEATURE_EXTRAS``); a target's needs are
its runner's. Checks use package
metadata and PATH lookups rather than imports, so ``edgebench doctor`` stays fast even where heavy
runtimes (LiteRT, TensorRT) are installed. The plug-ins (the names that installed entry points, plug-in files and
modules register) are listed with where each comes from: that imports them, as any lookup of a name does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgebench.components import Component, Package
from edgebench.errors import ConfigError
from edgebench.executor.runners import runner_for
from edgebench.executor.ssh import PARAMIKO
from edgebench.measure.energy import METERS
from edgebench.registry import Registry
from edgebench.runtimes.base import BACKENDS, EXPORTERS, list_runtimes
from edgebench.targets import TargetSpec, list_targets, load_target_file

#: the extras of features beside the targets: the results store, exports, the cluster and tracking
FEATURE_EXTRAS = (
    Package("psycopg", "psycopg", "PostgreSQL results store (store.url: postgresql+psycopg://...)", extra="postgres"),
    Package("pyarrow", "pyarrow", "Parquet export (edgebench export FILE.parquet)", extra="parquet"),
    Package("ray", "ray", "Ray cluster executor (executor.type: ray)", extra="ray"),
    Package("mlflow", "mlflow", "MLflow tracking (tracking.mlflow, edgebench export --mlflow)", extra="mlflow"),
)


@dataclass(frozen=True)
class Found:
    """A component with what was found: a version or a path, or None."""

    component: Component
    found: str | None

    @property
    def present(self) -> bool:
        return self.found is not None


def declared_components() -> list[Component]:
    """Every package and tool edgebench can use, in declaration order, each once."""
    declared: list[Component] = []
    for runtime in list_runtimes().values():
        declared += runtime.needs
    for name in METERS.names():
        declared += METERS.get(name).needs
    declared += [PARAMIKO, *FEATURE_EXTRAS]
    return list(dict.fromkeys(declared))


def components() -> list[Found]:
    """Every declared package and tool, with what was found."""
    return [Found(c, c.found()) for c in declared_components()]


def kind(component: Component) -> str:
    """"package" or "tool", for the doctor table."""
    return "package" if isinstance(component, Package) else "tool"


@dataclass
class TargetStatus:
    """One target's availability and what it lacks."""

    name: str
    spec: TargetSpec | None
    reason: str | None
    needs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: the file does not load (``reason`` says why): bad input, not a target that cannot run here
    broken: bool = False
    #: an available target's backends that cannot run here, with why (its jobs on them are "not run")
    partial: str | None = None
    #: why the energy meter of a target measured on this machine cannot read here (its jobs measure without energy)
    no_energy: str | None = None

    @property
    def available(self) -> bool:
        return self.reason is None

    @property
    def state(self) -> str:
        """available, unavailable or broken."""
        return "broken" if self.broken else "available" if self.available else "unavailable"


@dataclass(frozen=True)
class Plugin:
    """A name registered by something other than edgebench, and where it comes from."""

    kind: str
    name: str
    origin: str


def plugin_registries() -> list[Registry]:
    """Every registry a plug-in can add to."""
    from edgebench.data.registry import DATASETS
    from edgebench.models import MODELS
    from edgebench.prune.allocation import ALLOCATIONS
    from edgebench.prune.criteria import CRITERIA
    from edgebench.prune.schedules import SCHEDULES
    from edgebench.prune.sparse import SPARSE_METHODS

    return [MODELS, DATASETS, CRITERIA, SCHEDULES, ALLOCATIONS, SPARSE_METHODS, BACKENDS, EXPORTERS, METERS]


def registered_plugins() -> tuple[list[Plugin], list[str]]:
    """The registered plug-ins of every kind, and the one-line error of each installed entry point that does not
    load (reported, not raised: the rest still load). Call it before anything looks a name up, which would raise
    at the first broken entry point instead."""
    failed: list[str] = []
    found = []
    for registry in plugin_registries():
        failed += registry.load_reporting()
        found += [Plugin(registry.kind, name, origin) for name in registry.names() if (origin := registry.origin(name))]
    return found, failed


def target_statuses(extra_dir: Path | None = None, check: bool = True) -> list[TargetStatus]:
    """Every target file with its availability reason; a broken file is reported, not raised."""
    statuses = []
    for name, path in list_targets(extra_dir).items():
        try:
            spec = load_target_file(path)
        except ConfigError as exc:  # a malformed target file is shown with its error
            statuses.append(TargetStatus(name, None, f"invalid target file: {exc}", broken=True))
            continue
        runner = runner_for(spec)
        needs = runner.needs()
        reason = runner.available() if check else None
        partial = "; ".join(f"{b}: {why}" for b, why in runner.unavailable_backends().items()) if check else ""
        statuses.append(TargetStatus(name, spec, reason, [c.name for c in needs],
                                     [c.name for c in needs if c.found() is None], partial=partial or None,
                                     no_energy=_meter_problem(spec) if check and reason is None else None))
    return statuses


def _meter_problem(spec: TargetSpec) -> str | None:
    """Why the meter of a target measured on this machine cannot read here, as its jobs would find (a RAPL meter
    on a VM without powercap, a power logger's file not there); None where it reads, or the target runs elsewhere
    (an SSH board, a Ray node: its meter is asked there)."""
    from edgebench.measure.energy import UnavailableMeter, create_meter

    if spec.kind != "local" or spec.ray is not None or not spec.energy:
        return None
    meter = create_meter(spec.energy)
    return meter.reason if isinstance(meter, UnavailableMeter) else None
