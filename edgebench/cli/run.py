"""``edgebench run``, ``variants`` and ``bench``: the commands that train, export and measure."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from edgebench.cli.common import PluginFiles, console, finite, print_line, use_plugins
from edgebench.cli.targets import TargetsDir
from edgebench.errors import ExitCode, first_line


class _RichProgress:
    """Adapts the pipeline's progress callback to one rich bar per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int, detail: str) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total,
                             description=f"{stage:<9} {detail[:48]}")


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (a CI job cancelled, ``kill``, a scheduler's stop) stops a run as Ctrl-C does:
    workers shut down and the run is marked interrupted rather than left 'running'. A worker process forked from
    this one gets the default again (the executor's own terminate of a hung worker must end it), and so does a
    process that goes on after the block (a notebook)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    driver = os.getpid()

    def handler(signum: int, _frame: Any) -> None:
        if os.getpid() != driver:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    experiment: Annotated[
        Path | None, typer.Argument(help="experiment YAML; omitted: the built-in default (digits, no downloads)")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="tag the run (e.g. a git ref); repeatable")] = None,
    executor: Annotated[
        str | None, typer.Option(help="where jobs run: local (warm worker processes) or ray (the cluster at the "
                                      "experiment's executor.address, default auto); overrides the experiment")
    ] = None,
    targets_dir: TargetsDir = None,
    report: Annotated[bool, typer.Option(help="render the HTML report (--no-report: store only, for a CI job that "
                                              "gates on the store; edgebench report renders it later)")] = True,
) -> None:
    """Train, prune, quantize, export, measure on every target, store and report."""
    from edgebench import api
    from edgebench.config import load_experiment
    from edgebench.errors import ConfigError
    from edgebench.pipeline import ReportInterrupted
    from edgebench.store.connection import shown_url
    from edgebench.store.store import validate_tag
    from edgebench.targets import use_targets_dir

    use_targets_dir(targets_dir)
    exp = load_experiment(experiment)
    for name in tag or ():
        validate_tag(name)
    if executor is not None:
        if executor not in ("local", "ray"):
            raise ConfigError(f"--executor must be local or ray, got '{executor}'")
        exp = exp.model_copy(update={"executor": exp.executor.model_copy(update={"type": executor})})
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with _terminate_as_interrupt(), Progress(*columns, console=console, transient=False) as progress:
            results = api.run(exp, tags=tag or (), progress=_RichProgress(progress), render=report)
    except ReportInterrupted as stopped:  # the run is complete in the store: running it again would measure anew
        print_line("interrupted", "yellow", f"while rendering the report: run {stopped.run_id} is stored in full; "
                   f"render it with: edgebench report --store {shown_url(stopped.store_url)} --run {stopped.run_id}")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except KeyboardInterrupt:
        # every finished job is already committed to the store; the same command resumes the run
        console.print("[yellow]interrupted:[/] finished jobs are stored; run the same command again to resume")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    _print_summary(results, exp.report_dir())
    outcome = results.outcome
    assert outcome is not None  # api.run always returns what this process's run did
    if outcome.failed and not outcome.measured and not outcome.skipped:
        kept = len(outcome.failed) - outcome.lost
        stored = ("none stored: every one was lost with its board or host, and the same command measures them"
                  if not kept else f"{kept} kept in the store" + (f", {outcome.lost} lost and not stored" if outcome.lost
                                                                 else ""))
        print_line("error:", "bold red", f"every job of run {outcome.run_id} failed ({len(outcome.failed)} listed "
                   f"above; {stored}): nothing was measured")
        raise typer.Exit(ExitCode.ALL_FAILED)  # the store holds no measurement of it: a CI gate must not pass


def _print_where(df: Any) -> None:
    """Where each target's jobs ran (host, Ray node or board), from what every result recorded."""
    if df.empty:
        return
    table = Table(title="where the jobs ran")
    for col in ("target", "ran on", "jobs"):
        table.add_column(col, justify="right" if col == "jobs" else "left")
    for (target, place), n in df.assign(where=df["ran_on"].fillna("unknown")).groupby(["target", "where"]).size().items():
        table.add_row(str(target), str(place), str(n))
    console.print(table)


def _fronts_table(run_id: str, df: Any) -> Table:
    """Each target's Pareto-optimal variants, on its honest cost axis: p50 latency, or for an FPGA C simulation
    (whose p50 is host CPU time) the bit operations counted from the firmware or synthesised cycles."""
    import pandas as pd

    from edgebench.report.tables import target_fronts
    from edgebench.store.compare_match import disturbance
    from edgebench.store.metrics import METRICS

    table = Table(title=f"run {run_id}: Pareto-optimal variants per target (accuracy vs p50 latency; FPGA C "
                        "simulation: vs bit operations counted from the firmware, not synthesised)")
    for col in ("target", "backend", "variant", "accuracy", "front on", "p50 ms", "size KiB", "MACs"):
        numeric = col not in ("target", "backend", "variant", "front on")
        table.add_column(col, justify="right" if numeric else "left", overflow="fold")
    for target, cost, front in target_fronts(df[df["status"] == "ok"], METRICS["accuracy"]):
        for _, row in front.iterrows():
            axis = "p50"  # the FPGA columns are null on every other target: formatted only where they are the axis
            if cost.name == "bops":
                axis = f"{row['bops'] / 1e6:,.2f} MBOPs (counted)"
            elif cost.name == "fpga_latency":
                axis = f"{row['fpga_latency_cycles']:,.0f} cycles (synthesis)"
            # four significant digits: at 0.0034 two points of a front read alike, as if one dominated the other
            p50 = _ms(row["p50_ms"]) + (" (host C-sim)" if cost.name != "latency" else "")
            p50 += " (disturbed)" if disturbance(row.get("details")) is not None else ""
            table.add_row(Text(target), row["backend"], Text(row["label"]), f"{row['accuracy']:.3f}", axis, p50,
                          f"{row['size_bytes'] / 1024:.1f}",  # an external artifact's MACs are not counted: "?"
                          "?" if pd.isna(row["macs"]) else f"{int(row['macs']):,}")
    return table


def grouped_failures(failed: list[str]) -> list[str]:
    """``where: error`` lines with jobs that failed for one reason (a conversion every variant fails) as one line
    naming them: fifteen copies of a 400-character error hid the other failures."""
    by_error: dict[str, list[str]] = {}
    for line in failed:
        where, _, error = line.partition(": ")
        by_error.setdefault(error, []).append(where)
    lines = []
    for error, places in by_error.items():
        if len(places) == 1:
            lines.append(f"{places[0]}: {error}")
        else:
            shown = "; ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
            lines.append(f"{len(places)} jobs ({shown}): {error}")
    return lines


def _print_summary(results: Any, report_dir: Path) -> None:
    import shlex

    from edgebench.report.run_notes import run_notes
    from edgebench.store.connection import shown_url

    outcome = results.outcome
    df = results.stored()
    if (df["status"] == "ok").any():  # a run with nothing measured has no front to show (its errors follow)
        console.print(_fronts_table(outcome.run_id, df))
    # what the figures above need said (the report and Results.notes() say it too)
    for note in run_notes(df, results.input_spec()):
        print_line(f"{note.label}:", "yellow", note.text)
    _print_where(df)
    retried = f" ({outcome.retried} failed before, measured again)" if outcome.retried else ""
    console.print(f"measured {outcome.measured} jobs{retried}, reused {outcome.skipped} stored, failed "
                  f"{len(outcome.failed)}")
    console.print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in outcome.stage_seconds.items()))
    if outcome.side_by_side is not None and outcome.side_by_side.ok:
        cores = ",".join(map(str, outcome.side_by_side.cores))
        console.print(f"side-by-side lanes on cores {cores}: {outcome.side_by_side.reason}")
    for failure in grouped_failures(outcome.failed):
        print_line("failed:", "red", failure)
    for note in outcome.unsupported:
        print_line("not run:", "yellow", note)
    for line in outcome.warnings:
        print_line("warning:", "yellow", line)
    print_line("store:", "", shown_url(outcome.store_url))  # printed to CI logs: no password
    if outcome.report_path:
        print_line("report:", "", outcome.report_path)
    else:  # --no-report; `edgebench report` alone would write to reports/<name> of the working directory
        print_line("report:", "", f"not rendered; render it with: edgebench report --store "
                   f"{shlex.quote(shown_url(outcome.store_url))} --run {outcome.run_id} --out {shlex.quote(str(report_dir))}")


def variants(
    experiment: Annotated[Path | None, typer.Argument(help="experiment YAML; omitted: the default")] = None,
    targets_dir: TargetsDir = None,
) -> None:
    """List the variants an experiment would produce (no training): those its targets measure, QAT and
    mixed-precision ones included, each after the fp32 variant it comes from."""
    from edgebench.config import load_experiment
    from edgebench.external import external_specs
    from edgebench.plan import plan_fp32_variants, plan_target_jobs
    from edgebench.targets import get_target, use_targets_dir

    use_targets_dir(targets_dir)
    exp = load_experiment(experiment)
    table = Table(title=f"variants of '{exp.name}'")
    for col in ("id", "label", "parent"):
        table.add_column(col)
    specs = plan_fp32_variants(exp)
    planned: dict[str, Any] = {}
    for selection in exp.targets:
        for job in plan_target_jobs(exp, specs, selection, get_target(selection.name))[0]:
            planned.setdefault(job.variant.id, job.variant)
    order = {spec.id: i for i, spec in enumerate(specs)}
    for v in sorted(planned.values(), key=lambda v: order.get(v.id, order.get(v.parent_id or "", len(order)))):
        table.add_row(v.id, Text(v.label), v.parent_id or "")
    for v in external_specs(exp.artifacts, specs, str(experiment or "the default experiment")):
        table.add_row(v.id, Text(v.label), v.parent_id or "")
    console.print(table)


#: the backends ``bench`` tries, in this order, for a file whose backend is not given (the CPU runtimes first)
BENCH_BACKENDS = ("onnxruntime", "litert", "torch", "hls4ml")


def _backend_options(pairs: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs as a backend_options mapping, each VALUE read as YAML (a list, a bool...)."""
    import yaml

    from edgebench.errors import ConfigError

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"edgebench bench --option {pair!r}: not KEY=VALUE (e.g. --option "
                              "'graph_optimization_level=extended')")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"edgebench bench --option {pair!r}: its value is not YAML ({first_line(exc)})") from None
    return options


def bench(
    artifact: Annotated[Path, typer.Argument(help="an exported model file (.onnx, .pt, .tflite, an OpenVINO IR .xml ...)")],
    backend: Annotated[str | None, typer.Option(help="backend name (see `edgebench doctor`; default: the first of "
                                                     "onnxruntime, litert, torch, hls4ml that reads the file)")] = None,
    data: Annotated[Path | None, typer.Option(help="npz with x (NCHW float32) and y: also measures accuracy")] = None,
    input_shape: Annotated[str | None, typer.Option(help="C,H,W of random input when --data is not given")] = None,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    min_time_s: Annotated[float, typer.Option(min=0, help="the timed window's floor")] = 0.1,
    precision: Annotated[float, typer.Option(
        min=0, max=0.5, help="time until the p50's 95 % interval is within this fraction of it (0: fixed window)")] = 0.01,
    timeout_s: Annotated[float, typer.Option(min=1)] = 300.0,
    profile_layers: Annotated[bool, typer.Option(
        "--profile-layers", help="also record a per-layer profile, in its own window after the timed one")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", help="KEY=VALUE, one of the backend's options as a target file's backend_options sets it (VALUE "
                         "read as YAML: --option 'disabled_optimizers=[NchwcTransformer]'); repeatable")] = None,
    plugins: PluginFiles = None,
) -> None:
    """Measure one existing artifact in an isolated worker (no training or export)."""
    import tempfile

    from edgebench.cli.profile import backend_for, eval_image_shape, print_profile, write_eval_input
    from edgebench.data.files import read_eval_data
    from edgebench.errors import ArtifactError, NothingToRunError
    from edgebench.executor.runners import LocalRunner
    from edgebench.executor.tasks import measurement_failure, run_one
    from edgebench.job import Job, MeasureSettings
    from edgebench.preflight import check_measurement_env
    from edgebench.runtimes.base import get_backend, list_backends
    from edgebench.store.compare_match import disturbance
    from edgebench.targets import TargetSpec
    from edgebench.yaml_file import validate

    finite(min_time_s=min_time_s, precision=precision, timeout_s=timeout_s)
    use_plugins(plugins)
    check_measurement_env()
    if not artifact.exists():
        raise ArtifactError(f"artifact not found: {artifact}")
    backend = backend_for(artifact, [*BENCH_BACKENDS, *(b for b in list_backends() if b not in BENCH_BACKENDS)], backend,
                          among="edgebench's")
    blocks = get_backend(backend).target_blocks(artifact)  # an hls4ml project's fpga: block, from its metadata
    options = _backend_options(option or [])
    target = validate(TargetSpec, {"name": "local", "backends": [backend], "threads": threads, **blocks,
                                   "backend_options": {backend: options} if options else {}}, "edgebench bench --option")
    shape = eval_image_shape(data, input_shape, artifact)
    cost = _graph_cost(artifact, shape or read_eval_data(data)[0].shape[1:])  # type: ignore[arg-type]
    labelled = data is not None  # else random input (its shape given or read off the artifact): no accuracy to show
    runner = LocalRunner(target, timeout_s)
    if reason := runner.available():
        raise NothingToRunError(f"nothing could run: backend {backend}: {reason}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_eval_input(data, shape, Path(tmp))
        job = Job(job_id="bench", variant_id="-", target="local", backend=backend, artifact=str(artifact.resolve()),
                  threads=threads, eval_data=str(data.resolve()), backend_options=target.backend_options.get(backend, {}),
                  measure=MeasureSettings(min_time_s=min_time_s, precision=precision or None,
                                          profile_layers=profile_layers))
        result = run_one(job, timeout_s)
    if result.status != "ok":
        raise measurement_failure(result, f"measuring {artifact.name} on {backend}")
    table = Table(title=f"{artifact.name} on {backend}, {threads} thread(s), {len(result.samples_ns)} runs")
    for col in ("p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "first ms", "inf/s", "peak RSS MiB"):
        table.add_column(col, justify="right")
    lat, intervals = result.latency_ms, result.latency_ci_ms or {}
    table.add_row(*(_with_interval(lat[k], intervals.get(k)) for k in ("p50", "p90", "p99")),
                  *(_ms(lat[k]) for k in ("mean", "std")),
                  f"{result.first_inference_ms:.3f}", f"{result.throughput_ips:.1f}", f"{result.peak_rss_mb:.0f}")
    console.print(table)
    if (p50 := intervals.get("p50")) and result.window:
        met = {True: " (the precision asked was met)", False: " (short of the precision asked)"}.get(
            result.window.precision_met, "") if result.window.stopped != "precision" else ""
        console.print(f"p50 interval ({result.window.confidence:.0%}): [{p50[0]:.5g}, {p50[1]:.5g}] ms; window "
                      f"ended by {result.window.stopped}{met}", highlight=False)
        console.print("(the precision of this window's runs: another run of the same file lands further off, as "
                      "the machine's state differs between processes; `edgebench compare` decides on the run-to-run "
                      "spread)", style="dim", highlight=False)
    why = disturbance(result.model_dump(mode="json")["details"])
    if why is not None:  # the window's figures stand, but not as this file's speed on a quiet machine
        print_line("disturbed:", "yellow", f"{why}: measure again on a quieter machine")
    if labelled:
        console.print(f"accuracy on {data.name}: {result.accuracy:.4f} ({result.n_eval} images)")
        if non_finite := result.details.get("non_finite_outputs"):
            print_line("overflow:", "yellow", f"{non_finite} of {result.n_eval} images gave NaN or inf outputs, "
                       "counted as wrong")
    if cost is not None:
        console.print(cost)
    if result.layer_profile is not None:
        print_profile(result.layer_profile, result.latency_ms["p50"], top=None)


def _graph_cost(artifact: Path, image: tuple[int, ...]) -> str | None:
    """The parameters and MACs of an ONNX, TFLite or OpenVINO IR artifact, counted from its graph for one image, as a
    line."""
    from edgebench.external import FORMATS
    from edgebench.models.graph_cost import graph_cost

    if artifact.suffix.lower() not in FORMATS:
        return None
    try:
        cost = graph_cost(artifact, FORMATS[artifact.suffix.lower()], tuple(image))
    except Exception as exc:  # the measurement says whether the file is usable; the count is a side note
        return f"parameters and MACs not counted: {first_line(exc)}"
    shown = {k: "unknown" if v is None else f"{v:,}" for k, v in cost.items()}
    return f"counted from the graph: {shown['params']} parameters, {shown['macs']} MACs per image"


def _with_interval(value: float, interval: tuple[float, float] | None) -> str:
    """``0.0213 ±0.4%``: a percentile and the larger side of its confidence interval (none: too few runs); an
    interval far from symmetric (a tail percentile's) as its ends, ``0.0630 [0.0610, 9.8]``."""
    if interval is None or value <= 0:
        return _ms(value)
    below, above = value - interval[0], interval[1] - value
    if max(below, above) > 3 * max(min(below, above), 1e-12) and max(below, above) / value > 0.05:
        return f"{_ms(value)} [{interval[0]:.4g}, {interval[1]:.4g}]"
    return f"{_ms(value)} ±{max(below, above) / value:.2%}"


def _ms(value: float) -> str:
    """Milliseconds to 4 decimals, or to 4 significant digits below 1 ms (0.0057 for 0.005748 is 0.8 % off, more
    than the interval printed beside it)."""
    if not math.isfinite(value) or value <= 0:
        return f"{value:.4f}"
    return f"{value:.{max(4, 3 - math.floor(math.log10(value)))}f}"


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``run``, ``variants`` and ``bench`` to ``app``, each wrapped by ``wrap`` (one-line errors)."""
    for fn in (run, variants, bench):
        app.command()(wrap(fn))
