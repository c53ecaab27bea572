"""edgebench's Python API: run an experiment, load a stored run, and read its results as pandas DataFrames.

    import edgebench

    if __name__ == "__main__":  # a script's workers import it; a notebook needs no guard
        results = edgebench.run("my_experiment.yaml")      # or an Experiment object, or None for the default
        df = results.measurements()                         # one row per measurement, units in the column names
        front = results.pareto("latency", "accuracy", target="local-cpu")
        results.report("reports/mine")

        later = edgebench.load("runs/my_experiment/results.db", run="latest")

The CLI is a layer over these functions: ``edgebench run`` is :func:`run` plus printing, ``edgebench report`` is
:meth:`Results.report`. Bad input raises :class:`~edgebench.errors.EdgebenchError` (one line, as the CLI prints it).
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from edgebench import yaml_file
from edgebench.config import Experiment, check_loaded, load_experiment
from edgebench.errors import ConfigError, EdgebenchError

if TYPE_CHECKING:
    from edgebench.pipeline import ProgressFn, RunOutcome

#: store columns renamed so that every quantity carries its unit (latency in ms, sizes in bytes, memory in MB)
_UNITS = {f"{k}_ms": f"latency_{k}_ms" for k in ("p50", "p90", "p99", "mean", "std", "min", "max")} | {
    f"{k}_{end}_ms": f"latency_{k}_{end}_ms" for k in ("p50", "p90", "p99") for end in ("low", "high")
} | {"ci_confidence": "latency_ci_confidence"}
#: what ``measurements()`` returns, in this order: identity, the variant's fields flattened, settings, figures
COLUMNS = (
    "run_id", "measurement_id", "variant_id", "label", "parent_id", "origin", "target", "backend", "status", "error",
    "model", "dataset", "kind", "criterion", "ratio", "schedule", "allocation", "method", "sparsity", "rank_ratio",
    "precision", "threads", "batch_size", "scenario",
    "accuracy", "n_eval", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "latency_std_ms",
    "latency_min_ms", "latency_max_ms",
    # each percentile's distribution-free confidence interval (None where too few runs), at this confidence
    "latency_p50_low_ms", "latency_p50_high_ms", "latency_p90_low_ms", "latency_p90_high_ms", "latency_p99_low_ms",
    "latency_p99_high_ms", "latency_ci_confidence", "first_inference_ms", "load_ms", "throughput_ips", "n_samples",
    "size_bytes", "compressed_size_bytes", "params", "nonzero_params", "macs", "nonzero_macs", "training_macs",
    "bops", "fpga_multipliers", "fpga_latency_cycles",  # FPGA cost counted from hls4ml (cycles: synthesised)
    "peak_rss_mb", "energy_j_per_inference", "energy_source", "max_abs_diff", "ran_on", "predicted_p50_ms",
    "prediction_error_pct", "nodes_on_cpu",  # nodes a GPU runtime left to the CPU (ORT's placement)
)


@dataclass(frozen=True)
class Results:
    """One stored run: where it is, and (for a run made by this process) what the run did."""

    store_url: str
    run_id: str
    #: this process's run outcome (failed jobs, targets not run, stage times); None for a run read with :func:`load`
    outcome: RunOutcome | None = None

    def stored(self) -> pd.DataFrame:
        """The store's own rows for this run: every column, failed jobs included, the variant spec, build facts,
        settings and the session's details as JSON (what :meth:`measurements` flattens)."""
        from edgebench.store import Store

        with Store.open(self.store_url) as store:
            return store.measurements(self.run_id)

    def measurements(self, include_failed: bool = False) -> pd.DataFrame:
        """One row per measurement: the variant's fields flattened (criterion, ratio, precision...), the target
        settings, and every figure with its unit in the column name (``latency_p50_ms``, ``size_bytes``,
        ``peak_rss_mb`` (in MiB, 2**20 bytes), ``energy_j_per_inference``); ``accuracy`` is a fraction, ``macs`` per
        inference.
        Failed jobs (with their ``error``) only when ``include_failed``."""
        return _public(self.stored(), include_failed)

    def input_spec(self) -> dict[str, Any] | None:
        """What every artifact of the run takes as input: ``shape`` (C, H, W), ``classes``, and ``normalize``
        (``mean``/``std`` per channel applied to [0, 1] pixels, ``from`` declared or the training split's own
        statistics): a deployment feeding raw pixels gets another accuracy than the one measured. None for a run
        stored before it was recorded."""
        from edgebench.store import Store

        with Store.open(self.store_url) as store:
            return (store.get_run(self.run_id).get("experiment") or {}).get("input")

    def notes(self) -> list[str]:
        """What the run's results need said beside their figures, as ``label: text`` lines (the run's summary and
        the report's Notes say the same): a baseline no better than chance, artifacts at chance where it learned, float
        artifacts that do not compute their model, disturbed or unfinished timing windows, overflowing outputs,
        energy readings not kept, variants that pruned nothing, missed latency budgets, the latency model's error."""
        from edgebench.report.run_notes import run_notes

        return [str(note) for note in run_notes(self.stored(), self.input_spec())]

    def pareto(self, x: str = "latency", y: str = "accuracy", target: str | None = None) -> pd.DataFrame:
        """The measurements on the Pareto front of ``x`` against ``y`` (metric names as in reports and ``compare``:
        ``latency``, ``accuracy``, ``size``, ``macs``, ``energy``, ``memory``... or their columns), per target (its
        backends compete), or only ``target``'s; sorted by ``x``. Each metric's better direction is its own. An FPGA
        C simulation's latency front is on its synthesised cycles or counted bit operations (its p50 is host CPU
        time); on an energy axis, measured figures only where the target has any (an estimate is no evidence against
        a meter's reading). Non-finite figures are left out."""
        from edgebench.report.tables import front_mask
        from edgebench.store.metrics import fpga_cost_metric, get_metric, one_metric_twice
        from edgebench.store.schema import StoreError

        _expect(x, str, "pareto(x=...)", "a metric name like 'latency'")
        _expect(y, str, "pareto(y=...)", "a metric name like 'accuracy'")
        _expect(target, (str, type(None)), "pareto(target=...)", "one target's name, or None for every target")
        if problem := one_metric_twice(x, y):
            raise StoreError(f"pareto({x!r}, {y!r}): {problem}")
        mx, my = get_metric(x), get_metric(y)
        raw = self.stored()
        raw = raw[raw["status"] == "ok"]
        if target is not None:
            if target not in set(raw["target"]):
                known = ", ".join(sorted(set(raw["target"]))) or "none"
                raise StoreError(f"run {self.run_id} has no measurements on target {target!r}; it has: {known}")
            raw = raw[raw["target"] == target]
        missing = [m.name for m in (mx, my) if raw[m.column].isna().all()]
        if missing and len(raw):  # a front of nothing: say which figure no measurement has
            where = f" on target {target!r}" if target is not None else ""
            why = ": energy needs an energy meter on the target" if "energy" in missing else ""
            raise StoreError(f"no measurement of run {self.run_id}{where} has {' or '.join(missing)} (null where it "
                             f"was not measured{why})")
        fronts = []
        for _, group in raw.groupby("target"):  # the report's and the run summary's rule (report.tables.front_mask)
            gx = fpga_cost_metric(group) if mx.name == "latency" else mx  # an FPGA C-simulation's p50 is host time
            fronts.append(group[front_mask(group, gx, my)])
        front = pd.concat(fronts) if fronts else raw.iloc[0:0]
        return _public(front, include_failed=False).sort_values(_UNITS.get(mx.column, mx.column), ignore_index=True)

    def report(self, directory: str | Path, objectives: Sequence[tuple[str, str]] | None = None) -> Path:
        """Render the HTML report (and its PNG/SVG figures) of this run into ``directory``; its ``index.html``."""
        from edgebench.paths import writable_dir
        from edgebench.report import render_report
        from edgebench.store import Store

        _expect(directory, (str, Path), "report(directory)", "a directory path")
        if objectives is not None and (isinstance(objectives, str) or not all(
                isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2 for pair in objectives)):
            raise ConfigError(f"report(objectives=...): expected (x, y) pairs of metric names like "
                              f"[('latency', 'accuracy')], got {objectives!r:.80}")
        out = writable_dir(Path(directory), "report directory")
        with Store.open(self.store_url) as store:
            return render_report(store, self.run_id, out, objectives)

    @property
    def report_path(self) -> Path | None:
        """The report the run rendered, when it was made by :func:`run` with ``render=True``."""
        return self.outcome.report_path if self.outcome is not None else None


def _expect(value: object, types: type | tuple[type, ...], what: str, expected: str) -> None:
    """ConfigError naming the argument when ``value`` is not one of ``types``: else a TypeError from deep inside
    pathlib, SQLAlchemy or pandas, or (run="") a silent default."""
    if not isinstance(value, types) or value == "":
        raise ConfigError(f"{what}: expected {expected}, got {type(value).__name__} {value!r:.80}")


def _public(raw: pd.DataFrame, include_failed: bool) -> pd.DataFrame:
    df = raw if include_failed else raw[raw["status"] == "ok"]
    df = df.rename(columns={"id": "measurement_id", **_UNITS})
    df = df.assign(origin=[_origin(spec) for spec in df["spec"]])
    df = df.reindex(columns=list(COLUMNS)).reset_index(drop=True)
    # a figure nothing measured (energy without a meter) is NaN in a float column, not None in an object one
    figures = [c for c in COLUMNS[COLUMNS.index("accuracy"):] if c not in ("energy_source", "ran_on")]
    figures += ["ratio", "sparsity", "rank_ratio"]  # None in a run without that kind of variant: NaN, float dtype
    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce") for c in figures if df[c].dtype == object})


def _origin(spec: object) -> str:
    """Who made the variant's artifact: edgebench, or the tool an external artifact names (``artifacts:``)."""
    external = (spec or {}).get("external") if isinstance(spec, dict) else None
    return f"external:{external.get('label')}" if isinstance(external, dict) else "edgebench"


def _refuse_unguarded_script() -> None:
    """Refuse a run that a script starts at its top level outside ``if __name__ == "__main__":``.

    edgebench's workers are spawned processes, and a spawned process imports the main script before it takes a
    task (as multiprocessing does): the script's run would start again in every worker and wait for the host's
    cores, which the parent run holds while it waits for that worker. Checked in the parent from the script's
    source, and, should that miss, in the worker while it imports (multiprocessing marks it ``_inheriting``).
    """
    fix = ("put the script's calls under `if __name__ == \"__main__\":` (edgebench's worker processes import "
           "the main script, as multiprocessing's spawn does, and would run it again)")
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(f"error: edgebench.run() was called while a worker process imported your script: {fix}")
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None:  # an interactive session or a notebook: nothing is imported again
        return
    script = os.path.abspath(path)
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>"
                                     and os.path.abspath(frame.f_code.co_filename) == script):
        frame = frame.f_back
    if frame is None:  # not called from the script's own top-level code
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return
    if not _under_main_guard(tree.body, frame.f_lineno):
        raise EdgebenchError(f"{path}:{frame.f_lineno}: edgebench.run() is called at the script's top level: {fix}")


def _under_main_guard(body: list[ast.stmt], line: int) -> bool:
    """Whether ``line`` lies in an ``if`` on ``__name__`` among the statements of ``body`` (nested blocks too)."""
    for stmt in body:
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            if isinstance(stmt, ast.If) and any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(stmt.test)):
                return True
            blocks = [getattr(stmt, field, None) for field in ("body", "orelse", "finalbody", "handlers")]
            return any(_under_main_guard(block, line) for block in blocks if isinstance(block, list))
    return False


def run(
    experiment: Experiment | Mapping[str, Any] | str | Path | None = None,
    *,
    tags: Sequence[str] | str = (),
    progress: ProgressFn | None = None,
    render: bool = True,
) -> Results:
    """Run (or resume) an experiment end to end - a YAML path, an :class:`~edgebench.config.Experiment`, a mapping
    of an experiment file's fields (``{"model": {...}, "training": {"epochs": 3}}``), or None for the built-in
    default - and return its stored results.

    An Experiment or mapping built in Python gets the same checks as a file (paths relative to the working
    directory).
    Tags name the run for ``compare`` and ``history``; ``progress(stage, done, total, detail)`` is called as tasks
    finish; ``render=False`` skips the HTML report.
    """
    _refuse_unguarded_script()  # first: a worker importing the script exits before seconds of imports
    from edgebench.pipeline import run_experiment
    from edgebench.store.connection import absolute_store_url
    from edgebench.store.store import validate_tag

    _expect(experiment, (Experiment, Mapping, str, Path, type(None)), "run(experiment)",
            "an Experiment, a mapping of an experiment file's fields, an experiment file's path, or None for the "
            "built-in one")
    if not isinstance(tags, str) and not (isinstance(tags, Sequence) and all(isinstance(t, str) for t in tags)):
        raise ConfigError(f"run(tags=...): expected a tag or a list of tags (text), got {tags!r:.80}")
    if progress is not None and not callable(progress):  # else a TypeError once a run is stored and training
        raise ConfigError(f"run(progress=...): expected a function progress(stage, done, total, detail) or None, got "
                          f"{type(progress).__name__} {progress!r:.80}")
    _expect(render, bool, "run(render=...)", "True or False")
    if isinstance(experiment, Experiment):  # fields set after it was built (exp.name = "../x") were never validated
        experiment = experiment.model_dump(exclude_unset=True, warnings=False)  # a default is not a choice
    if isinstance(experiment, Mapping):  # as a file's fields: the same one-line errors, naming the argument
        experiment = yaml_file.validate(Experiment, dict(experiment), "run(experiment)")
    exp = check_loaded(experiment) if isinstance(experiment, Experiment) else load_experiment(experiment)
    tags = (tags,) if isinstance(tags, str) else tags  # one tag, not one per letter
    for tag in tags:
        validate_tag(tag)
    outcome = run_experiment(exp, tags=tuple(tags), progress=progress, render=render)
    # absolute: a notebook's %cd afterwards must not read (and create) another directory's runs/<name>/results.db
    return Results(absolute_store_url(outcome.store_url), outcome.run_id, outcome)


def load(store: str | Path, run: str = "latest") -> Results:
    """A stored run: ``store`` is a results file or database URL, ``run`` an id, a tag, an id prefix or 'latest'."""
    from edgebench.store import Store
    from edgebench.store.connection import sqlite_file, store_url
    from edgebench.store.schema import StoreError

    _expect(store, (str, Path), "load(store)", "a results file's path or a database URL")
    _expect(run, str, "load(run=...)", "a run id, a tag, an id prefix or 'latest'")
    url = store_url(store)
    if (file := sqlite_file(url)) is not None and not file.is_file():  # reading must not create an empty store
        raise StoreError(f"no results store at {store}: run an experiment first, or give its results.db or URL")
    with Store.open(url) as opened:
        return Results(url, opened.resolve_run(run))
