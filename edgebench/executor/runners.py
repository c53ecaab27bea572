"""Runners: where a target's measurement jobs run, behind one interface (LoadGen's system under test).

The pipeline never branches on where a target lives: it asks the target's runner whether it can run now
(``available``), what it needs (``needs``, for ``edgebench doctor``), what a measurement holds alone
(``lane``, ``resources``), how long one may take (``task_timeout``) and to run a job (``run``). A local
target's job runs in the executor's worker process on this machine; an SSH target copies the artifact and
job to the device and runs the same worker there.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from edgebench.components import Component, missing_reason
from edgebench.errors import first_line
from edgebench.executor.base import HOST, Lane
from edgebench.job import Job, JobResult
from edgebench.runtimes.base import BACKENDS, get_backend
from edgebench.targets import TargetSpec

#: a target's default when the experiment gives no job timeout
DEFAULT_TIMEOUT_S = 300.0


class Runner(ABC):
    """Runs measurement jobs of one target."""

    def __init__(self, target: TargetSpec, timeout_s: float = DEFAULT_TIMEOUT_S, executor: str = "local") -> None:
        self.target = target
        self.timeout_s = timeout_s
        #: the executor type the jobs run under (``executor.type``): a Ray resource names a board only under Ray
        self.executor = executor

    def resources(self) -> dict[str, float]:
        """The Ray resources that stand for the target's board (``ray: {resources: ...}``); {} when none."""
        return dict(self.target.ray.resources) if self.target.ray else {}

    def board(self) -> str:
        """What names the device the jobs run on: the target (an SSH runner: its host and port, so two target
        files for one board share its lane)."""
        return self.target.name

    def lane(self) -> Lane:
        """What a measurement holds alone (no two time on it at once): the board, named by its Ray resource
        when the target declares one."""
        resources = self.resources()
        return Lane(",".join(sorted(resources))) if resources else Lane(f"board:{self.board()}")

    def task_timeout(self) -> float:
        """How long a measurement task of this target may take, from hand-over to result."""
        return self.timeout_s

    @abstractmethod
    def available(self) -> str | None:
        """None when jobs can run now, else why not (a missing package, no GPU, an unreachable host)."""

    def unavailable_backends(self) -> dict[str, str]:
        """Backends of an available target that cannot run here, with why; its other backends still run."""
        return {}

    @abstractmethod
    def needs(self) -> list[Component]:
        """Packages and tools this machine needs to run the target's jobs."""

    @abstractmethod
    def run(self, job: Job, files: Sequence[Path]) -> JobResult:
        """Run ``job``; ``files`` are the local paths it names (artifact, eval data, reference)."""


class LocalRunner(Runner):
    """Jobs run on this machine, in an executor's warm worker process (a crash or hang fails that job only)."""

    def lane(self) -> Lane:
        """This host's cores (only those the target is pinned to, with ``ray: {cores: [...]}``), unless the
        target names a Ray resource of its own."""
        if self.resources():
            return super().lane()
        cores = self.target.ray.cores if self.target.ray else None
        return Lane(HOST, frozenset(cores) if cores else None)

    def _build_steps(self) -> list[Component]:
        """What the target's runtime blocks ask of this machine (an FPGA target that synthesises: its HLS tool)."""
        return [component for block in self.target.blocks.values() for component in block.needs()]

    def available(self) -> str | None:
        """Why none of the target's backends can run here (its placement cannot be honoured, or its build tool is
        missing); None when one can."""
        if placement := self._placement_problem():
            return placement
        missing = self.unavailable_backends()
        reasons = [f"{name}: {reason}" for name, reason in missing.items()] if len(missing) == len(self.target.backends) else []
        if build := missing_reason(self._build_steps()):
            reasons.append(build)
        return "; ".join(reasons) or None

    def _placement_problem(self) -> str | None:
        """Why the target's ``ray:`` block cannot be honoured by this executor on this machine, or None."""
        ray = self.target.ray
        if ray is None:
            return None
        if ray.resources:  # measured on the board's node under Ray; here, this machine would pass for the board
            if self.executor == "ray":
                return None
            return (f"its ray.resources {ray.resources} name a board of a Ray cluster, which the {self.executor} "
                    "executor cannot reach: run with `--executor ray` (executor.type: ray), or remove ray.resources "
                    "to measure on this machine")
        usable = os.sched_getaffinity(0)
        if ray.cores and not set(ray.cores) <= usable:  # under Ray too: the measurement runs on the driver's node
            return (f"ray.cores {ray.cores} names cores this process may not use (it may use {sorted(usable)}): pin "
                    "the target to some of those, or remove ray.cores")
        return None

    def unavailable_backends(self) -> dict[str, str]:
        # a GPU target lists torch_cuda, onnxruntime_cuda and tensorrt: a machine with a CUDA torch and no
        # TensorRT still measures on torch_cuda
        return {name: reason for name in self.target.backends if (reason := _availability(name))}

    def needs(self) -> list[Component]:
        found: list[Component] = []
        for name in self.target.backends:
            found += [c for c in get_backend(name).needs if c not in found]
        return found + self._build_steps()

    def run(self, job: Job, files: Sequence[Path]) -> JobResult:
        """Measure in this process: the executor's worker, which holds the host's lane, is the isolation."""
        from edgebench.measure.worker import execute

        return execute(job)


class SSHRunner(Runner):
    """Jobs run on a device over SSH; its backends live there, so the login check asks the board's python to import
    them."""

    def __init__(self, target: TargetSpec, timeout_s: float = DEFAULT_TIMEOUT_S, executor: str = "local",
                 connect_timeout_s: float = 1.5) -> None:
        super().__init__(target, timeout_s, executor)
        if target.ssh is None:
            raise ValueError(f"target {target.name} has no ssh block")
        self.ssh = target.ssh
        self.connect_timeout_s = connect_timeout_s
        self._missing: dict[str, str] = {}

    def board(self) -> str:
        return f"{self.ssh.host}:{self.ssh.port}"

    def task_timeout(self) -> float:
        """The device's command timeout and reconnect attempts bound a job, not the experiment's job timeout."""
        ssh = self.ssh
        return (ssh.command_timeout_s + 3 * ssh.connect_timeout_s) * (ssh.retries + 1) + 60.0

    def needs(self) -> list[Component]:
        from edgebench.executor.ssh import PARAMIKO

        return [PARAMIKO]

    def available(self) -> str | None:
        if missing := missing_reason(self.needs()):
            return missing
        try:
            with socket.create_connection((self.ssh.host, self.ssh.port), timeout=self.connect_timeout_s):
                pass
        except OSError as exc:
            return (f"host {self.ssh.host}:{self.ssh.port} unreachable ({exc.strerror or exc}); check ssh.host and "
                    "ssh.port in the target file, and that the board is up and runs sshd")
        if self.ssh.key_file and not Path(self.ssh.key_file).expanduser().exists():  # else connect() says why
            return f"ssh.key_file {self.ssh.key_file} does not exist; give the path of the private key"
        from edgebench.executor.ssh import missing_module_reason, probe

        modules = {name: BACKENDS.get(name).imports() for name in self.target.backends}
        reason, failed = probe(self.ssh, sorted({m for found in modules.values() for m in found}))
        self._missing = {name: missing_module_reason(module, failed[module], self.ssh) for name, found in modules.items()
                         if (module := next((m for m in found if m in failed), None))}
        if reason or len(self._missing) < len(self.target.backends):  # the others of its backends still run
            return reason
        return "; ".join(f"{name}: {why}" for name, why in self._missing.items())

    def unavailable_backends(self) -> dict[str, str]:
        """Backends whose runtime the board's python could not import when ``available`` logged in."""
        return self._missing

    def run(self, job: Job, files: Sequence[Path]) -> JobResult:
        """The device's own command timeout (``ssh.command_timeout_s``) bounds the job: engine builds on a
        Jetson can take longer than a local job may."""
        from edgebench.executor.ssh import run_job_remote

        return run_job_remote(job, self.target, files)


RUNNERS: dict[str, type[Runner]] = {"local": LocalRunner, "ssh": SSHRunner}


def runner_for(target: TargetSpec, timeout_s: float = DEFAULT_TIMEOUT_S, executor: str = "local") -> Runner:
    """The runner of ``target`` (by its ``kind``) for jobs run under ``executor`` (``executor.type``)."""
    return RUNNERS[target.kind](target, timeout_s, executor)


def _availability(backend: str) -> str | None:
    """Why ``backend`` cannot run here (None: it can); a plug-in backend whose check raises is unavailable with that
    error, rather than stopping every target's run before it starts."""
    try:
        return get_backend(backend).available()
    except Exception as exc:
        return f"its available() raised {type(exc).__name__}: {first_line(exc)}"
