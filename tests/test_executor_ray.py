"""The Ray executor on a real two-node cluster (conftest's `ray start` head + a node with two fake boards).

A node lost mid-sweep is tested with the whole pipeline (test_pipeline_executor.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from executor_tasks import cores_after_meeting, measure_after_meeting, pid_after, segfault, warn_twice_and_fail
from ray_cluster import BOARDS, RayCluster
from torch import nn

from edgebench.executor.base import HOST, Lane, Task, WorkerKind
from edgebench.executor.tasks import call_task, job_result, measure_task
from edgebench.job import Job, MeasureSettings
from edgebench.runtimes.onnxruntime.export import export_fp32_onnx

pytest.importorskip("ray", reason="the 'ray' extra is not installed: pip install -c constraints.txt -e '.[ray]'")

from edgebench.executor.ray_executor import RayExecutor


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    root = tmp_path_factory.mktemp("onnx")
    x = torch.randn(32, 3, 8, 8)
    export_fp32_onnx(model, x[:1], root / "model.onnx")
    with torch.no_grad():
        np.savez(root / "eval.npz", x=x.numpy(), y=model(x).numpy().argmax(1))
    return root / "model.onnx", root / "eval.npz"


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_one_measurement_per_board_and_boards_in_parallel(ray_cluster: RayCluster, onnx_files: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    model, data = onnx_files
    settings = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.4, precision=None)
    tasks = []
    first, second = (str(tmp_path / f"{board}-started") for board in BOARDS)
    meetings = {board: (here, other) for board, here, other in zip(BOARDS, (first, second), (second, first))}
    for board in BOARDS:
        for i in range(3):
            job = Job(job_id=f"{board}-{i}", variant_id="v", target=board, backend="onnxruntime", artifact=str(model),
                      eval_data=str(data), measure=settings)
            # each board's first measurement starts once the other board's has: whichever board's worker came up
            # first, the two must then be running at once (or that task fails, saying the boards ran in turn)
            meet = {"fn": measure_after_meeting, "args": (job, *meetings[board])} if i == 0 else {}
            tasks.append(measure_task(job, timeout_s=120, lane=Lane(board), resources={board: 1}, **meet))
    with RayExecutor(lost_grace_s=10) as executor:
        results = list(executor.run(tasks))

    assert sorted(r.key for r in results) == sorted(t.key for t in tasks)  # every result, once
    assert all(r.ok and job_result(r).status == "ok" for r in results), [r.error for r in results]
    assert all(job_result(r).accuracy == 1.0 for r in results)  # real ONNX Runtime runs on the board's node
    windows = {board: [(r.started, r.ended) for r in results if r.key.startswith(board)] for board in BOARDS}
    for board, spans in windows.items():
        assert not any(_overlap(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]), f"{board} ran two at once"
    a, b = windows.values()
    assert any(_overlap(x, y) for x in a for y in b), "the two boards never measured at the same time"
    board_node = {r.where.node for r in results}
    assert len(board_node) == 1  # both boards live on the second node
    assert all(job_result(r).ran_on.executor == "ray" for r in results)


def test_a_board_without_a_ray_resource_is_driven_from_the_drivers_node(ray_cluster: RayCluster) -> None:
    """An SSH board with no Ray resource is reached with this machine's key and route: each of its tasks is pinned
    to the driver's node (Ray would otherwise place a zero-CPU task on any node, a board node included), one at a
    time."""
    import dataclasses

    tasks = [dataclasses.replace(call_task(f"board-{i}", "measure", pid_after, 0.3), lane=Lane("board:10.0.0.5:22"),
                                 timed=True) for i in range(6)]
    asked: list[dict] = []
    with RayExecutor() as executor:
        remote = executor._remote
        executor._remote = type("Recorded", (), {"options": lambda _self, **o: asked.append(o) or remote.options(**o)})()
        results = list(executor.run(tasks))
        driver = executor.driver_node
    assert all(r.ok for r in results), [r.error for r in results]
    assert len(asked) == 6 and all(o["num_cpus"] == 0 and o["scheduling_strategy"].node_id == driver
                                   and o["scheduling_strategy"].soft is False for o in asked)
    assert {r.where.node for r in results} == {driver[:8]}
    spans = sorted((r.started, r.ended) for r in results)
    assert all(a[1] <= b[0] for a, b in pairwise(spans))  # serialised by the driver


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: no two targets can be pinned apart")
def test_measurements_pinned_apart_run_side_by_side_each_on_its_own_cores(ray_cluster: RayCluster,
                                                                          tmp_path: Path) -> None:
    """A target pinned with ``ray: {cores: [1]}`` had measured on every core of the driver's node under Ray (the pin
    was dropped with the lane's cores), while the local executor honoured it."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    here, there = str(tmp_path / "first-started"), str(tmp_path / "second-started")
    tasks = [Task(key=f"pinned-{core}", kind="measure", fn=cores_after_meeting, args=meeting, timed=True, timeout_s=120,
                  lane=Lane(HOST, frozenset({core})), worker=WorkerKind(f"measure-cpus{core}", cpus=frozenset({core}),
                                                                       fork_per_task=True))
             for core, meeting in ((first, (here, there)), (second, (there, here)))]
    with RayExecutor() as executor:
        results = {r.key: r for r in executor.run(tasks)}
        driver = executor.driver_node
    assert all(r.ok for r in results.values()), [r.error for r in results.values()]  # they met: side by side
    assert results[f"pinned-{first}"].value == {first} and results[f"pinned-{second}"].value == {second}
    assert {r.where.node for r in results.values()} == {driver[:8]}


def test_a_measurement_that_dies_by_a_signal_is_recorded_as_locally_and_its_ray_worker_lives_on(
        ray_cluster: RayCluster) -> None:
    """A runtime's SIGSEGV in the forked measurement child ran Ray's own handler, inherited from the Ray worker, which
    took the worker down: Ray's 'WorkerCrashedError: The worker died unexpectedly' was stored instead of the signal
    and the Python stack the local executor records."""
    worker = WorkerKind("measure-crash", fork_per_task=True)
    tasks = [Task(key=key, kind="measure", fn=fn, timed=True, timeout_s=120, worker=worker, args=args)
             for key, fn, args in (("crash", segfault, ()), ("after", pid_after, (0.0,)))]
    with RayExecutor() as executor:
        results = {r.key: r for r in executor.run(tasks)}
    crash = results["crash"]
    assert not crash.ok and crash.error.startswith("worker killed by SIGSEGV (Segmentation fault): File "), crash.error
    assert crash.error.endswith("in segfault") and "Fatal Python error: Segmentation fault" in crash.detail
    assert results["after"].ok and results["after"].where.pid == crash.where.pid  # the same Ray worker, alive


def test_a_board_no_node_ever_offered_is_not_said_to_be_gone(ray_cluster: RayCluster) -> None:
    """A board resource no node offered while the run waited was reported as "gone for more than 1 s"."""
    task = call_task("on-a-board-never-started", "measure", pid_after, 0.0)
    task.lane, task.resources, task.timed = Lane("board:never"), {"board:never": 1.0}, True
    with RayExecutor(lost_grace_s=1) as executor:
        (result,) = executor.run([task])
    assert result.lost and result.error.startswith("no node of the Ray cluster offers {'board:never': 1.0} (none "
                                                   "offered it since the run started: waited 1 s): start the board's node")


def test_builds_fan_out_over_both_nodes(ray_cluster: RayCluster) -> None:
    tasks = [call_task(f"build-{i}", "build", pid_after, 0.5) for i in range(6)]
    tasks.append(call_task("warns", "build", warn_twice_and_fail, False))
    with RayExecutor() as executor:
        results = list(executor.run(tasks))
    assert sorted(r.key for r in results) == sorted(t.key for t in tasks) and all(r.ok for r in results)
    nodes = {r.where.node for r in results}
    assert len(nodes) == 2  # the head's 2 CPUs and the board node's 1 CPU both took builds
    assert {r.key: r.warnings for r in results}["warns"] == ("asked 10%, removed 22%",)  # back to the driver


def test_a_build_lost_with_its_node_is_built_again_on_a_live_node(ray_cluster: RayCluster) -> None:
    """A node killed (SIGKILL) during a build: ray.nodes() lists it alive for ~15 s more, so the retry went to the
    same dead node and failed again ('2 attempt(s)') while the head had free cores."""
    node = ray_cluster.add_node("doomed", {"doomed": 1}, num_cpus=1)
    tasks = [call_task(f"build-{i}", "build", pid_after, 4.0) for i in range(6)]  # head 2, board node 1, doomed 1

    def kill_soon() -> None:
        time.sleep(2.0)
        os.killpg(node.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    with RayExecutor(on_lost="retry", max_retries=1, lost_grace_s=3) as executor:
        results = list(executor.run(tasks))
    killer.join()
    assert sorted(r.key for r in results) == sorted(t.key for t in tasks)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
