"""Pinned side-by-side lanes (issue 22, part 2): the SMT-sibling rule on a CPU topology written by hand, the
interference check on this machine's cores with a real artifact, and the sweep's one-core lanes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_sweep import _of, _sweep

from edgebench.executor.base import HOST, Lane
from edgebench.executor.side_by_side import _cpu_list, interference_check, smt_siblings
from edgebench.job import MeasureSettings
from edgebench.prune.allocation.latency.table import LayerShape, layer_onnx
from edgebench.sweep import Measure


def test_smt_siblings_are_read_from_the_kernel_topology(tmp_path: Path) -> None:
    assert _cpu_list("0-3,8\n") == [0, 1, 2, 3, 8] and _cpu_list("5") == [5]
    for core, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():  # 2 cores x 2 hyper-threads
        (tmp_path / f"cpu{core}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{core}" / "topology" / "thread_siblings_list").write_text(siblings + "\n")
    assert smt_siblings([0, 1], tmp_path) == []  # one thread of each physical core: honest lanes
    assert smt_siblings([0, 1, 2, 3], tmp_path) == [(0, 2), (1, 3)]


def test_one_core_has_no_neighbour(tmp_path: Path) -> None:
    verdict = interference_check([0], tmp_path / "unused.onnx", "onnxruntime", np.zeros(1), MeasureSettings())
    assert not verdict.ok and "only 1 core" in verdict.reason and verdict.alone_ms is None


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the check needs two cores to put a neighbour on")
def test_interference_check_times_the_artifact_alone_and_beside_a_busy_neighbour(tmp_path: Path) -> None:
    artifact = tmp_path / "conv.onnx"
    layer_onnx(LayerShape("Conv", 8, 8, (3, 3), (1, 1), (1, 1), (8, 8)), artifact)
    batch = np.ones((1, 8, 8, 8), np.float32)
    timing = MeasureSettings(warmup_iters=5, min_iters=50, min_time_s=0.05, max_time_s=1.0, precision=0.05)
    cores = sorted(os.sched_getaffinity(0))[:2]
    verdict = interference_check(cores, artifact, "onnxruntime", batch, timing)
    assert verdict.alone_ms and verdict.beside_ms and verdict.alone_again_ms  # all three windows measured
    noise = abs(verdict.alone_again_ms / verdict.alone_ms - 1)
    slowdown = verdict.beside_ms / ((verdict.alone_ms + verdict.alone_again_ms) / 2) - 1
    assert verdict.slowdown == pytest.approx(1 + slowdown)
    # the verdict follows the rule on its own figures: refused when noise or a neighbour exceeds the precision
    assert verdict.ok == (noise <= 0.05 and abs(slowdown) <= 0.05)
    assert f"{verdict.beside_ms:.4f} ms" in verdict.reason and ("noise" in verdict.reason or verdict.ok or
                                                                 "busy neighbour moves the p50" in verdict.reason)


def test_measurements_that_ask_take_one_core_each_in_turn(tmp_path: Path) -> None:
    _, plain = _sweep(tmp_path / "plain", ["local-cpu"])
    assert {task.lane for task in _of(plain, Measure)} == {Lane(HOST)}  # no side_by_side cores: one lane
    _, tasks = _sweep(tmp_path / "lanes", ["local-cpu"], measurement={"parallel_lanes": True}, side_by_side=[0, 1])
    measures = _of(tasks, Measure)
    lanes = [task.lane for task in measures]
    assert lanes == [Lane(HOST, frozenset({i % 2})) for i in range(len(measures))]
    assert all(task.worker.cpus == task.lane.cpus for task in measures)  # the warm worker is pinned to its core
    assert all(task.args[0].measure.parallel_lanes is False for task in measures)  # the worker never sees the flag


def test_the_check_times_a_stand_in_as_large_as_the_models_weights() -> None:
    """The digits CNN's 104 KB of weights stay in a core's cache: a small conv stands in. VGG-16 at CIFAR shape
    (15.0 M parameters, 60 MB) does not: a square Gemm of as many weight bytes (3873 x 3873 x 4 B)."""
    from edgebench.executor.side_by_side import stand_in

    small, small_input = stand_in(25_978 * 4)
    assert small.op == "Conv" and small_input == (1, 32, 16, 16)
    big, big_input = stand_in(14_999_882 * 4)
    assert (big.op, big.c_in, big.c_out, big_input) == ("Gemm", 3873, 3873, (1, 3873))


def test_a_meter_reading_more_than_its_process_keeps_its_jobs_out_of_the_lanes(tmp_path: Path) -> None:
    """A wall or package meter reads every lane's work at once: its jobs measured side by side were stored as
    measured energy of each. A per-process estimate may share the lanes."""
    import yaml

    def target(name: str, energy: dict) -> str:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"kind": "local", "backends": ["onnxruntime"], "device": "cpu", "threads": 1,
                                        "energy": energy}))
        return str(path)

    wall = target("wall", {"type": "external_csv", "path": str(tmp_path / "power.csv")})
    estimate = target("estimate", {"type": "estimated", "tdp_w": 15})
    _, tasks = _sweep(tmp_path / "lanes", [wall, estimate], measurement={"parallel_lanes": True}, side_by_side=[0, 1])
    measures = _of(tasks, Measure)
    by_target = {name: [t for t in measures if t.context.job.target.name == name] for name in ("wall", "estimate")}
    assert by_target["wall"] and all(t.lane == Lane(HOST) and t.context.side_by_side_core is None
                                     for t in by_target["wall"])
    assert by_target["estimate"] and all(t.lane.cpus == {t.context.side_by_side_core} for t in by_target["estimate"])
