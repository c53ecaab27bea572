"""CLI commands ``edgebench targets`` and ``edgebench doctor`` (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgebench.cli.common import PluginFiles, console, print_line, use_plugins
from edgebench.doctor import TargetStatus, components, kind, target_statuses
from edgebench.errors import ExitCode
from edgebench.targets import targets_dirs

TargetsDir = Annotated[Path | None, typer.Option("--targets-dir", help="extra directory of target YAML files")]


def _energy_label(meter: dict | None) -> str:
    return "-" if not meter else str(meter.get("type", "?"))


_STATE_STYLE = {"available": "green", "unavailable": "red", "broken": "bold red"}


def _state(status: TargetStatus) -> str:
    return f"[{_STATE_STYLE[status.state]}]{status.state}[/]"


def _fail_if_broken(statuses: list[TargetStatus]) -> None:
    """After the table: a broken target file is bad input (exit 2), not a target that cannot run here."""
    broken = [s.name for s in statuses if s.broken]
    if broken:
        print_line("error:", "bold red", f"{len(broken)} target file(s) do not load: {', '.join(broken)}; "
                   "fix or remove them (the reason of each is listed above)")
        raise typer.Exit(ExitCode.BAD_INPUT)


def targets(targets_dir: TargetsDir = None, plugins: PluginFiles = None) -> None:
    """List every target with available / unavailable / broken and the reason; exit 2 when a file is broken."""
    use_plugins(plugins)
    table = Table(title="edgebench targets", show_lines=False)
    for column in ("target", "kind", "backends", "energy", "status", "reason"):
        table.add_column(column, overflow="fold")
    statuses = target_statuses(targets_dir)
    for status in statuses:
        spec = status.spec
        table.add_row(
            status.name,
            spec.kind if spec else "?",
            ", ".join(spec.backends) if spec else "?",
            _energy_label(spec.energy) if spec else "?",
            _state(status),
            # install hints hold '[extra]', which rich would read as markup
            escape(status.reason or (f"not run here: {status.partial}" if status.partial else "")),
        )
    console.print(table)
    _fail_if_broken(statuses)


def doctor(targets_dir: TargetsDir = None, plugins: PluginFiles = None) -> None:
    """Print what is installed, what each target needs and what is missing (with the install command); exit 2
    when a target file is broken."""
    use_plugins(plugins)
    targets_dirs(targets_dir)  # a wrong --targets-dir fails before the tables
    found = components()
    table = Table(title="packages and tools")
    for column in ("component", "kind", "for", "found", "install"):
        table.add_column(column, overflow="fold")
    for f in found:
        c = f.component
        table.add_row(c.name, kind(c), c.purpose, f"[green]{f.found}[/]" if f.present else "[red]missing[/]",
                      "" if f.present else escape(c.install_hint))
    console.print(table)

    hints = {f.component.name: f.component.install_hint for f in found}
    needs = Table(title="targets: needs and missing")
    for column in ("target", "needs", "missing", "status"):
        needs.add_column(column, overflow="fold")
    statuses = target_statuses(targets_dir)
    for status in statuses:
        missing = "; ".join(f"{m} ({hints.get(m, '')})" for m in status.missing) or "-"
        state = _state(status) + escape(f": {status.reason}" if status.reason else "")  # the style stays markup
        needs.add_row(status.name, ", ".join(status.needs) or "-", escape(missing), state)
    console.print(needs)
    _fail_if_broken(statuses)


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``targets`` and ``doctor`` to ``app``, each wrapped by ``wrap`` (one-line errors)."""
    app.command("targets")(wrap(targets))
    app.command("doctor")(wrap(doctor))
