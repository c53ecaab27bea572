"""Two edgebench processes on one host: shared cache files and host-wide lanes (real runs, real subprocesses)."""

from __future__ import annotations

import fcntl
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from experiment_files import default_with

from edgebench.executor.base import Lane, Task
from edgebench.executor.host_lanes import LOCK_DIR_ENV, HostLanes
from edgebench.store import Store


def _timed(key: str, lane: Lane | None = None) -> Task:
    return Task(key=key, kind="measure", fn=print, lane=lane or Lane(), timed=True)


def test_host_lanes_queue_first_come_first_served(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = HostLanes(directory=tmp_path), HostLanes(directory=tmp_path)  # as two processes would
    a, b, c = _timed("a"), _timed("b"), _timed("c")
    assert first.acquire(a, Lane())
    assert not second.acquire(b, Lane())  # first holds every core: b takes a ticket and waits
    first.release(a)
    assert not first.acquire(c, Lane())  # first wants the cores again, but b has waited longer
    assert f"held by an earlier waiter (edgebench pid {os.getpid()})" in caplog.text  # which process to look at
    assert second.acquire(b, Lane()) and second.note(b).waited_s > 0
    second.release(b)
    assert first.acquire(c, Lane())
    first.release(c)


def test_waits_for_one_holder_are_warned_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every job of a sweep beside another process's run warned that it waited (236 lines in one compare)."""
    import logging

    holder, waiter = HostLanes(directory=tmp_path), HostLanes(directory=tmp_path)
    a = _timed("a")
    assert holder.acquire(a, Lane())
    with caplog.at_level(logging.INFO, logger="edgebench.executor.host_lanes"):
        for key in ("b", "c", "d"):
            task = _timed(key)
            assert not waiter.acquire(task, Lane())
            waiter.release(task)
    waits = [r for r in caplog.records if "waits for the host's cores" in r.getMessage()]
    assert [r.levelno for r in waits] == [logging.WARNING, logging.INFO, logging.INFO]
    assert "later waits for it are logged at INFO" in waits[0].getMessage()
    holder.release(a)


def test_a_waits_end_is_logged_at_its_waits_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The waits after the first for one holder were INFO, as said, but each one's end ("got the host's cores after
    waiting 0.4 s") was a warning: 141 of a sweep's 152 warning lines."""
    import logging

    holder, waiter = HostLanes(directory=tmp_path), HostLanes(directory=tmp_path)
    a = _timed("a")
    assert holder.acquire(a, Lane())
    tasks = [_timed(key) for key in ("b", "c", "d")]
    with caplog.at_level(logging.INFO, logger="edgebench.executor.host_lanes"):
        for task in tasks:  # each waits for a, and is let go: its wait and its end are said
            assert not waiter.acquire(task, Lane())
            holder.release(a)
            assert waiter.acquire(task, Lane())
            waiter.release(task)
            assert holder.acquire(a, Lane())
    said = {(r.getMessage().split()[0], "end" if "got the host's cores" in r.getMessage() else "wait"): r.levelno
            for r in caplog.records if r.getMessage().split()[0] in "bcd"}
    assert said == {("b", "wait"): logging.WARNING, ("b", "end"): logging.WARNING, ("c", "wait"): logging.INFO,
                    ("c", "end"): logging.INFO, ("d", "wait"): logging.INFO, ("d", "end"): logging.INFO}
    holder.release(a)


def test_host_lanes_lock_cores_not_the_whole_host(tmp_path: Path) -> None:
    one, other = HostLanes(directory=tmp_path), HostLanes(directory=tmp_path)
    pinned0, pinned1 = _timed("p0", Lane(cpus=frozenset({0}))), _timed("p1", Lane(cpus=frozenset({1})))
    assert one.acquire(pinned0, Lane(cpus=frozenset({0})))
    assert other.acquire(pinned1, Lane(cpus=frozenset({1})))  # disjoint cores measure side by side
    assert not other.acquire(_timed("all"), Lane())  # an unpinned lane needs every core
    assert other.names(Lane("board:jetson-a")) == ["board_jetson-a"]


def test_a_task_its_own_queue_holds_back_gives_up_its_ticket(tmp_path: Path) -> None:
    """Side-by-side lanes beside another edgebench process hung every process on the host: a core-1 measurement
    took a ticket while the other process held the cores; then a whole-host measurement queued ahead of it (its
    lanes had been hidden behind a core-0 one) took a newer ticket and waited behind the core-1 one, which its own
    queue no longer let ask. By hand: the other process lets go, core 0's task runs and ends, then the whole-host
    task must get the cores, core 1's task after it."""
    from edgebench.executor.base import LaneScheduler

    core0, core1, both = Lane(cpus=frozenset({0})), Lane(cpus=frozenset({1})), Lane(cpus=frozenset({0, 1}))
    other_process = HostLanes(directory=tmp_path)
    theirs = _timed("theirs", both)
    assert other_process.acquire(theirs, both)
    scheduler = LaneScheduler(capacity=lambda lane: 1, host=HostLanes(directory=tmp_path))
    first, whole, pinned = _timed("core0", core0), _timed("whole", both), _timed("core1", core1)
    for task in (first, whole, pinned):
        scheduler.add(task)
    assert scheduler.start_ready() == []  # core 0's task and core 1's wait behind the other process
    other_process.release(theirs)
    assert [task.key for task, _ in scheduler.start_ready()] == ["core0"]  # "whole" is next in this queue
    scheduler.finished(first)
    order = []
    for _ in range(5):
        for task, _lane in scheduler.start_ready():
            order.append(task.key)
            scheduler.finished(task)
    assert order == ["whole", "core1"] and not list(tmp_path.glob("ticket-*"))


def test_a_dead_waiter_does_not_block_the_line(tmp_path: Path) -> None:
    lanes = HostLanes(directory=tmp_path)
    stale = tmp_path / f"ticket-{1:020d}-999999-abcdef-cpu0"  # a ticket left by a killed process: nobody locks it
    stale.touch()
    task = _timed("t", Lane(cpus=frozenset({0})))
    assert lanes.acquire(task, Lane(cpus=frozenset({0}))) and not stale.exists()
    lanes.release(task)


def test_an_executor_closed_mid_run_frees_its_host_locks_and_tickets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A caller that stops reading results (an exception, a break) and closes the executor while a timed task on
    one core still runs (its lock) and one for the other core waits behind another process (its ticket): both
    were kept while the process lived, so every later executor in the same process (a later test, a notebook
    cell) waited behind them for ever."""
    import time

    from edgebench.executor.local import LocalExecutor

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    core0, core1 = Lane(cpus=frozenset({0})), Lane(cpus=frozenset({1}))
    other_process = HostLanes(directory=tmp_path)
    held = _timed("theirs", core0)
    assert other_process.acquire(held, core0)
    with LocalExecutor(workers=2) as executor:
        tasks = [Task(key="waits", kind="measure", fn=time.sleep, args=(0.1,), lane=core0, timed=True),
                 Task(key="runs", kind="measure", fn=time.sleep, args=(5.0,), lane=core1, timed=True),
                 Task(key="quick", kind="build", fn=time.sleep, args=(0.1,), lane=Lane("elsewhere"))]
        results = executor.run(tasks)
        assert next(results).key == "quick"  # and the caller reads no further
        assert [r.task.key for r in executor.scheduler.running.values()] == ["runs"]  # it holds core 1's lock
        assert len(list(tmp_path.glob("ticket-*"))) == 1  # "waits" is in line behind the other process
    assert list(tmp_path.glob("ticket-*")) == []
    assert HostLanes(directory=tmp_path).acquire(_timed("later", core1), core1)  # "runs" let go of core 1
    other_process.release(held)


_HOLD_A_WINDOW = """
import sys, time
from pathlib import Path
from edgebench.executor.base import Lane, Task
from edgebench.executor.local import LocalExecutor
import executor_tasks

start = Path(sys.argv[1])
with LocalExecutor(workers=1) as executor:
    executor.run([Task(key="warm", kind="measure", fn=executor_tasks.window_of, args=(0.0,), lane=Lane(),
                       timed=True)])  # the worker is up: its start-up is not in the race
    Path(sys.argv[2]).touch()
    while not start.exists():
        time.sleep(0.01)
    [result] = executor.run([Task(key="window", kind="measure", fn=executor_tasks.window_of, args=(1.0,),
                                  lane=Lane(), timed=True)])
print(*result.value)
"""


def test_two_processes_timed_windows_take_turns(tmp_path: Path) -> None:
    """Two processes start a one-second timed window at the same instant: the host lanes must put one after the
    other (the end-to-end test below only catches a collision when one happens to occur)."""
    import time

    env = {**os.environ, LOCK_DIR_ENV: str(tmp_path / "lanes"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    start, ready = tmp_path / "start", [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _HOLD_A_WINDOW, str(start), str(flag)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for flag in ready]
    deadline = time.monotonic() + 120
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1].decode()[-2000:] for p in procs]
        time.sleep(0.05)
    start.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in outputs]
    (start_a, end_a), (start_b, end_b) = sorted(tuple(map(float, out.split())) for out, _ in outputs)
    assert end_a <= start_b, f"the windows overlap: {start_a:.3f}-{end_a:.3f} and {start_b:.3f}-{end_b:.3f}"


def test_unusable_lock_directory_is_said_in_the_results(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    lanes = HostLanes(directory=blocker / "locks")
    task = _timed("t")
    assert lanes.acquire(task, Lane())  # runs anyway...
    note = lanes.note(task)
    assert note.lock == "none" and "unavailable" in str(note.why)  # ...and says so


@pytest.mark.slow
@pytest.mark.parametrize("directories", [1, 2])
def test_two_runs_at_once_in_one_directory_or_two_sharing_a_store(tmp_path: Path, directories: int) -> None:
    """Two processes of one experiment make two runs, in one directory or in two whose experiment files name the
    same store (a lab's shared store): the second process resumed the first's live run, and one run's rows
    replaced the other's."""
    store_url = f"sqlite:///{tmp_path / 'shared.db'}" if directories == 2 else None
    exp = default_with(
        tmp_path, "conc.yaml", **({"store": {"url": store_url}} if store_url else {}),
        training={"epochs": 1, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "seed": 0},
        pruning={"criteria": ["l1"], "ratios": [0.5], "schedules": ["while_training"], "prune_epochs": [0]},
        quantization={"precisions": ["fp32", "int8"], "calibration_samples": 64},
        targets=["local-cpu"],
        measurement={"min_iters": 50, "min_time_s": 0.1, "warmup_iters": 5, "precision": None},  # fixed windows
        executor={"type": "local", "workers": 1},
    )  # fmt: skip
    env = {**os.environ, LOCK_DIR_ENV: str(tmp_path / "lanes")}
    # the installed command; the reports are not read here (the runs' rows are)
    command = [str(Path(sys.executable).parent / "edgebench"), "run", str(exp), "--no-report"]
    places = [tmp_path / f"dir{i}" for i in range(2)] if directories == 2 else [tmp_path, tmp_path]
    for place in places:
        place.mkdir(exist_ok=True)
    procs = [subprocess.Popen(command, cwd=place, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for place in places]
    outputs = [p.communicate(timeout=900)[0].decode(errors="replace") for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]

    with Store.open(store_url or tmp_path / "runs" / "default" / "results.db") as store:
        run_ids = store.runs()["id"].tolist()
        frames = [store.measurements(run_id) for run_id in run_ids]
    assert len(run_ids) == 2  # two runs, not one run driven by both processes
    for df in frames:
        # every job of each run succeeded, once: baseline and l1-0.5 x (fp32: torch + ORT, int8: ORT)
        assert len(df) == 6 and df["job_key"].is_unique and set(df["status"]) == {"ok"}, df[["label", "error"]]
        assert all(d["host_lane"]["lock"] == "held" for d in df["details"])
    windows = sorted((d["timed_window"][0], d["timed_window"][1], i) for i, df in enumerate(frames)
                     for d in df["details"])
    for (_, end, run_a), (start, _, run_b) in itertools.pairwise(windows):
        assert end <= start, f"timed windows of run {run_a} and run {run_b} overlap"
    assert not list(tmp_path.rglob("runs/**/*.tmp*"))  # no temporary file left behind


def test_export_waits_for_a_build_in_place(tmp_path: Path) -> None:
    """A second process exporting the same artifact waits on its lock file rather than deleting the project."""
    from edgebench.cache_files import exclusive, lock_file

    target = tmp_path / "artifact"
    with exclusive(target):
        probe = subprocess.run(
            [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
             "fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(lock_file(target))],
            capture_output=True, timeout=60)  # fmt: skip
        assert probe.returncode != 0 and b"BlockingIOError" in probe.stderr
    with open(lock_file(target), "a") as handle:  # released when the block ends
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the lock were still held


def test_a_full_disk_while_writing_a_cache_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A write() on a full disk raises OSError without a file name: the one-line error said "cannot write a file:
    No space left on device" and left the user to guess which disk."""
    import errno

    import typer

    from edgebench.cache_files import replacing
    from edgebench.cli.common import friendly_errors

    target = tmp_path / "cache" / "data.npz"

    @friendly_errors
    def write() -> None:
        with replacing(target):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(typer.Exit) as raised:
        write()
    assert raised.value.exit_code == 2
    assert f"error: cannot write {target}: No space left on device; free some space" in " ".join(capsys.readouterr().out.split())
    assert list(target.parent.iterdir()) == []  # the temporary file is gone
