"""Resume and exactly-once across executors: the driver killed with SIGKILL, a Ray node lost mid-sweep."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml
from ray_cluster import RayCluster

from edgebench.config import load_experiment
from edgebench.errors import ExitCode
from edgebench.pipeline import RunOutcome, run_experiment
from edgebench.store import Store

REPO = Path(__file__).resolve().parent.parent


def _experiment(tmp_path: Path, targets: list[str], **extra: object) -> Path:
    data = {
        "name": "executor", "training": {"epochs": 1},
        "pruning": {"criteria": ["l1"], "ratios": [0.5], "prune_epochs": [0]},
        "quantization": {"precisions": ["fp32"]}, "targets": targets,
        # a fixed window (no precision rule, which could stretch each to its 10 s cap on a busy machine): no test here
        # reads timing statistics
        "measurement": {"min_iters": 20, "min_time_s": 1.0, "warmup_iters": 2, "precision": None},
        "run": {"workdir": str(tmp_path / "runs")}, "report": {"dir": str(tmp_path / "report")}, **extra,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from measurements").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def _driver_past_its_first_measurement(tmp_path: Path) -> tuple[list[str], dict[str, str], Path, Path,
                                                                      subprocess.Popen]:
    """``edgebench run`` of a 2-job experiment started as a process, returned once one measurement is stored:
    (its command, environment, experiment file, store file, process)."""
    target = tmp_path / "ort.yaml"
    target.write_text(yaml.safe_dump({"backends": ["onnxruntime"]}))
    exp_file = _experiment(tmp_path, [str(target)])
    # --no-report: no test here reads the report (the resumed run still prints where the jobs ran)
    command = [sys.executable, "-c", "from edgebench.cli import app; app()", "run", str(exp_file), "--no-report"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    db = tmp_path / "runs" / "results.db"
    driver = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _stored(db) < 1:
        assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
        assert time.monotonic() < deadline, "no measurement was stored in time"
        time.sleep(0.1)
    return command, env, exp_file, db, driver


def test_driver_killed_with_sigkill_then_the_same_command_finishes_every_job_once(tmp_path: Path) -> None:
    command, env, exp_file, db, driver = _driver_past_its_first_measurement(tmp_path)
    workers = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    stored_before = _stored(db)
    assert workers and psutil.wait_procs(workers, timeout=10)[1] == []  # the workers died with the driver

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"reused {stored_before} stored" in finished.stdout  # resumed, not started over
    exp = load_experiment(exp_file)
    with Store.open(exp.store_url()) as store:
        runs = store.runs()
        assert len(runs) == 1  # the killed run was resumed
        df = store.measurements(runs["id"].iloc[0])
    assert len(df) == 2 and df["job_key"].is_unique and set(df["status"]) == {"ok"}  # 2 variants
    assert all(d["ran_on"]["executor"] == "local" for d in df["details"])
    assert set(df["ran_on"]) == {f"local {socket.gethostname()}"}  # one machine; the worker processes left out
    assert "where the jobs ran" in finished.stdout


def test_sigterm_stops_a_run_as_ctrl_c_does_and_the_run_says_interrupted_until_resumed(tmp_path: Path) -> None:
    """A cancelled CI job sends SIGTERM: the run was left 'running' (compare: "not finished (running)") and its
    workers were not stopped by the driver."""
    command, env, _, db, driver = _driver_past_its_first_measurement(tmp_path)
    workers = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=60)
    assert driver.returncode == ExitCode.INTERRUPTED, out + err
    assert "interrupted: finished jobs are stored; run the same command again to resume" in out
    assert "Traceback" not in out + err
    assert workers and psutil.wait_procs(workers, timeout=10)[1] == []  # stopped by the driver, not orphaned
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status, finished_at from runs").fetchall() == [("interrupted", None)]

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from runs").fetchall() == [("finished",)]  # the same run, resumed


def test_ray_node_lost_mid_sweep_then_the_same_run_finishes_every_job_once(ray_cluster: RayCluster, tmp_path: Path) -> None:
    resource = {"board:sim": 1}
    target = tmp_path / "sim-board.yaml"
    target.write_text(yaml.safe_dump({"backends": ["onnxruntime"], "ray": {"resources": resource}}))
    # the kill lands between the two measurements, whatever their windows: the shortest floor will do
    exp_file = _experiment(tmp_path, [str(target)],
                           executor={"type": "ray", "address": ray_cluster.address, "on_lost": "retry",
                                     "max_retries": 1, "lost_grace_s": 1},
                           measurement={"min_iters": 20, "min_time_s": 0.1, "warmup_iters": 2, "precision": None})
    exp = load_experiment(exp_file)
    node = ray_cluster.add_node("sim-board", resource, num_cpus=1)

    def kill_node_after_first_measurement(stage: str, done: int, total: int, detail: str) -> None:
        if stage == "measure" and done == 1 and node.poll() is None:
            ray_cluster.kill(node)

    start = time.monotonic()
    first = run_experiment(exp, progress=kill_node_after_first_measurement, render=False)
    assert time.monotonic() - start < 150  # the sweep ended although the board never came back
    assert first.measured >= 1 and first.failed and first.measured + len(first.failed) == 2
    assert all("board:sim" in failure and "run the same command again" in failure for failure in first.failed)
    with Store.open(exp.store_url()) as store:
        assert store.runs()["status"].tolist() == ["incomplete"]  # not 'running': nothing drives it until resumed
        lost = store.get_run(first.run_id)["machine"]["not_run"]  # the report's 'Not run' names them
    assert len(lost) == len(first.failed) and all("(lost; run the same command again" in line for line in lost)

    ray_cluster.add_node("sim-board-again", resource, num_cpus=1)
    second = run_experiment(exp, render=False)
    assert second.run_id == first.run_id and second.skipped == first.measured and second.failed == []
    with Store.open(exp.store_url()) as store:
        df = store.measurements(second.run_id)
        assert store.get_run(second.run_id)["machine"]["not_run"] == []  # the resumed run measured them
    assert len(df) == 2 and df["job_key"].is_unique and set(df["status"]) == {"ok"}
    assert all(d["ran_on"]["executor"] == "ray" for d in df["details"])


#: a backend of the experiment's own plug-in file (no package): Ray's workers had never imported it
TEAM_BACKEND = """from edgebench.runtimes.base import BACKENDS
from edgebench.runtimes.onnxruntime.backend import OnnxRuntimeBackend

@BACKENDS.register("team_ort_on_ray")
class TeamOrt(OnnxRuntimeBackend):
    pass
"""


@pytest.fixture(scope="module")
def ray_run_in_a_project(ray_cluster: RayCluster,
                         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunOutcome, pd.DataFrame]:
    """One Ray run, read by the two tests below (a run each cost ~30 s): started in a project directory without
    run.workdir and with a relative dataset path, on the built-in local-cpu target and on one whose backend is the
    experiment's own plug-in file. Returns the project directory, the outcome and its stored measurements."""
    from sklearn.datasets import load_digits

    project = tmp_path_factory.mktemp("project")
    x, y = load_digits(return_X_y=True)
    x = (x.reshape(-1, 8, 8) / 16).astype("float32")
    np.savez(project / "digits.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:], y_test=y[1400:])
    plugin = project / "team_backend.py"
    plugin.write_text(TEAM_BACKEND)
    team_target = project / "team-cpu.yaml"
    team_target.write_text(yaml.safe_dump({"backends": ["team_ort_on_ray"]}))
    exp_file = _experiment(project, ["local-cpu", str(team_target)], plugins=[str(plugin)],
                           executor={"type": "ray", "address": ray_cluster.address},
                           dataset={"name": "npz", "kwargs": {"path": "digits.npz"}},
                           measurement={"min_iters": 20, "min_time_s": 0.05, "warmup_iters": 2, "precision": None})
    data = yaml.safe_load(exp_file.read_text())
    del data["run"]  # the default: runs/executor under the working directory
    exp_file.write_text(yaml.safe_dump(data))
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(project)
        outcome = run_experiment(load_experiment(exp_file), render=False)
        with Store.open(outcome.store_url) as store:  # a path relative to the project
            return project, outcome, store.measurements(outcome.run_id)


def test_a_ray_run_in_the_default_relative_run_directory(
        ray_run_in_a_project: tuple[Path, RunOutcome, pd.DataFrame]) -> None:
    """Without run.workdir (runs/<name>, relative), tasks on the cluster's nodes looked for the run's files in the
    raylet's directory: every job failed, and trained models were written there. A relative dataset path too."""
    project, outcome, measured = ray_run_in_a_project
    # the plug-in target's failures are the next test's
    assert [line for line in outcome.failed if " on local-cpu/" in line] == [], outcome.failed
    df = measured[measured["target"] == "local-cpu"]
    assert len(df) == 4 and set(df["status"]) == {"ok"}  # 2 variants x torch and ONNX Runtime
    assert list((project / "runs" / "executor" / "models").glob("*.pt"))


def test_a_plugin_files_backend_measures_under_ray(
        ray_run_in_a_project: tuple[Path, RunOutcome, pd.DataFrame]) -> None:
    """Every job failed at measurement with "unknown backend 'team_ort_on_ray'" (a helper's run): the Ray workers now
    import the experiment's plugins: files, at the same path, as the local workers do."""
    _, outcome, measured = ray_run_in_a_project
    assert [line for line in outcome.failed if " on team-cpu/" in line] == [], outcome.failed
    df = measured[measured["target"] == "team-cpu"]
    assert len(df) == 2 and set(df["backend"]) == {"team_ort_on_ray"} and set(df["status"]) == {"ok"}
    assert all(d["ran_on"]["executor"] == "ray" for d in df["details"])


def test_no_ray_cluster_at_the_address_is_one_error_before_anything_is_stored(tmp_path: Path,
                                                                               monkeypatch) -> None:
    """Nothing listens at executor.address: a ConfigError naming it within seconds (ray.init would retry for
    minutes), before training, with no store and no run row left behind."""
    import ray

    from edgebench.errors import ConfigError

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exp = load_experiment(_experiment(tmp_path, ["local-cpu"], executor={"type": "ray", "address": f"127.0.0.1:{port}"}))
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"no Ray cluster answers at 127\.0\.0\.1:{port} \(executor\.address: "
                                          rf"127\.0\.0\.1:{port}\): .*start one with `ray start --head` there"):
        run_experiment(exp, render=False)
    assert time.monotonic() - start < 30
    assert not Path(exp.store_url().removeprefix("sqlite:///")).exists() and not (tmp_path / "runs").exists()


def test_a_service_that_is_not_ray_at_the_address_is_one_error_before_anything_is_stored(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """Something other than Ray accepts connections at executor.address (an SSH or web server): ray.init retried it
    for minutes (then a traceback, exit 1, a run row left 'running'); now one ConfigError before anything is stored."""
    import threading

    import ray

    from edgebench.errors import ConfigError

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def greet_and_hang_up() -> None:  # as an SSH server does: a banner line, then nothing a gRPC client expects
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")

    threading.Thread(target=greet_and_hang_up, daemon=True).start()
    exp = load_experiment(_experiment(tmp_path, ["local-cpu"], executor={"type": "ray", "address": f"127.0.0.1:{port}"}))
    start = time.monotonic()
    try:
        with pytest.raises(ConfigError, match=rf"something answers at 127\.0\.0\.1:{port} .* but it is not a Ray "
                                              r"cluster"):
            run_experiment(exp, render=False)
    finally:
        server.close()
    assert time.monotonic() - start < 30
    assert not Path(exp.store_url().removeprefix("sqlite:///")).exists() and not (tmp_path / "runs").exists()


def _refused_before_any_work(tmp_path: Path, target: dict[str, object]) -> tuple[str, Path]:
    """``run_experiment`` of one target file holding ``target``, under the local executor: the NothingToRunError it
    ends with, and the target file; asserts nothing was trained or stored."""

    from edgebench.errors import NothingToRunError

    target_file = tmp_path / "placed.yaml"
    target_file.write_text(yaml.safe_dump({"backends": ["onnxruntime"], "ray": target}))
    exp = load_experiment(_experiment(tmp_path, [str(target_file)]))
    with pytest.raises(NothingToRunError) as refused:
        run_experiment(exp, render=False)
    assert not Path(exp.store_url().removeprefix("sqlite:///")).exists() and not (tmp_path / "runs").exists()
    return str(refused.value), target_file


def test_a_target_pinned_to_a_core_this_process_cannot_use_is_refused_before_any_work(tmp_path: Path) -> None:
    """`ray: {cores: [5]}` on a 2-core machine: the local executor's worker died with a multiprocessing traceback
    (sched_setaffinity: Invalid argument) after training; under Ray it measured unpinned without a word."""
    from edgebench.executor.runners import runner_for
    from edgebench.targets import load_target_file

    usable = sorted(os.sched_getaffinity(0))
    error, target_file = _refused_before_any_work(tmp_path, {"cores": [max(usable) + 1]})
    assert error == (f"nothing could run: target placed: ray.cores [{max(usable) + 1}] names cores this process may not "
                     f"use (it may use {usable}): pin the target to some of those, or remove ray.cores")
    assert runner_for(load_target_file(target_file), executor="ray").available() == error.split("placed: ", 1)[1]


def test_a_board_target_under_the_local_executor_is_refused_before_any_work(tmp_path: Path) -> None:
    """`ray: {resources: {"board:jetson-a": 1}}` with the local executor measured this machine and stored the results
    under the board's name; under Ray the same target measures on the board's node."""
    from edgebench.executor.runners import runner_for
    from edgebench.targets import load_target_file

    error, target_file = _refused_before_any_work(tmp_path, {"resources": {"board:jetson-a": 1}})
    assert error == ("nothing could run: target placed: its ray.resources {'board:jetson-a': 1.0} name a board of a "
                     "Ray cluster, which the local executor cannot reach: run with `--executor ray` (executor.type: "
                     "ray), or remove ray.resources to measure on this machine")
    assert runner_for(load_target_file(target_file), executor="ray").available() is None
