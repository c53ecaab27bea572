"""CLI commands over an existing results store: report, compare, history, tag, runs, delete, export, import.

Registered on the main app by ``edgebench.cli`` through :func:`register`. Nothing is re-measured: every
command reads the store, and ``tag``, ``delete`` and ``import`` change only what they name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.table import Table
from rich.text import Text

from edgebench.cli.common import console, finite, print_line
from edgebench.paths import removed_if_left_empty, writable_dir, writable_file
from edgebench.store import Store, StoreError
from edgebench.store.gate import DEFAULT_UNSTABLE_PCT
from edgebench.store.metrics import DEFAULT_ALLOWANCE, DEFAULT_LOOKBACK, DEFAULT_ROUNDS

if TYPE_CHECKING:
    import pandas as pd

    from edgebench.store.compare import Comparison

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="results database: a SQLite path or a database URL (default: the default experiment's)"),
]


def _default_store_url() -> str:
    """The built-in experiment's results store, read without the checks of its names (``load_experiment``'s):
    those load every plug-in, so a broken installed one made every store unreadable."""
    from edgebench import yaml_file
    from edgebench.config import DEFAULT_EXPERIMENT, Experiment

    return yaml_file.load(DEFAULT_EXPERIMENT, Experiment, "experiment file").store_url()


def open_store(store: str | None, must_exist: bool = True, what: str = "--store") -> Store:
    """Open ``store`` (default: the built-in experiment's); a missing SQLite file is an error for readers, which
    names the stores of other experiments in this directory when the default is missing. ``what`` is the argument
    that gave it, for errors."""
    from edgebench.store.connection import sqlite_file

    default = store is None
    store = store or _default_store_url()
    file = None if not must_exist else sqlite_file(store) if "://" in store else Path(store)  # None: a server's
    if file is not None and file.is_dir():
        raise StoreError(f"{what} {store} is a directory; give the results database in it (e.g. runs/<name>/results.db)")
    if file is not None and not file.is_file():  # opening it would create an empty store
        others = sorted(str(p) for p in file.parent.parent.glob("*/results.db")) if default else []
        if others:
            raise StoreError(f"no results store at {store} (the default experiment's); this directory has "
                             f"{', '.join(others)}: pass one with --store")
        raise StoreError(f"no results store at {store}: run `edgebench run` first or pass {what} PATH|URL")
    if file is not None and file.stat().st_size == 0:  # SQLite would take it as a new store
        raise StoreError(f"{store} is an empty file, not a results store: pass the results.db a run wrote")
    return Store.open(store)


def report(
    store: StoreOpt = None,
    run: Annotated[str, typer.Option("--run", help="run id, tag, id prefix or 'latest'")] = "latest",
    out: Annotated[Path | None, typer.Option("--out", help="output directory (default: the run's report.dir, reports/<run "
                                              "name> unless set, for the latest run of its name; <that>-<run id> for an "
                                              "older one)")] = None,
    objective: Annotated[
        list[str] | None, typer.Option("--objective", help="Pareto pair X:Y, e.g. latency:accuracy; repeatable "
                                       "(default: the run's own report.objectives)")
    ] = None,
) -> None:
    """Re-render the HTML report of a stored run without measuring anything."""
    from edgebench import api
    from edgebench.report.html import resolve_objectives
    from edgebench.store.metrics import one_metric_twice

    pairs = []
    for item in objective or []:
        x, sep, y = item.partition(":")
        if not sep:
            raise StoreError(f"--objective {item!r}: use X:Y, e.g. latency:accuracy")
        if problem := one_metric_twice(x, y):
            raise StoreError(f"--objective {item!r}: {problem}")
        pairs.append((x, y))
    if pairs:
        resolve_objectives(pairs)  # an unknown metric fails before anything is read or written
    with open_store(store) as st:
        info = st.get_run(run)
        url = st.url
        default = _report_dir(st, info)
    out_dir = writable_dir(out or default, "--out")
    print_line("report:", "", api.Results(url, info["id"]).report(out_dir, pairs or None))


def _report_dir(st: Store, info: dict[str, Any]) -> Path:
    """Where the report of stored run ``info`` goes by default: its report.dir (reports/<name> unless its experiment
    set one) holds the report of the run of that name that ended last, where edgebench run wrote it; an other run's
    goes beside it, <dir>-<run id>."""
    own = Path(((info.get("experiment") or {}).get("report") or {}).get("dir") or Path("reports") / info["name"])
    return own if info["id"] == st.latest_run(info["name"]) else own.with_name(f"{own.name}-{info['id']}")


def compare(
    baseline: Annotated[str, typer.Argument(help="baseline run id or tag")],
    candidate: Annotated[str, typer.Argument(help="candidate run id or tag")],
    remeasure: Annotated[
        bool,
        typer.Option("--remeasure", help="re-time both runs' stored artifacts here, alternately, in --rounds fresh "
                     "processes each, and decide on the paired rounds (the way for CI on a shared machine)"),
    ] = False,
    rounds: Annotated[int, typer.Option(min=2, help="--remeasure: rounds per result and side")] = DEFAULT_ROUNDS,
    max_rounds: Annotated[int | None, typer.Option(
        "--max-rounds", min=2, help="--remeasure: rounds at most, a round that other processes or a change of the "
        "machine's speed disturbed being measured again (default: 3 x --rounds)")] = None,
    min_time: Annotated[
        float | None, typer.Option("--min-time", min=0, help="--remeasure: timed seconds per round (default: the run's)")
    ] = None,
    targets_dir: Annotated[Path | None, typer.Option(
        "--targets-dir", help="--remeasure: extra directory of target YAML files (the runs' own targets)")] = None,
    store: StoreOpt = None,
    fmt: Annotated[
        Literal["table", "markdown", "json", "html"],
        typer.Option("--format", help="output format; html: a page with each run's latency distribution (--output "
                     "names it, default reports/compare/index.html)"),
    ] = "table",
    min_effect: Annotated[
        list[str] | None,
        typer.Option("--min-effect", help="METRIC=PERCENT (accuracy: points), e.g. latency=3; repeatable"),
    ] = None,
    alpha: Annotated[float, typer.Option(min=1e-6, max=0.5, help="significance level of the tests")] = 0.01,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="also write the output to this file (for "
                                                  "--format table: its Markdown)")] = None,
    repeats: Annotated[
        bool,
        typer.Option(
            "--repeats",
            help="a tag names all its runs: each side's runs are the evidence (measure each side 2-3 times on a "
            "noisy machine)",
        ),
    ] = False,
    allowance: Annotated[
        float,
        typer.Option(
            min=0, help="percent a timing or energy figure may move between single runs here: called only beyond "
            "it while the run-to-run spread is unknown (one run a side, too few earlier runs)",
        ),
    ] = DEFAULT_ALLOWANCE,
    lookback: Annotated[
        int, typer.Option(min=0, help="earlier runs on this machine whose spread per result counts (0: none)")
    ] = DEFAULT_LOOKBACK,
    warn: Annotated[
        list[str] | None,
        typer.Option("--warn", help="METRIC=PERCENT: a regression this large only warns (exit 5); repeatable"),
    ] = None,
    fail: Annotated[
        list[str] | None,
        typer.Option("--fail", help="METRIC=PERCENT: a regression this large fails (exit 1); repeatable. A metric "
                     "with neither --warn nor --fail fails on any regression"),
    ] = None,
    unstable: Annotated[
        float,
        typer.Option(min=0, help="run-to-run spread (percent) from which a result is unstable: its regressions are "
                     "named and only warn"),
    ] = DEFAULT_UNSTABLE_PCT,
) -> None:
    """Compare two runs and gate on the result: exit 1 when a regression fails the gate, 5 when regressions only
    warn (--warn thresholds, unstable measurements), 0 otherwise.

    In CI use --remeasure: both runs' artifacts are timed again here, alternately
    (asv continuous), and the paired rounds decide, so drift between the runs cancels.

    Without it, measured metrics are decided per run, never on one run's samples;
    with one run a side and little history here the confidence is unknown and
    only changes beyond --allowance count.
    """
    from edgebench.store.compare import compare_runs
    from edgebench.store.compare_markdown import fit_comment, to_markdown
    from edgebench.store.gate import evaluate, gate_markdown, min_effects, parse_thresholds
    from edgebench.targets import use_targets_dir

    finite(min_time=min_time, alpha=alpha, allowance=allowance, unstable=unstable)
    # without --remeasure nothing is measured: these would be silently ignored
    given = [name for name, unset in (("--rounds", rounds == DEFAULT_ROUNDS), ("--max-rounds", max_rounds is None),
                                      ("--min-time", min_time is None)) if not unset]
    if given and not remeasure:
        raise StoreError(f"compare: {', '.join(given)} set how --remeasure times the runs again; add --remeasure, or "
                         "drop them to compare the stored measurements")
    use_targets_dir(targets_dir)  # a missing directory fails here, before anything is measured
    thresholds = parse_thresholds(warn, fail, unstable)
    effects = min_effects(thresholds, min_effect)
    with removed_if_left_empty(*([output.parent] if output else []), Path("reports") / "compare"):
        if output:
            writable_file(output, "--output")
        if fmt == "html":
            output = writable_file(output or Path("reports") / "compare" / "index.html", "--output")
        with open_store(store) as st:
            if remeasure:
                stored_rule = {"repeats": repeats, "allowance": allowance, "lookback": lookback}
                cmp = _remeasured(st, baseline, candidate, rounds, min_time, effects, alpha, stored_rule, max_rounds)
            else:
                cmp = compare_runs(st, baseline, candidate, effects, alpha, repeats=repeats, allowance=allowance,
                                   lookback=lookback)
            gate = evaluate(cmp, thresholds)
            if fmt == "html":
                from edgebench.report.compare_page import render_comparison

                print_line("compare page:", "", render_comparison(st, cmp, gate, thresholds, output))
                raise typer.Exit(gate.exit_code)
        if fmt == "json":
            text = json.dumps({**cmp.to_json(), "gate": gate.to_json()}, indent=2, allow_nan=False)
            console.print_json(text)
        elif fmt == "markdown":
            text = fit_comment(gate_markdown(gate, thresholds) + "\n" + to_markdown(cmp))
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            text = fit_comment(gate_markdown(gate, thresholds) + "\n" + to_markdown(cmp))
            _print_comparison(cmp)
            console.print(gate_markdown(gate, thresholds), markup=False, highlight=False, soft_wrap=True)
        if output:
            output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        raise typer.Exit(gate.exit_code)


def _remeasured(st: Store, baseline: str, candidate: str, rounds: int, min_time: float | None,
                effects: dict[str, float], alpha: float, stored_rule: dict[str, Any],
                max_rounds: int | None) -> Comparison:
    """``compare --remeasure`` with a progress bar over the rounds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgebench.remeasure import remeasure_runs

    columns = (TextColumn("re-measuring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("", total=None)

        def advance(done: int, total: int, what: str) -> None:
            progress.update(bar, completed=done, total=total, description=what)

        return remeasure_runs(st, baseline, candidate, rounds, min_time, effects, alpha, advance, stored_rule,
                              max_rounds)


def _print_comparison(cmp: Comparison) -> None:
    from edgebench.store.compare import shown_name
    from edgebench.store.compare_markdown import fmt_change, fmt_confidence, fmt_evidence

    colors = {"regression": "red", "lost": "red", "improvement": "green", "unchanged": "white", "undecided": "yellow",
              "n/a": "dim"}
    table = Table(title=f"baseline {cmp.baseline_run} → candidate {cmp.candidate_run}")
    for column in ("variant", "target", "p50 change [CI]", "confidence", "evidence", "p50 verdict", "other changes"):
        table.add_column(column, overflow="fold")
    for result in sorted(cmp.results, key=lambda r: not r.regressed):
        by_metric = {c.metric: c for c in result.changes}
        p50 = by_metric["latency"]
        others = [
            f"[{colors[c.verdict]}]{shown_name(c)} {fmt_change(c)} {c.verdict}[/]"
            for c in result.changes
            if c.metric != "latency" and c.verdict in ("regression", "lost", "improvement")
        ]
        table.add_row(
            Text(result.label), Text(result.context), fmt_change(p50), fmt_confidence(p50), fmt_evidence(p50),
            f"[{colors[p50.verdict]}]{p50.verdict}[/]", "; ".join(others) or "—",
        )  # fmt: skip
    console.print(table)
    console.print(f"how: {cmp.method}", style="dim", highlight=False)
    if cmp.speed_note:
        print_line("machine speed:", "yellow", cmp.speed_note)
    for warning in dict.fromkeys(cmp.warnings + [w for r in cmp.results for w in r.warnings] + cmp.unmatched):
        print_line("context:", "yellow", warning)
    if cmp.regressions:
        console.print(f"[bold red]{len(cmp.regressions)} result(s) regressed[/]")
    elif cmp.results:
        console.print(f"[green]no regression[/] in {len(cmp.results)} compared results")
    else:
        console.print("[yellow]nothing compared[/]: the runs share no result (variant, target and settings)")


def history(
    store: StoreOpt = None,
    metric: Annotated[str, typer.Option(help="latency, p99, throughput, energy, memory, size, accuracy ...")] = "latency",
    name: Annotated[str | None, typer.Option(help="only runs of this experiment name")] = None,
    variant: Annotated[str | None, typer.Option(help="only this variant label or id")] = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    all_runs: Annotated[bool, typer.Option("--all-runs", help="include untagged runs")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="also write history.html and its figure here")] = None,
    last: Annotated[int, typer.Option(min=1, help="columns for the last N runs (change points are found over all)")] = 6,
) -> None:
    """A metric over tagged runs per (variant, target), with detected change points."""
    from edgebench.report.history_page import render_history
    from edgebench.store.history import history_frame, series_change_points
    from edgebench.store.metrics import TIMING_METRICS, get_metric

    m = get_metric(metric)
    with removed_if_left_empty(*([out] if out else [])):
        if out:
            writable_dir(out, "--out")
        with open_store(store) as st:
            hist = history_frame(st, m.name, name=name, tagged_only=not all_runs)
            if hist.empty:
                runs = f"runs of experiment '{name}'" if name else "runs"
                raise StoreError(f"no {runs} with {m.name} results" + ("" if all_runs else " among tagged runs: tag runs "
                                 "with `edgebench tag RUN TAG` or pass --all-runs"))
            if variant:
                hist = _only(hist, (hist["label"] == variant) | (hist["variant_id"] == variant), f"variant '{variant}'",
                             hist["label"])
            if target:
                hist = _only(hist, hist["target"] == target, f"target '{target}'", hist["target"])
            changes = series_change_points(st, hist, m.name)
            page = render_history(st, out, m.name, name=name, hist=hist) if out else None
        every_run = hist.drop_duplicates("position").sort_values("position")
        marks = {(r.label, r.context, r.position): r.verdict for r in changes.itertuples()}
        timing = m.name in TIMING_METRICS
        series = [(label, context, part) for (label, context), part in hist.groupby(["label", "context"], sort=True)]
        columns = {pos: _history_cells(series, pos, marks, timing) for pos in every_run["position"].tail(last)}
        runs = every_run[every_run["position"].isin(_fitting(columns, console.width))]
        shown = f"; the last {len(runs)} of {len(every_run)} runs (--last)" if len(runs) < len(every_run) else ""
        if len(runs) < min(last, len(every_run)):
            shown += f", as many as {console.width} columns hold (COLUMNS)"
        table = Table(title=f"{m.label} over runs (▲ regression, ▼ improvement from that run on"
                            + ("; ~ disturbed: shown, not evidence" if timing else "") + shown + ")")
        table.add_column("variant", overflow="fold")  # a long label wraps rather than losing its end
        table.add_column("target", overflow="fold")
        for label, pos in zip(runs["run_label"], runs["position"]):  # a figure is never cut: "3.209e+0…"
            table.add_column(str(label), justify="right", overflow="fold",
                             min_width=max(cell.cell_len for cell in columns[pos]))
        for i, (label, context, _) in enumerate(series):  # "[estimated:...]" is no markup: Text, not a string
            table.add_row(Text(str(label)), Text(str(context)), *(columns[pos][i] for pos in runs["position"]))
        console.print(table)
        valued = hist.dropna(subset=["value"])
        n_disturbed = int(valued["contended"].astype(bool).sum()) if timing else 0
        console.print(f"{len(changes)} change point(s) detected" + (
            f" ({n_disturbed} of {len(valued)} values were timed in disturbed windows (~): shown, not evidence; measure "
            "those runs again on a quiet machine)" if n_disturbed else ""))
        if out and page is not None:
            print_line("history page:", "", page)
        elif out:
            print_line("history page:", "yellow", f"not written: a page needs two runs or more, and {out} would hold one")


_LABEL_MIN = 14  # columns each of the variant and target columns keeps, wrapping what is longer


def _history_cells(series: list[tuple[str, str, pd.DataFrame]], pos: int, marks: dict, timing: bool) -> list[Text]:
    """One run's column of the history table: each series' figure there (``~`` timed in a disturbed window, ▲ ▼ a
    change point from it on), ``—`` where it has none."""
    cells = []
    for label, context, part in series:
        found = part[part["position"] == pos]
        if found.empty:
            cells.append(Text("—"))
            continue
        mark = {"regression": " ▲", "improvement": " ▼"}.get(marks.get((label, context, pos), ""), "")
        disturbed = "~" if timing and bool(found["contended"].iloc[0]) else ""
        cells.append(Text(f"{_history_figure(found['value'].iloc[0])}{disturbed}{mark}",
                          style={" ▲": "red", " ▼": "green"}.get(mark, "")))
    return cells


def _fitting(columns: dict[int, list[Text]], width: int) -> list[int]:
    """The newest run positions whose columns fit ``width`` beside the variant and target columns (a column takes
    its widest figure, 2 of padding and 1 of border; a longer header folds): figures kept whole crop the table's
    last runs away where there is no room for them."""
    room = width - 1 - 2 * (_LABEL_MIN + 3)
    kept: list[int] = []
    for pos in reversed(list(columns)):
        need = max(cell.cell_len for cell in columns[pos]) + 3
        if kept and need > room:
            break
        kept.append(pos)
        room -= need
    return kept


def _history_figure(value: float) -> str:
    """A figure of the history table: 4 significant digits, with thousands separators from 10,000 up (throughput
    32,088 read "3.209e+04")."""
    return f"{value:,.0f}" if 1e4 <= abs(value) < 1e12 else f"{value:.4g}"


def _only(hist: pd.DataFrame, keep: pd.Series, what: str, have: pd.Series) -> pd.DataFrame:
    """The rows of ``hist`` that ``keep`` selects; StoreError naming what the runs do have when none are left."""
    if not keep.any():
        names = sorted(set(have.astype(str)))
        raise StoreError(f"no {what} in these runs; they have: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
    return hist[keep]


def tag(
    run: Annotated[str, typer.Argument(metavar="RUN", help="run id, id prefix, existing tag or 'latest'")],
    tag_name: Annotated[str, typer.Argument(metavar="TAG", help="e.g. a git ref or release-1.2")],
    store: StoreOpt = None,
) -> None:
    """Tag a run so `compare` and `history` can refer to it by name."""
    with open_store(store) as st:
        run_id = st.resolve_run(run)
        st.tag_run(run_id, tag_name)
    console.print(f"tagged {run_id} as {tag_name}")


def _run_lock(run_id: str) -> Path:
    """The host-wide lock a process driving ``run_id`` holds (``edgebench run`` takes it)."""
    from edgebench.executor.host_lanes import default_lock_dir

    return default_lock_dir() / f"run-{run_id}"


def _status(run_id: str, status: str) -> str:
    """A run's stored status; a 'running' one whose host-wide lock this host holds no more is said to have no live
    process (killed, or its machine rebooted: the same command resumes it)."""
    from edgebench.cache_files import lock_file, try_lock

    path = _run_lock(run_id)
    if status != "running" or not lock_file(path).is_file():  # no lock here: driven from elsewhere, or unknown
        return status
    handle = try_lock(path)
    if handle is None:
        return status
    handle.close()
    return "running (no live process here: the same command resumes it)"


def runs(store: StoreOpt = None) -> None:
    """List stored runs with their tags and measurement counts."""
    with open_store(store) as st:
        df = st.runs()
    table = Table(title="runs")
    for column in ("id", "name", "status", "started", "tags", "measured", "failed", "commit"):
        table.add_column(column, overflow="fold")
    for r in df.itertuples():  # measured and failed jobs apart: "54 measurements, 4 failed" read as 58 jobs
        table.add_row(r.id, Text(r.name or ""), _status(r.id, r.status), r.started_at[:19], Text(r.tags or ""),
                      str(r.n_measurements - r.n_failed), str(r.n_failed),
                      r.edgebench_commit or "")  # fmt: skip
    console.print(table)


def delete(
    run: Annotated[list[str], typer.Argument(
        metavar="RUN...", help="run id, id prefix, 'latest', or a tag (every run carrying it)")],
    store: StoreOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="delete them; without it the runs are only listed")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="also a run stored as running that no process of this host drove (it may be measured "
        "from another machine sharing the store)")] = False,
) -> None:
    """Delete runs with their tags, measurements, raw samples and layer profiles (listed first; --yes deletes).
    Variants, which other runs share, the model and artifact cache and the report files stay."""
    from contextlib import ExitStack

    import pandas as pd

    from edgebench.cache_files import lock_file, try_lock

    with open_store(store) as st:
        run_ids = list(dict.fromkeys(r for ref in run for r in st.resolve_runs(ref)))
        listed = st.runs().set_index("id").loc[run_ids]
        for run_id, row in listed.iterrows():
            tags = f", tags {row['tags']}" if row["tags"] else ""
            console.print(f"{run_id}  {row['name']}: {row['status']}, started {row['started_at'][:19]}, "
                          f"{row['n_measurements']} measurement(s){tags}", markup=False, highlight=False)
        if not yes:
            console.print(f"nothing deleted: add --yes to delete {'this run' if len(run_ids) == 1 else 'these runs'}")
            return
        with ExitStack() as held:  # an unfinished run's lock, held while it goes, so no process resumes it meanwhile
            for run_id, row in listed[listed["finished_at"].map(pd.isna)].iterrows():
                path = _run_lock(run_id)
                known = lock_file(path).is_file()
                try:
                    handle = try_lock(path)
                except OSError as exc:
                    raise StoreError(f"cannot take run {run_id}'s lock to delete it ({exc}); nothing deleted") from exc
                if handle is None:
                    raise StoreError(f"run {run_id} is being measured by a live process on this host: let it finish "
                                     "or stop it (Ctrl-C keeps its finished jobs), then delete it; nothing deleted")
                held.callback(handle.close)
                if not known:
                    held.callback(lock_file(path).unlink, missing_ok=True)  # made by asking; the run's own stays
                if row["status"] == "running" and not known and not force:
                    raise StoreError(f"run {run_id} is stored as running and no process of this host drove it: it may "
                                     "be measured from another machine sharing the store; --force deletes it anyway; "
                                     "nothing deleted")
            removed = st.delete_runs(run_ids)
    console.print(f"deleted {len(run_ids)} run(s) and their {removed} measurement(s)")


def export(
    out: Annotated[Path | None, typer.Argument(help="output file: .csv or .parquet (not needed with --mlflow)")] = None,
    store: StoreOpt = None,
    run: Annotated[list[str] | None, typer.Option(
        "--run", help="run id, or a tag (every run carrying it); repeatable (default: all)")] = None,
    fmt: Annotated[Literal["csv", "parquet"] | None, typer.Option("--format", help="default: from the suffix")] = None,
    samples: Annotated[bool, typer.Option("--samples", help="also write raw per-iteration samples")] = False,
    mlflow: Annotated[
        str | None,
        typer.Option("--mlflow", help="log the runs to this MLflow tracking URI instead (extra mlflow): one MLflow "
                     "run each, a nested run per measurement; runs already logged there are skipped"),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="with --mlflow: the MLflow experiment (default: the run's name)")
    ] = None,
) -> None:
    """Export measurements (joined with variants and runs) to CSV or Parquet, or log them to MLflow."""
    from edgebench.store.transfer import export_runs

    if mlflow is not None:
        if out is not None or fmt is not None or samples:  # else the file asked for is silently not written
            raise StoreError("export: --mlflow logs to MLflow and writes no file; give either an output file "
                             "(--format, --samples) or --mlflow, not both")
        _export_mlflow(store, run, mlflow, experiment)
        return
    if experiment is not None:
        raise StoreError("export: --experiment names the MLflow experiment, so it goes with --mlflow")
    if out is None:
        raise StoreError("export needs an output file (.csv or .parquet) or --mlflow URI")
    writable_file(out, "export file")
    with open_store(store) as st:
        files = export_runs(st, out, run, fmt, samples)
    for path in files:
        print_line("wrote", "", path)


def _export_mlflow(store: str | None, runs_: list[str] | None, uri: str, experiment: str | None) -> None:
    from edgebench.tracking.mlflow_log import log_run

    with open_store(store) as st:
        run_ids = list(dict.fromkeys(r for ref in runs_ for r in st.resolve_runs(ref))) if runs_ else st.runs()["id"].tolist()
        for run_id in run_ids:
            report = _report_dir(st, st.get_run(run_id))
            page = report / "index.html"  # another run's page where this one was stored with --no-report
            ours = page.is_file() and f"({run_id})</title>" in page.read_text(encoding="utf-8", errors="replace")
            mlflow_id, logged = log_run(st, run_id, uri, experiment, report if ours else None)
            state = f"{logged} nested runs" if logged else "already there, skipped"
            print_line("mlflow:", "", f"run {run_id} -> MLflow run {mlflow_id} ({state})")


def import_(
    source: Annotated[str, typer.Argument(help="the store to copy from: SQLite path or database URL")],
    store: StoreOpt = None,
    run: Annotated[list[str] | None, typer.Option(
        "--run", help="run id, or a tag (every run carrying it), to copy; repeatable (default: all)")] = None,
) -> None:
    """Copy runs from another store into this one (a run already present gains only what it lacks)."""
    from edgebench.store.transfer import import_runs

    if Path(source).suffix.lower() in (".csv", ".parquet"):
        raise StoreError(f"{source}: an exported table cannot be imported; `edgebench import` copies runs from another "
                         "results store (its SQLite file or database URL)")
    with open_store(source, what="SOURCE") as _src:  # a clear error when the source does not exist
        pass
    dest = store or _default_store_url()
    new_file = "://" not in dest and not Path(dest).exists()
    try:
        with open_store(dest, must_exist=False) as st:
            copied = import_runs(st, source, run)
    except BaseException:
        if new_file and Path(dest).is_file():  # an empty store left behind would look like an import that worked
            Path(dest).unlink()
        raise
    console.print(f"imported {len(copied)} run(s)" + (f": {', '.join(copied)}" if copied else " (all already present)"))


def register(app: typer.Typer, wrap: Any) -> None:
    """Add the store commands to ``app``, each wrapped by ``wrap`` (one-line errors)."""
    for fn, name in (
        (report, "report"), (compare, "compare"), (history, "history"), (tag, "tag"),
        (runs, "runs"), (delete, "delete"), (export, "export"), (import_, "import"),
    ):  # fmt: skip
        app.command(name)(wrap(fn))
