"""The local executor: warm isolated workers running real measurement jobs, and the lane rules."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from executor_tasks import allocate_and_report_peak, filled_by, pid_after, pid_after_meeting
from torch import nn

from edgebench.executor.base import HOST, Lane, LaneScheduler, Task, WorkerKind
from edgebench.executor.local import LocalExecutor
from edgebench.executor.tasks import call_task, job_result, measure_task
from edgebench.job import Job, MeasureSettings
from edgebench.runtimes.base import get_exporter
from edgebench.variants import QuantSpec

FAST = MeasureSettings(warmup_iters=2, min_iters=20, min_time_s=0.05, max_time_s=2.0)


class _Segfault:
    """Unpickling it (when the torch backend loads the 'model') dereferences a null pointer."""

    def __reduce__(self):
        import ctypes

        return (ctypes.string_at, (0,))


class _Killed:
    """Unpickling it kills the process with SIGKILL, as the kernel's OOM killer ends one."""

    def __reduce__(self):
        return (exec, ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)",))


class _Hang:
    def __reduce__(self):
        return (time.sleep, (60,))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("local executor")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    x = torch.randn(24, 3, 8, 8)
    with torch.no_grad():
        np.savez(root / "eval.npz", x=x.numpy(), y=model(x).numpy().argmax(1))
    good = get_exporter("torch").export(model, QuantSpec(), x.numpy(), root / "model.pt")
    (root / "segv.pt").write_bytes(pickle.dumps(_Segfault()))
    (root / "hang.pt").write_bytes(pickle.dumps(_Hang()))
    (root / "killed.pt").write_bytes(pickle.dumps(_Killed()))
    (root / "garbage.pt").write_bytes(b"not a pickled model")
    return {"good": good, "segv": root / "segv.pt", "hang": root / "hang.pt", "garbage": root / "garbage.pt",
            "killed": root / "killed.pt", "eval": root / "eval.npz"}


def _measure(files: dict[str, Path], key: str, artifact: str, timeout_s: float = 60) -> Task:
    job = Job(job_id=key, variant_id="v", target="local-cpu", backend="torch", artifact=str(files[artifact]),
              eval_data=str(files["eval"]), measure=FAST)
    return measure_task(job, timeout_s)


def test_crash_hang_and_exception_fail_one_job_each_and_the_next_runs_in_a_fresh_worker(files, tmp_path):
    tasks = [
        _measure(files, "ok-1", "good"), _measure(files, "ok-2", "good"),
        _measure(files, "segv", "segv"), _measure(files, "ok-3", "good"),
        _measure(files, "hang", "hang", timeout_s=4), _measure(files, "ok-4", "good"),
        _measure(files, "raises", "garbage"), _measure(files, "ok-5", "good"),
        _measure(files, "killed", "killed"), _measure(files, "ok-6", "good"),
    ]
    with LocalExecutor(workers=1, log_dir=tmp_path / "logs") as executor:  # one worker: strictly in order
        results = {r.key: r for r in executor.run(tasks)}
    assert sorted(results) == sorted(t.key for t in tasks)
    ok = {k: job_result(r) for k, r in results.items() if k.startswith("ok-")}
    assert all(r.status == "ok" and r.accuracy == 1.0 for r in ok.values()), {k: r.error for k, r in ok.items()}
    pid = {k: r.where.pid for k, r in results.items()}
    assert pid["ok-1"] == pid["ok-2"]  # warm: the second job reused the first one's worker

    segv = results["segv"]
    assert not segv.ok and "killed by SIGSEGV" in segv.error and "string_at" in segv.error
    assert "Segmentation fault" in segv.detail  # faulthandler's stack, from the worker's stderr
    assert pid["ok-3"] != pid["ok-2"]

    hang = results["hang"]
    assert not hang.ok and "timed out after 4 s (worker killed; the limit: run.job_timeout_s" in hang.error
    # where it hung (torch unpickling the 'model'), from the stack the worker dumped before the kill
    assert "torch/serialization.py" in hang.error and "most recent call first" in hang.detail
    assert 4 <= hang.wall_s < 15
    assert pid["ok-4"] not in (pid["ok-3"], pid["hang"])

    raised = results["raises"]  # the torch backend raises on a file that is no model
    assert not raised.ok and "cannot load" in raised.error
    assert "Traceback" in raised.detail and "execute" in raised.detail  # the full traceback is kept
    assert pid["ok-5"] != pid["raises"]  # a fresh worker after the failure
    assert job_result(segv).status == "failed" and job_result(segv).error_detail == segv.detail

    killed = results["killed"]  # the worker dies by its child's signal: SIGKILL cannot be re-armed, only sent
    assert not killed.ok and "killed by SIGKILL" in killed.error, killed.error
    assert pid["ok-6"] != pid["killed"]


def test_peak_rss_is_per_measurement_in_a_reused_worker_and_untimed_tasks_skip_the_reset():
    def sequence(timed: bool) -> tuple[tuple[int, float], tuple[int, float]]:
        tasks = [Task(key=key, kind="measure" if timed else "build", fn=allocate_and_report_peak, args=(mib,),
                      timed=timed) for key, mib in (("big", 400), ("small", 1))]
        with LocalExecutor(workers=1) as executor:
            big, small = (r.value for r in executor.run(tasks))
        assert big[0] == small[0]  # the same warm worker ran both
        return big, small

    big, small = sequence(timed=True)
    assert big[1] > 400 and small[1] < big[1] - 300  # the 400 MiB peak of the first task is not the second's
    big, small = sequence(timed=False)  # a build's peak is read by nobody: no 0.4 s collection to reset it
    assert small[1] >= big[1] > 400


def test_workers_are_recycled_after_n_tasks_and_past_an_rss_bound():
    with LocalExecutor(workers=1, max_tasks_per_worker=2) as executor:
        pids = [r.value for r in executor.run([call_task(f"t{i}", "build", pid_after, 0) for i in range(3)])]
    assert pids[0] == pids[1] != pids[2]
    with LocalExecutor(workers=1, max_rss_mb=300) as executor:
        results = list(executor.run([call_task("leak", "build", allocate_and_report_peak, 400, True),
                                     call_task("after", "build", allocate_and_report_peak, 1)]))
    assert results[0].value[0] != results[1].value[0]  # the worker holding 400 MiB was replaced


def test_a_timeout_of_years_is_waited_for_in_steps_not_an_overflow():
    tasks = [Task(key="long", kind="build", fn=pid_after, args=(0,), timeout_s=1e9)]  # poll() caps at 2**31 ms
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run(tasks)
    assert result.ok, result.error


def test_timed_tasks_never_share_the_host_and_untimed_ones_do(tmp_path):
    timed = [Task(key=f"measure-{i}", kind="measure", fn=pid_after, args=(0.4,), timed=True) for i in range(2)]
    # exports 0 and 1 (2 and 3) each wait for the other to start: they can only finish by running at once
    marks = [str(tmp_path / f"export-{i}") for i in range(4)]
    untimed = [call_task(f"export-{i}", "export", pid_after_meeting, marks[i], marks[i ^ 1], 0.4) for i in range(4)]
    queue = [*untimed[:2], timed[0], *untimed[2:], timed[1]]
    with LocalExecutor(workers=2) as executor:
        results = list(executor.run(queue))
    span = {r.key: (r.started, r.ended) for r in results}

    def overlap(a: str, b: str) -> bool:
        return span[a][0] < span[b][1] and span[b][0] < span[a][1]

    for t in timed:
        assert not any(overlap(t.key, other) for other in span if other != t.key), f"{t.key} shared the host"
    assert overlap("export-0", "export-1") and overlap("export-2", "export-3")  # two workers, two exports at once
    assert span["measure-0"][0] >= max(span["export-0"][1], span["export-1"][1])  # in queue order
    assert span["export-2"][0] >= span["measure-0"][1]  # and not overtaking the waiting measurement


def test_a_measurement_worker_starts_beside_untimed_work_not_in_the_measurements_own_turn(tmp_path):
    """The worker of a timed kind imports its runtime (here a 2 s preload) while an export runs, not after it."""
    note = tmp_path / "imported"
    kind = WorkerKind(name="measure-slow-import", env=(("EDGEBENCH_TEST_PRELOAD_NOTE", str(note)),),
                      preload=("slow_preload",), fork_per_task=True)
    untimed = call_task("export", "export", pid_after, 6.0)
    timed = Task(key="measure", kind="measure", fn=pid_after, args=(0.1,), timed=True, worker=kind)
    with LocalExecutor(workers=2) as executor:
        results = {r.key: r for r in executor.run([untimed, timed])}
    assert set(results) == {"export", "measure"} and all(r.ok for r in results.values())  # no warm-up result
    export, measure = results["export"], results["measure"]
    assert float(note.read_text()) < export.ended  # the runtime was imported during the export...
    assert measure.started >= export.ended  # ...and the measurement still had the host alone


def test_a_preload_function_runs_once_in_the_worker_and_every_forked_measurement_inherits_it():
    """``module:function`` in a preload is called in the warm worker, not again in each child forked from it."""
    kind = WorkerKind(name="measure-filled", preload=("executor_tasks:fill_once",), fork_per_task=True)
    tasks = [Task(key=f"m{i}", kind="measure", fn=filled_by, timed=True, worker=kind) for i in range(3)]
    with LocalExecutor(workers=1) as executor:
        results = [r for r in executor.run(tasks)]
    assert all(r.ok for r in results), [r.error for r in results]
    children = {r.value[0] for r in results}
    fillers = {tuple(r.value[1]) for r in results}
    assert len(children) == 3  # each measurement ran in its own child...
    assert len(fillers) == 1 and len(next(iter(fillers))) == 1  # ...all forked from one worker that filled once
    assert next(iter(fillers))[0] not in children and all(r.where.pid == next(iter(fillers))[0] for r in results)


def _task(key: str, lane: Lane, timed: bool) -> Task:
    return Task(key=key, kind="measure" if timed else "export", fn=print, lane=lane, timed=timed)


def test_scheduler_lets_measurements_on_cores_pinned_apart_run_together_and_boards_in_parallel():
    scheduler = LaneScheduler(capacity=lambda lane: 2)
    core0, core1, board_a, board_b = Lane(HOST, frozenset({0})), Lane(HOST, frozenset({1})), Lane("board:a"), Lane("board:b")
    for task in [_task("m0", core0, True), _task("m1", core1, True), _task("a1", board_a, True),
                 _task("a2", board_a, True), _task("b1", board_b, True), _task("e", Lane(HOST), False)]:
        scheduler.add(task)
    started = {t.key: t for t, _ in scheduler.start_ready()}
    assert list(started) == ["m0", "m1", "a1", "b1"]  # disjoint cores and different boards at once; a2 waits for a1
    scheduler.finished(started["a1"])
    assert [t.key for t, _ in scheduler.start_ready()] == ["a2"]  # the export still waits for both measurements


def test_a_task_that_continues_another_takes_its_place_in_line_ahead_of_measurements_queued_since():
    scheduler = LaneScheduler(capacity=lambda lane: 2)
    fp32, other = _task("fp32", Lane(HOST), False), _task("other", Lane(HOST), False)
    scheduler.add(fp32), scheduler.add(other)
    assert [t.key for t, _ in scheduler.start_ready()] == ["fp32", "other"]
    scheduler.add(_task("measure", Lane(HOST), True))
    plain = _task("plain", Lane(HOST), False)
    scheduler.add(plain)
    scheduler.finished(fp32)
    int8 = _task("int8", Lane(HOST), False)
    int8.line = fp32.line  # as Executor.run sets it for Task.continues
    scheduler.add(int8)
    assert [t.key for t in scheduler.queue] == ["int8", "measure", "plain"]
    assert [t.key for t, _ in scheduler.start_ready()] == ["int8"]  # beside "other"; the measurement waits for both


def test_executor_queues_a_continuing_task_in_its_prerequisites_place(tmp_path: Path):
    """Two workers: while "fp32" and "slow" run, a measurement is queued; "int8", which continues "fp32", runs
    before that measurement, beside "slow", instead of after it."""
    tasks = [
        call_task("fp32", "export", pid_after, 0.2),
        call_task("slow", "export", pid_after, 1.5),
        Task(key="measure", kind="measure", fn=pid_after, args=(0,), timed=True, after=("fp32",)),
        Task(key="int8", kind="export", fn=pid_after, args=(0,), after=("fp32",), continues="fp32"),
    ]
    with LocalExecutor(workers=2) as executor:
        results = {r.key: r for r in executor.run(tasks)}
    assert all(r.ok for r in results.values())
    assert results["int8"].ended <= results["slow"].ended < results["measure"].started


def test_a_task_waits_for_its_prerequisites_and_fails_when_one_failed():
    tasks = [
        call_task("build", "build", pid_after, 0.3),
        Task(key="export", kind="export", fn=pid_after, args=(0,), after=("build",)),
        Task(key="measure", kind="measure", fn=pid_after, args=(0,), timed=True, after=("export",)),
        Task(key="broken-export", kind="export", fn=allocate_and_report_peak, args=("not a size",), after=("build",)),
        Task(key="orphan-measure", kind="measure", fn=pid_after, args=(0,), timed=True, after=("broken-export",)),
        Task(key="derived-export", kind="export", fn=pid_after, args=(0,), after=("broken-export",)),
        Task(key="derived-measure", kind="measure", fn=pid_after, args=(0,), timed=True, after=("derived-export",)),
    ]
    with LocalExecutor(workers=2) as executor:
        results = list(executor.run(tasks))
    order = [r.key for r in results]
    assert sorted(order) == sorted(t.key for t in tasks)
    assert order.index("build") < order.index("export") < order.index("measure")
    span = {r.key: (r.started, r.ended) for r in results if r.started}
    assert span["export"][0] >= span["build"][1]
    orphan = next(r for r in results if r.key == "orphan-measure")
    assert not orphan.ok and orphan.error.startswith("export broken-export failed: TypeError")
    derived = next(r for r in results if r.key == "derived-measure")  # two links down: the task that failed
    assert derived.blocked and derived.error == orphan.error
    # and its traceback, which the store keeps with the blocked measurements (no other record holds it)
    assert derived.detail == orphan.detail and "Traceback" in derived.detail and "TypeError" in derived.detail


def test_a_measurement_pinned_to_a_core_runs_in_a_worker_pinned_there():
    import os

    from edgebench.executor.tasks import HOST_LANE

    core = min(os.sched_getaffinity(0))
    task = measure_task(Job(job_id="p", variant_id="v", target="t", backend="onnxruntime", artifact="-",
                            eval_data="-"), 30, lane=Lane(HOST, frozenset({core})))
    task.fn, task.args = os.sched_getaffinity, (0,)
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run([task])
    assert result.value == {core} and task.worker.cpus == {core} and HOST_LANE.cpus is None


DRIVER_IMPORTING_TORCH = """
import sys
import torch  # a user's driver script imports torch before edgebench starts its workers

from executor_tasks import torch_threads
from edgebench.executor.base import Task, WorkerKind
from edgebench.executor.local import LocalExecutor

if __name__ == "__main__":
    task = Task(key="threads", kind="build", fn=torch_threads,
                worker=WorkerKind(name="untimed-1t", env=(("OMP_NUM_THREADS", "1"),)))
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run([task])
    print("driver", torch.get_num_threads(), "worker", result.value, result.error)
"""


@pytest.mark.skipif(len(__import__("os").sched_getaffinity(0)) < 2,
                    reason="one core: torch's default pool is one thread, so the worker's cap cannot show")
def test_a_worker_gets_its_thread_cap_even_when_the_drivers_main_module_imports_torch(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(DRIVER_IMPORTING_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    assert int(words[words.index("driver") + 1]) >= 2  # the driver's own pool: the cap is not inherited from it
    assert words[words.index("worker") + 1] == "1", out.stdout


DRIVER_SCRIPT = """
import sys
from executor_tasks import main_script_imported
from edgebench.executor.base import Task
from edgebench.executor.local import LocalExecutor

SCRIPT_RAN = True
if sys.argv[1] == "registers":  # a criterion of the script's own: its workers need the script
    from edgebench.prune import CRITERIA
    from edgebench.prune.criteria.magnitude import L1Norm

    @CRITERIA.register("script_l1")
    class ScriptL1(L1Norm):
        pass

if __name__ == "__main__":
    with LocalExecutor(workers=1) as executor:
        (result,) = executor.run([Task(key="main", kind="build", fn=main_script_imported)])
    print("imported", result.value, result.error)
"""


@pytest.mark.parametrize("mode,imported", [("plain", False), ("registers", True)])
def test_workers_import_the_drivers_script_only_when_it_registers_a_plugin(tmp_path, mode, imported):
    """A script's own imports (pandas, torch...) would weigh on every worker's peak RSS, so a worker leaves the
    script out unless the script registered something the worker may need."""
    import os
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"imported {imported} None" in out.stdout, out.stdout + out.stderr[-2000:]


def test_measurement_workers_leave_plugin_files_out_unless_the_job_needs_them():
    """A plug-in file imports what it likes (torch, pandas); an ONNX Runtime worker measuring with edgebench's own
    backend and meter does not load it, so its peak RSS is the runtime's. A pickled PyTorch module (its class may
    live in the user's files) or a plug-in backend or meter keeps them."""
    from edgebench.executor.tasks import measure_task
    from edgebench.job import Job
    from edgebench.plugins import PLUGINS_ENV

    def env(backend: str, energy: dict | None = None) -> dict:
        job = Job(job_id="j", variant_id="v", target="t", backend=backend, artifact="a", eval_data="e", energy=energy)
        return dict(measure_task(job, timeout_s=60).worker.env)

    assert env("onnxruntime")[PLUGINS_ENV] == "" and env("litert", {"type": "rapl"})[PLUGINS_ENV] == ""
    assert PLUGINS_ENV not in env("torch")
    assert PLUGINS_ENV not in env("onnxruntime", {"type": "executor_tasks:ConstantMeter"})


def test_a_task_that_exits_fails_saying_so_and_the_next_task_runs() -> None:
    """sys.exit(3) in a task was stored as 'worker exited with code 70' with no detail; os._exit(0) the same."""
    from executor_tasks import exit_with

    tasks = [call_task("exits", "build", exit_with, 3), call_task("quits", "build", exit_with, -1),
             call_task("after", "build", pid_after, 0)]
    with LocalExecutor(workers=1) as executor:
        results = {r.key: r for r in executor.run(tasks)}
    assert results["exits"].error == "the task called sys.exit(3)"
    assert "ended without a result (os._exit in its code?)" in (results["quits"].error or "")
    assert results["after"].ok


def test_what_edgebench_warns_in_a_worker_comes_back_with_the_result_once() -> None:
    """A worker's log is a file under the run directory, not the user's console: edgebench's warnings there (a
    MACs cut far past the ask) were never seen. They come back with the task's result, deduplicated, failed or not;
    other libraries' stay in the log."""
    from executor_tasks import warn_twice_and_fail

    tasks = [call_task("ok", "build", warn_twice_and_fail, False), call_task("bad", "build", warn_twice_and_fail, True),
             call_task("quiet", "build", pid_after, 0)]
    with LocalExecutor(workers=1) as executor:
        results = {r.key: r for r in executor.run(tasks)}
    assert results["ok"].warnings == ("asked 10%, removed 22%",)
    assert results["bad"].warnings == ("asked 10%, removed 22%",) and not results["bad"].ok
    assert results["quiet"].warnings == ()  # the handler of an earlier task is gone


def _alive(pid: int) -> bool:
    """``pid`` runs (a zombie waiting for a reaper that never comes, as in a container without init, is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_timed_out_job_takes_the_processes_its_runtime_started_with_it(files, tmp_path) -> None:
    """A backend that started a helper process and then hung left the helper running after the timeout."""
    pid_file = tmp_path / "helper.pid"

    class _HangWithHelper:
        def __reduce__(self):
            return (exec, (f"import subprocess, time; p = subprocess.Popen(['sleep', '300']); "
                           f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)",))

    (tmp_path / "helper.pt").write_bytes(pickle.dumps(_HangWithHelper()))
    with LocalExecutor(workers=1, log_dir=tmp_path / "logs") as executor:
        # 8 s: the worker's start and the helper's launch fit in it on a loaded guest (4 s ran out there once)
        [result] = executor.run([_measure({**files, "helper": tmp_path / "helper.pt"}, "hang", "helper", 8)])
        assert "timed out after 8 s" in (result.error or "")
        helper = int(pid_file.read_text())
        assert not _alive(helper), "the runtime's helper process outlived the timed-out job"


FORKED_UNDER_A_HANDLER = """
import faulthandler, pickle, signal
from executor_tasks import segfault
from edgebench.executor.forked import run_forked

faulthandler.disable()
signal.signal(signal.SIGSEGV, signal.SIG_IGN)  # stands for a Ray worker's own handler, inherited by the child
outcome = pickle.loads(run_forked(segfault, (), survive=True))
print(outcome.status, "|", outcome.error, "|", outcome.detail)
"""


def test_a_forked_child_dies_by_its_signal_whatever_handler_it_inherited_and_a_surviving_worker_reports_it():
    """Under Ray a measurement's child inherited Ray's SIGSEGV handler, which took the Ray worker down: the run stored
    Ray's 'WorkerCrashedError: The worker died unexpectedly' without the signal or the stack."""
    import os
    import subprocess
    import sys

    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(tests).parent), tests, os.environ.get("PYTHONPATH", "")]))
    ran = subprocess.run([sys.executable, "-c", FORKED_UNDER_A_HANDLER], env=env, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr  # the worker lived on
    status, error, detail = ran.stdout.split(" | ", 2)
    assert status == "failed" and error.startswith("worker killed by SIGSEGV (Segmentation fault): File ")
    assert error.endswith("in segfault")  # where it died, from faulthandler's stack
    assert "Fatal Python error: Segmentation fault" in detail and "most recent call first" in detail


def test_the_other_executor_types_fields_are_said_to_be_ignored(caplog: pytest.LogCaptureFixture) -> None:
    """A helper's `executor: {type: ray, workers: 7, max_rss_mb: 1}` ran with no word that both were ignored."""
    from edgebench.executor.settings import ExecutorConfig, check_executor

    with caplog.at_level("WARNING", logger="edgebench.executor.settings"):
        check_executor(ExecutorConfig(type="local", workers=2, on_lost="fail", lost_grace_s=5))
        check_executor(ExecutorConfig(type="local", workers=2))  # its own fields only: no word
    assert [r.getMessage() for r in caplog.records] == [
        "executor.on_lost, lost_grace_s apply to the ray executor: ignored, this run's executor is local"]


def test_a_crash_inside_the_standard_library_is_named_at_the_code_that_called_it() -> None:
    """A plug-in's ctypes call that segfaulted was named at ctypes' own string_at (the innermost frame), not at the
    plug-in's line that called it. A real faulthandler stack from a real SIGSEGV."""
    import subprocess
    import sys

    from edgebench.executor.forked import crash_error

    code = "import ctypes\ndef plugin_run():\n    ctypes.string_at(0)\nplugin_run()\n"
    died = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert died.returncode < 0 and "ctypes" in died.stderr  # the innermost frame is the standard library's
    said = crash_error("worker killed by SIGSEGV", died.stderr)
    assert said.startswith('worker killed by SIGSEGV: File "') and "in string_at, called from " in said
    assert said.endswith('called from File "<string>", line 3 in plugin_run')
    # no frame outside the standard library: the innermost alone
    only_stdlib = died.stderr.split('File "<string>"')[0]
    assert crash_error("worker killed by SIGSEGV", only_stdlib).endswith("in string_at")
