"""A throwaway Ray cluster started with `ray start` (tests and benchmark scripts): a head, then nodes.

Every process gets its own ports and temp directory and binds the loopback address 127.0.0.2 (Ray turns
127.0.0.1 into the machine's network address); ``start_cluster`` tears everything down on exit.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NODE_IP = "127.0.0.2"
#: the fake boards of the second node of the tests' session cluster (conftest's ``ray_cluster``)
BOARDS = {"board:a": 1, "board:b": 1}


@dataclass
class RayCluster:
    """A head started by the tests, plus the nodes added to it."""

    address: str
    temp_root: Path
    env: dict[str, str]
    ports: Iterator[int]
    processes: list[subprocess.Popen] = field(default_factory=list)
    temp_dirs: list[Path] = field(default_factory=list)

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen:
        # Ray's socket paths live under the temp dir and must fit in 107 bytes: keep it short
        temp_dir = Path(tempfile.mkdtemp(prefix="ebray-"))
        self.temp_dirs.append(temp_dir)
        p = self.ports
        base = next(p)
        command = [
            str(Path(sys.executable).with_name("ray")), "start", "--block", "--disable-usage-stats",
            f"--node-ip-address={NODE_IP}", f"--temp-dir={temp_dir}", f"--node-manager-port={base}",
            f"--object-manager-port={base + 1}", f"--metrics-export-port={base + 2}",
            f"--dashboard-agent-listen-port={base + 3}", f"--dashboard-agent-grpc-port={base + 4}",
            f"--runtime-env-agent-port={base + 5}", f"--min-worker-port={base + 10}", f"--max-worker-port={base + 60}",
            "--object-store-memory=100000000", *args,
        ]
        log = (self.temp_root / f"{log_name}.log").open("w")
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def add_node(self, name: str, resources: dict[str, float], num_cpus: int = 0, timeout_s: float = 60) -> subprocess.Popen:
        """Start a node joining the head with ``resources``; returns once the cluster lists it."""
        import ray

        process = self._start(["--address", self.address, f"--num-cpus={num_cpus}",
                               f"--resources={json.dumps(resources)}"], name)
        deadline = time.monotonic() + timeout_s
        key = next(iter(resources))
        while ray.cluster_resources().get(key, 0) < resources[key]:
            if process.poll() is not None or time.monotonic() > deadline:
                log_tail = (self.temp_root / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"ray node {name} did not join:\n{log_tail}")
            time.sleep(0.2)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        """Stop one node the way a board dropping out would look: its processes end."""
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            pass  # a node slow to stop on SIGTERM (a loaded machine) is killed below, as a dead board would be
        finally:
            with contextlib.suppress(ProcessLookupError):  # whatever the node left behind (its session only)
                os.killpg(process.pid, signal.SIGKILL)




@contextlib.contextmanager
def start_cluster(temp_root: Path, head_cpus: int = 2, head_resources: dict[str, float] | None = None,
                  extra_paths: tuple[Path, ...] = ()) -> Iterator[RayCluster]:
    """A head on free ports with ``head_cpus`` CPUs, this driver connected to it; all stopped on exit.

    ``extra_paths`` go on the workers' PYTHONPATH besides the repository (modules of test tasks).
    """
    import ray

    base = random.Random().randrange(20000, 60000, 100)
    paths = [str(REPO), *map(str, extra_paths), os.environ.get("PYTHONPATH", "")]
    # a node stopped here stops at once, as a board that drops out does: on SIGTERM `ray start` would first drain
    # it for up to 30 s while a driver still holds a worker lease there
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               PYTHONPATH=os.pathsep.join(paths))
    cluster = RayCluster(f"{NODE_IP}:{base}", temp_root, env, itertools.count(base + 100, 100))
    head_args = ["--head", f"--port={base}", f"--num-cpus={head_cpus}", "--include-dashboard=false",
                 f"--ray-client-server-port={base + 1}"]
    if head_resources:
        head_args.append(f"--resources={json.dumps(head_resources)}")
    head = cluster._start(head_args, "head")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray head did not start: see {temp_root}/head.log") from None
                time.sleep(0.5)
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for process in reversed(cluster.processes):
            cluster.kill(process)
        for temp_dir in cluster.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)
