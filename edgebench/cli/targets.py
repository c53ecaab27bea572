"""CLI commands ``edgebench targets`` and ``edgebench doctor`` (registered on the main Typer app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgebench.cli.common import PluginFiles, console, print_line, use_plugins
from edgebench.doctor import Plugin, TargetStatus, components, kind, registered_plugins, target_statuses
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
                   "fix them, load the plug-ins they name with --plugins, or remove them (the reason of each is "
                   "listed above)")
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
            escape(status.reason or _limits(status)),
        )
    console.print(table)
    _fail_if_broken(statuses)


def _limits(status: TargetStatus) -> str:
    """What an available target cannot do here: backends not run, energy not read."""
    return "; ".join([*([f"not run here: {status.partial}"] if status.partial else []),
                      *([f"no energy here: {status.no_energy} (the rest is measured)"] if status.no_energy else [])])


def doctor(targets_dir: TargetsDir = None, plugins: PluginFiles = None) -> None:
    """Print what is installed, the backends and plug-ins, what each target needs and what is missing (with the
    install command); exit 2 when a target file or an installed plug-in's entry point is broken."""
    use_plugins(plugins)
    targets_dirs(targets_dir)  # a wrong --targets-dir fails before the tables
    registered, broken = registered_plugins()  # first: a lookup would raise at the first broken entry point
    found = components()
    table = Table(title="packages and tools")
    for column in ("component", "kind", "for", "found", "install"):
        table.add_column(column, overflow="fold")
    for f in found:
        c = f.component
        table.add_row(c.name, kind(c), c.purpose, f"[green]{f.found}[/]" if f.present else "[red]missing[/]",
                      "" if f.present else escape(c.install_hint))
    console.print(table)
    _print_plugins(registered, broken)

    hints = {f.component.name: f.component.install_hint for f in found}
    needs = Table(title="targets: needs and missing")
    for column in ("target", "needs", "missing", "status"):
        needs.add_column(column, overflow="fold")
    statuses = target_statuses(targets_dir)
    for status in statuses:
        missing = "; ".join(f"{m} ({hints.get(m, '')})" for m in status.missing) or "-"
        said = status.reason or _limits(status)
        state = _state(status) + escape(f": {said}" if said else "")  # the style stays markup
        needs.add_row(status.name, ", ".join(status.needs) or "-", escape(missing), state)
    console.print(needs)
    for error in broken:
        print_line("error:", "bold red", error)
    _fail_if_broken(statuses)
    if broken:
        raise typer.Exit(ExitCode.BAD_INPUT)


def _print_plugins(registered: list[Plugin], broken: list[str]) -> None:
    """Every backend (the names ``bench --backend`` and target files take) and every plug-in, with where each
    comes from."""
    from edgebench.runtimes.base import BACKENDS

    origins = {p.name: p.origin for p in registered if p.kind == BACKENDS.kind}
    backends = Table(title="backends")
    for column in ("backend", "formats", "from"):
        backends.add_column(column, overflow="fold")
    for name in BACKENDS.names():
        backends.add_row(name, ", ".join(BACKENDS.get(name).formats), escape(origins.get(name, "edgebench")))
    console.print(backends)
    if not registered:
        print_line("plug-ins:", "bold", "none (installed entry points, plugins: files and --plugins files register them)"
                   + (f"; {len(broken)} entry point(s) failed to load, listed below" if broken else ""))
        return
    table = Table(title="plug-ins")
    for column in ("kind", "name", "from"):
        table.add_column(column, overflow="fold")
    for plugin in registered:
        table.add_row(plugin.kind, plugin.name, escape(plugin.origin))
    console.print(table)


def register(app: typer.Typer, wrap: Any) -> None:
    """Add ``targets`` and ``doctor`` to ``app``, each wrapped by ``wrap`` (one-line errors)."""
    app.command("targets")(wrap(targets))
    app.command("doctor")(wrap(doctor))
