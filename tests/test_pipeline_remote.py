"""A whole (tiny) experiment measured on an SSH target: the real sshd on 127.0.0.1 plays the device."""

from __future__ import annotations

import html
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("paramiko", reason="the 'remote' extra (paramiko) is not installed")

from ray_cluster import BOARDS, RayCluster
from sshd_fixtures import Sshd, free_port

from edgebench.config import load_experiment
from edgebench.errors import NothingToRunError
from edgebench.pipeline import run_experiment
from edgebench.report import render_report
from edgebench.store import Store


def test_experiment_on_ssh_target_lands_in_local_store(sshd: Sshd, tmp_path: Path) -> None:
    target = sshd.spec().model_dump(mode="json", exclude={"name"})
    target_file = tmp_path / "loopback-board.yaml"
    target_file.write_text(yaml.safe_dump(target))
    dead_file = tmp_path / "dead-board.yaml"  # partial availability: the run goes on without it
    dead_file.write_text(yaml.safe_dump({"kind": "ssh", "backends": ["onnxruntime"],
                                         "ssh": {"host": "127.0.0.1", "port": free_port()}}))
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "remote",
        "training": {"epochs": 3},
        "pruning": {"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [1]},
        "quantization": {"precisions": ["fp32", "int8"]},
        "targets": [str(target_file), str(dead_file)],
        "measurement": {"min_iters": 20, "min_time_s": 0.05, "warmup_iters": 2, "precision": None},
        "run": {"workdir": str(tmp_path / "runs")},
        "report": {"dir": str(tmp_path / "report")},
    }))
    outcome = run_experiment(load_experiment(exp_file), render=False)
    assert outcome.failed == [] and len(outcome.unsupported) == 1
    assert outcome.unsupported[0].startswith("target dead-board: host 127.0.0.1") and "unreachable" in outcome.unsupported[0]
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id)
        assert store.get_run(outcome.run_id)["machine"]["not_run"] == outcome.unsupported
        page = render_report(store, outcome.run_id, tmp_path / "later").read_text()  # from the store alone
    assert "<h2>Not run (1)</h2>" in page and html.escape(outcome.unsupported[0]) in page
    assert len(df) == 4 and set(df["target"]) == {"loopback-board"} and set(df["status"]) == {"ok"}
    fp32 = df[df["precision"] == "fp32"]
    assert (fp32["max_abs_diff"] < 1e-4).all()  # the device ran the same model
    assert (df["accuracy"] > 0.5).all() and (df["n_samples"] >= 20).all()


def test_only_unreachable_ssh_target_is_nothing_to_run(tmp_path: Path) -> None:
    """Every job "not run": NothingToRunError (exit code 3) before training, and no store is created."""
    target_file = tmp_path / "dead-board.yaml"
    target_file.write_text(yaml.safe_dump({
        "kind": "ssh", "backends": ["onnxruntime"], "ssh": {"host": "127.0.0.1", "port": free_port()}}))
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "dead", "training": {"epochs": 1}, "pruning": {"criteria": ["l1"], "ratios": [0.5]},
        "quantization": {"precisions": ["fp32"]}, "targets": [str(target_file)],
        "run": {"workdir": str(tmp_path / "runs")},
    }))
    with pytest.raises(NothingToRunError, match=r"nothing could run: target dead-board: host 127\.0\.0\.1:\d+ unreachable"):
        run_experiment(load_experiment(exp_file), render=False)
    assert not (tmp_path / "runs" / "results.db").exists() and not (tmp_path / "runs" / "models").exists()


def test_ssh_board_driven_from_the_ray_task_that_holds_its_resource(sshd: Sshd, ray_cluster: RayCluster,
                                                                    tmp_path: Path) -> None:
    """A board that cannot run Ray: its resource lives on the Ray node that can reach it, and the measurement
    runs there as a Ray task that drives the board over SSH (the real sshd on 127.0.0.1 plays the board).
    Skipped with the reason when the 'ray' extra is missing (the ray_cluster fixture)."""
    # the board's python: logs each command it is given, so the test sees what really went over SSH
    calls = tmp_path / "board-python.log"
    board_python = tmp_path / "board-python"
    board_python.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {sys.executable} "$@"\n')
    board_python.chmod(0o755)
    board = next(iter(BOARDS))
    target = sshd.spec().model_dump(mode="json", exclude={"name"})
    target["ssh"]["python"] = str(board_python)
    target["ray"] = {"resources": {board: 1}}
    target_file = tmp_path / "pi-board.yaml"
    target_file.write_text(yaml.safe_dump(target))
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "ray-ssh", "training": {"epochs": 1},
        "pruning": {"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0]},
        "quantization": {"precisions": ["fp32"]}, "targets": [str(target_file)],
        "measurement": {"min_iters": 20, "min_time_s": 0.05, "warmup_iters": 2, "precision": None},
        "executor": {"type": "ray", "address": ray_cluster.address},
        "run": {"workdir": str(tmp_path / "runs")}, "report": {"dir": str(tmp_path / "report")},
    }))
    outcome = run_experiment(load_experiment(exp_file), render=False)
    assert outcome.failed == [] and outcome.unsupported == []
    with Store.open(outcome.store_url) as store:
        df = store.measurements(outcome.run_id)
    assert len(df) == 2 and set(df["target"]) == {"pi-board"} and set(df["status"]) == {"ok"}
    assert (df["max_abs_diff"] < 1e-4).all() and (df["accuracy"] > 0.3).all()
    assert all(d["ran_on"]["executor"] == "ray" for d in df["details"])  # from a Ray task ...
    lines = calls.read_text().splitlines()
    # the login check before any work (a script of many lines: its worker import stands on a line of its own)
    assert lines.count("import edgebench.measure.worker") == 1
    assert lines.count("-m edgebench.measure.worker job.json result.json") == 2  # each job through the board's sshd
