"""The Ray executor (extra ``ray``): the same tasks on a Ray cluster, boards as Ray custom resources.

Builds and exports fan out over every node with CPUs, one CPU each. A measurement on a local-kind target
runs on the node of the sweep's driver and asks Ray for all of that node's CPUs, so nothing else Ray
schedules shares its cores; one pinned to cores (``ray: {cores: [1]}``) asks for one CPU per core and runs
pinned to them, so targets pinned apart measure side by side. A measurement on a board asks for the board's resource (e.g.
``{"board:jetson-a": 1}``, quantity 1 on one node), so one measurement runs per board while boards run in
parallel. Lanes are granted by the same first-come-first-served scheduler as the local executor.

A board (or node) that leaves the cluster does not hang the sweep: its running task fails with Ray's
node error, its queued tasks wait ``lost_grace_s`` for it to come back, and then each becomes a recorded
failure; with ``on_lost="retry"`` a task lost with its node is queued again up to ``max_retries`` times.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from edgebench.errors import ConfigError, require_module, summarize
from edgebench.executor.base import HOST, Executor, Lane, LaneScheduler, Task, TaskResult
from edgebench.executor.forked import run_forked
from edgebench.executor.host_lanes import HostLanes
from edgebench.executor.inprocess import Outcome, run_task
from edgebench.job import Placement
from edgebench.plugins import PLUGINS_ENV

log = logging.getLogger(__name__)

NODE_PREFIX = "node:"


def import_ray() -> Any:
    """The ray module, or an error naming the extra to install."""
    return require_module("ray", "ray", "the ray executor")


def cluster_problem(address: str, timeout_s: float = 5.0) -> str | None:
    """Why the Ray cluster at ``address`` cannot be joined, found within ``timeout_s`` (``ray.init`` retries an
    address nothing answers at for minutes), or None. ``auto`` is resolved as Ray resolves it (``RAY_ADDRESS``,
    then the cluster ``ray start`` last started here)."""
    from ray._private.services import get_ray_address_from_environment

    try:
        resolved = get_ray_address_from_environment(address, None)
    except ConnectionError:
        return (f"no Ray cluster is running on this machine (executor.address: {address}): start one with "
                "`ray start --head`, or give the head's host:port in executor.address")
    host_port = resolved.split("://", 1)[1] if "://" in resolved else resolved
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or host_port, int(port) if port.isdigit() else 10001), timeout_s) as conn:
            if _speaks_grpc(conn, timeout_s):
                return None
    except OSError as exc:
        return (f"no Ray cluster answers at {resolved} (executor.address: {address}): {exc.strerror or exc}; start "
                "one with `ray start --head` there, or fix executor.address")
    return (f"something answers at {resolved} (executor.address: {address}) but it is not a Ray cluster (no gRPC "
            "server: ray.init would retry it for minutes); give the head's host:port (`ray start --head` prints it)")


def _speaks_grpc(conn: socket.socket, timeout_s: float) -> bool:
    """Whether the server on ``conn`` answers HTTP/2's connection preface with a SETTINGS frame, as Ray's GCS (a
    gRPC server) does; an SSH, HTTP/1 or other service does not."""
    conn.settimeout(timeout_s)
    conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # + an empty SETTINGS
    header = b""
    while len(header) < 9:  # a frame header: length (3 bytes), type (1), flags (1), stream id (4)
        chunk = conn.recv(9 - len(header))
        if not chunk:
            return False
        header += chunk
    return header[3] == 4


def _run_on_node(fn: Any, args: tuple[Any, ...], fork: bool = False, timed: bool = True,
                 driver_dir: str | None = None, cpus: frozenset[int] | None = None) -> Outcome:
    """The Ray task body: run the task in this Ray worker (in a child forked from it with ``fork`` or ``cpus``: a
    measurement's peak RSS is then its own, whatever the Ray worker ran before, and only the child is pinned to
    ``cpus``; a child that dies, a runtime's SIGSEGV, is a failed outcome with the signal and its stack, as the local
    executor records it, and the Ray worker lives on; an untimed task's peak is not reset, nobody reads it) and say
    which node it was. It runs in ``driver_dir``, the driver's working directory, where this node has it (a shared
    filesystem): the experiment's relative paths (a dataset's) are read from there, as on the driver."""
    import ray

    if driver_dir is not None and os.path.isdir(driver_dir):
        os.chdir(driver_dir)
    forked = fork or bool(cpus)
    outcome = pickle.loads(run_forked(fn, args, cpus, survive=True)) if forked else run_task(fn, args, reset_peak=timed)
    context = ray.get_runtime_context()
    outcome.host, outcome.node = ray.util.get_node_ip_address(), context.get_node_id()[:8]
    return outcome


def _waited_on(lane: Lane) -> Placement:
    """Where a task that never reported back was: the lane it was sent to (its node or board is gone)."""
    return Placement(executor="ray", host=str(lane))


@dataclass
class _InFlight:
    task: Task
    lane: Lane
    dispatched: float
    deadline: float


@dataclass
class _Node:
    node_id: str
    cpus: int
    resources: dict[str, float]


class RayExecutor(Executor):
    """Runs tasks as Ray tasks on the cluster at ``address``.

    Args:
        address: ``auto`` (the cluster this machine belongs to), ``host:port`` or ``ray://host:10001``.
        on_lost: what happens to a task whose node or board leaves mid-task: queued again or failed.
        max_retries: how often a lost task is queued again (``on_lost="retry"``).
        lost_grace_s: how long queued tasks wait for a missing board or node before they fail.
        start_slack_s: added to a task's timeout for Ray to start a worker process for it.
    """

    def __init__(
        self,
        address: str = "auto",
        on_lost: Literal["retry", "fail"] = "retry",
        max_retries: int = 1,
        lost_grace_s: float = 30.0,
        start_slack_s: float = 60.0,
        poll_s: float = 0.2,
    ) -> None:
        self.ray = import_ray()
        self._connected_here = not self.ray.is_initialized()
        if self._connected_here:
            if problem := cluster_problem(address):
                raise ConfigError(problem)
            handler = signal.getsignal(signal.SIGTERM)
            self.ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            if callable(handler) and threading.current_thread() is threading.main_thread():
                # Ray's own SIGTERM handler dumps a stack and exits 1 (compare's "regression" code): the CLI's
                # stops the run as Ctrl-C does
                signal.signal(signal.SIGTERM, handler)
        self.on_lost, self.max_retries = on_lost, max_retries
        self.lost_grace_s, self.start_slack_s, self.poll_s = lost_grace_s, start_slack_s, poll_s
        self.driver_node = self.ray.get_runtime_context().get_node_id()
        self._remote = self.ray.remote(max_retries=0)(_run_on_node)
        self._nodes: dict[str, _Node] = {}
        self._dead: set[str] = set()  # nodes a task died with: ray.nodes() says Alive for ~15 s more (ids are not reused)
        self._refreshed = 0.0
        self._missing_since: dict[Lane, float] = {}
        self._ever_offered: set[str] = set()  # resources some node offered while this executor ran (CPU included)
        self._in_flight: dict[Any, _InFlight] = {}
        self.scheduler = LaneScheduler(capacity=self._capacity, lanes_of=self._lanes_of,
                                       host=HostLanes((HOST, NODE_PREFIX + self.driver_node)))
        self._refresh_nodes(force=True)

    # ---- cluster view -----------------------------------------------------------------------------
    def _refresh_nodes(self, force: bool = False) -> None:
        """Re-read the alive nodes and what they offer (at most once a second unless forced)."""
        if not force and time.monotonic() - self._refreshed < 1.0:
            return
        self._refreshed = time.monotonic()
        self._nodes = {
            n["NodeID"]: _Node(n["NodeID"], int(n["Resources"].get("CPU", 0)), n["Resources"])
            for n in self.ray.nodes() if n["Alive"] and n["NodeID"] not in self._dead
        }
        self._ever_offered.update(name for node in self._nodes.values() for name, amount in node.resources.items()
                                  if amount > 0)

    def _offered(self, resources: dict[str, float]) -> bool:
        """Whether one alive node offers all of ``resources``."""
        return any(all(node.resources.get(k, 0) >= v for k, v in resources.items()) for node in self._nodes.values())

    def _capacity(self, lane: Lane) -> int:
        node = self._nodes.get(lane.name.removeprefix(NODE_PREFIX)) if lane.name.startswith(NODE_PREFIX) else None
        return node.cpus if node else 1

    def _lanes_of(self, task: Task) -> list[Lane]:
        if task.resources:
            return [task.lane] if self._offered(task.resources) else []
        if task.lane.name != HOST:
            return [task.lane]
        if task.timed:  # "this host": the driver's node, whose cores (or those it is pinned to) it holds alone
            return [Lane(NODE_PREFIX + self.driver_node, task.lane.cpus)] if self.driver_node in self._nodes else []
        return [Lane(NODE_PREFIX + node.node_id) for node in self._nodes.values() if node.cpus > 0]

    # ---- Executor ---------------------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        self.scheduler.add(task)

    def _dispatch(self, task: Task, lane: Lane) -> None:
        env = {**dict(task.worker.env), "EDGEBENCH_WORKER_KIND": task.worker.name}
        if files := os.environ.get(PLUGINS_ENV):  # the experiment's plugins: files, read at the same path on every
            env[PLUGINS_ENV] = files  # node (a shared filesystem, as for the run directory)
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}}
        if task.resources:
            options.update(num_cpus=0, resources=task.resources)
        elif not lane.name.startswith(NODE_PREFIX):  # a board without a Ray resource: this driver serialises it, and
            # drives it from its own node (whose SSH key, known_hosts and route to the board the run was checked on)
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options.update(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(self.driver_node, soft=False))
        else:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            node_id = lane.name.removeprefix(NODE_PREFIX)
            node = self._nodes.get(node_id)
            if node is None:  # it left since the lane was granted: queue the task again, in its place
                self.scheduler.finished(task)
                self.scheduler.add(task, front=True)
                return
            # a measurement pinned to cores asks Ray for as many CPUs: lanes pinned apart measure side by side
            cpus = (node.cpus if lane.cpus is None else min(len(lane.cpus), node.cpus)) if task.timed else 1
            options.update(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
        task.attempts += 1
        ref = self._remote.options(**options).remote(task.fn, task.args, task.worker.fork_per_task, task.timed,
                                                     os.getcwd(), lane.cpus)
        now = time.monotonic()
        self._in_flight[ref] = _InFlight(task, lane, now, now + task.timeout_s + self.start_slack_s)

    def results(self) -> Iterator[TaskResult]:
        ray = self.ray
        while len(self.scheduler):
            self._refresh_nodes()
            for task, lane in self.scheduler.start_ready():
                self._dispatch(task, lane)
            yield from self._fail_unplaceable()
            if not self._in_flight:
                time.sleep(self.poll_s)
                continue
            refs = list(self._in_flight)
            ready, rest = ray.wait(refs, num_returns=1, timeout=self.poll_s)
            if rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                result = self._finish(ref)
                if result is not None:
                    yield result
            yield from self._expire()

    def _finish(self, ref: Any) -> TaskResult | None:
        """The result of a finished Ray task, or None when it was lost and queued again."""
        exceptions = self.ray.exceptions
        flight = self._in_flight.pop(ref)
        self.scheduler.finished(flight.task)
        wall = time.monotonic() - flight.dispatched
        try:
            outcome: Outcome = self.ray.get(ref)
        except (exceptions.NodeDiedError, exceptions.TaskUnschedulableError, exceptions.LocalRayletDiedError) as exc:
            if flight.lane.name.startswith(NODE_PREFIX):  # its retry must not be pinned to the same dead node
                self._dead.add(flight.lane.name.removeprefix(NODE_PREFIX))
                self._refresh_nodes(force=True)
            return self._lost(flight, summarize(exc))
        except (exceptions.ObjectLostError, exceptions.OwnerDiedError) as exc:
            return self._lost(flight, summarize(exc))
        except exceptions.WorkerCrashedError as exc:
            if self._lane_gone(flight.lane, flight.task):
                return self._lost(flight, "its node left the cluster")
            return TaskResult(flight.task, "failed", error=summarize(exc),
                              detail=str(exc), where=_waited_on(flight.lane), wall_s=wall)
        except exceptions.RayError as exc:
            return TaskResult(flight.task, "failed", error=summarize(exc),
                              detail=str(exc), where=_waited_on(flight.lane), wall_s=wall)
        return TaskResult(flight.task, "ok" if outcome.status == "ok" else "failed", value=outcome.value,
                          error=outcome.error, detail=outcome.detail,
                          where=Placement(executor="ray", host=outcome.host, node=outcome.node, pid=outcome.pid),
                          started=outcome.started, ended=outcome.ended, wall_s=wall, warnings=tuple(outcome.warnings))

    def _lane_gone(self, lane: Lane, task: Task, wait_s: float = 3.0) -> bool:
        """Whether ``lane``'s node or board has left the cluster (Ray may take a moment to notice)."""
        deadline = time.monotonic() + wait_s
        while True:
            self._refresh_nodes(force=True)
            gone = not self._offered(task.resources) if task.resources else lane.name.removeprefix(NODE_PREFIX) not in self._nodes
            if gone or time.monotonic() > deadline:
                return gone
            time.sleep(0.2)

    def _lost(self, flight: _InFlight, why: str) -> TaskResult | None:
        task = flight.task
        where = _waited_on(flight.lane)
        if self.on_lost == "retry" and task.attempts <= self.max_retries:
            log.warning("task %s lost on %s (%s): queued again", task.key, flight.lane, why)
            self.scheduler.add(task, front=True)
            return None
        return TaskResult(task, "failed", error=f"lost: {flight.lane} left the cluster during the task ({why}); "
                          f"{task.attempts} attempt(s)", where=where, wall_s=time.monotonic() - flight.dispatched,
                          lost=True)

    def _expire(self) -> Iterator[TaskResult]:
        """Cancel tasks past their deadline, and tasks whose board vanished under them."""
        now = time.monotonic()
        for ref, flight in list(self._in_flight.items()):
            gone = bool(flight.task.resources) and not self._offered(flight.task.resources)
            if gone:
                self._missing_since.setdefault(flight.lane, now)
            if now > flight.deadline or (gone and now - self._missing_since[flight.lane] > self.lost_grace_s):
                self.ray.cancel(ref, force=True)
                del self._in_flight[ref]
                self.scheduler.finished(flight.task)
                if now > flight.deadline:
                    yield TaskResult(flight.task, "failed", where=_waited_on(flight.lane), wall_s=now - flight.dispatched,
                                     error=f"timed out after {flight.task.timeout_s:g} s (Ray task cancelled)")
                else:
                    result = self._lost(flight, "its resource is no longer offered")
                    if result is not None:
                        yield result

    def _fail_unplaceable(self) -> Iterator[TaskResult]:
        """Fail queued tasks whose board or node has been missing for longer than ``lost_grace_s``."""
        now = time.monotonic()
        missing = {task.lane for task in self.scheduler.queue if not self._lanes_of(task)}
        for lane in list(self._missing_since):
            if lane not in missing and not any(f.lane == lane for f in self._in_flight.values()):
                del self._missing_since[lane]  # it came back
        for lane in missing:
            self._missing_since.setdefault(lane, now)
        expired = {lane for lane in missing if now - self._missing_since[lane] > self.lost_grace_s}
        if not expired:
            return
        for task in self.scheduler.take_queued(lambda t: t.lane in expired and not self._lanes_of(t)):
            needs = task.resources or "a node with CPUs"
            offered = set(task.resources or ("CPU",)) <= self._ever_offered
            why = (f"gone for more than {self.lost_grace_s:g} s" if offered else
                   f"none offered it since the run started: waited {self.lost_grace_s:g} s")
            yield TaskResult(task, "failed", where=_waited_on(task.lane), lost=True,
                             error=f"no node of the Ray cluster offers {needs} ({why}): start the board's node with "
                                   "`ray start --address=... --resources=...` and run the same command again to "
                                   "measure what is missing")

    def close(self) -> None:
        self.scheduler.close()
        for ref in list(self._in_flight):
            self.ray.cancel(ref, force=True)
        self._in_flight.clear()
        if self._connected_here:
            self.ray.shutdown()
