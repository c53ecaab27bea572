"""CLI commands ``edgebench targets`` and ``edgebench doctor`` (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgebench.cli.common import console
from edgebench.doctor import components, kind, target_statuses
from edgebench.targets import targets_dirs

TargetsDir = Annotated[Path | None, typer.Option("--targets-dir", help="extra directory of target YAML files")]


def _energy_label(meter: dict | None) -> str:
    return "-" if not meter else str(meter.get("type", "?"))


def targets(targets_dir: TargetsDir = None) -> None:
    """List every target with available / unavailable and the reason."""
    table = Table(title="edgebench targets", show_lines=False)
    for column in ("target", "kind", "backends", "energy", "status", "reason"):
        table.add_column(column, overflow="fold")
    for status in target_statuses(targets_dir):
        spec = status.spec
        state = "[green]available[/]" if status.available else "[red]unavailable[/]"
        table.add_row(
            status.name,
            spec.kind if spec else "?",
            ", ".join(spec.backends) if spec else "?",
            _energy_label(spec.energy) if spec else "?",
            state,
            status.reason or "",
        )
    console.print(table)


def doctor(targets_dir: TargetsDir = None) -> None:
    """Print what is installed, what each target needs and what is missing (with the install command)."""
    targets_dirs(targets_dir)  # a wrong --targets-dir fails before the tables
    found = components()
    table = Table(title="packages and tools")
    for column in ("component", "kind", "for", "found", "install"):
        table.add_column(column, overflow="fold")
    for f in found:
        c = f.component
        table.add_row(c.name, kind(c), c.purpose, f"[green]{f.found}[/]" if f.present else "[red]missing[/]",
                      "" if f.present else c.install_hint)
    console.print(table)

    hints = {f.component.name: f.component.install_hint for f in found}
    needs = Table(title="targets: needs and missing")
    for column in ("target", "needs", "missing", "status"):
        needs.add_column(column, overflow="fold")
    for status in target_statuses(targets_dir):
        missing = "; ".join(f"{m} ({hints.get(m, '')})" for m in status.missing) or "-"
        state = "[green]available[/]" if status.available else f"[red]unavailable[/]: {status.reason}"
        needs.add_row(status.name, ", ".join(status.needs) or "-", missing, state)
    console.print(needs)


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``targets`` and ``doctor`` to ``app``, each wrapped by ``wrap`` (one-line errors)."""
    app.command("targets")(wrap(targets))
    app.command("doctor")(wrap(doctor))
