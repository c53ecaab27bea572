"""What every CLI module shares: one console (one width rule) and the one-line error wrapper."""

from __future__ import annotations

import errno
import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from edgebench.errors import EdgebenchError, ExitCode, one_line

#: plug-in files for commands that take no experiment (an experiment lists them under ``plugins:``)
PluginFiles = Annotated[list[Path] | None, typer.Option(
    "--plugins", help="a Python file that registers backends, energy meters... (as an experiment's plugins:); "
    "repeatable")]


def finite(**options: float | None) -> None:
    """ConfigError naming a float option that is not a number: click's ranges let nan through (every comparison
    with it is false) and inf past a lower bound; a timed window of inf seconds failed every re-measured round, and
    the gate passed."""
    from edgebench.errors import ConfigError

    for name, value in options.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"--{name.replace('_', '-')} {value}: not a finite number; give a number")


def use_plugins(files: list[Path] | None) -> None:
    """Import ``--plugins`` files here and in every worker started from now on; ConfigError naming a bad one."""
    from edgebench.errors import ConfigError
    from edgebench.plugins import PluginError, use_plugin_files

    try:
        use_plugin_files(files or [])
    except PluginError as exc:
        raise ConfigError(f"--plugins: {exc}") from None

# logs and CI capture are not terminals; rich would wrap tables at 80 columns there, so 160 unless COLUMNS says
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)
F = TypeVar("F", bound=Callable[..., Any])


def print_line(label: str, style: str, text: object) -> None:
    """``label`` in ``style`` and ``text`` (not read as markup) as one line rich does not wrap."""
    console.print(Text.assemble((label, style), " ", one_line(text)), soft_wrap=True, highlight=False)


#: errors of writing to a path that is full or may not be written, where the path is the whole story
_UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def friendly_errors(fn: F) -> F:
    """Print EdgebenchError as one red line (no traceback) and exit with its code (bad input, nothing ran);
    Ctrl-C exits with ExitCode.INTERRUPTED."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EdgebenchError as exc:
            print_line("error:", "bold red", exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # click would print "Aborted!" and exit 1, the code of a found regression
            print_line("interrupted", "yellow", "")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except OSError as exc:  # a full or read-only disk met while writing: the path, not a traceback
            if exc.errno == errno.ENAMETOOLONG:  # a path in a file or option no file system takes, met wherever read
                name = str(exc.filename or "a path")
                shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]} ({len(name)} characters)"
                print_line("error:", "bold red", f"{shown}: {exc.strerror} (a part of it is longer than the file "
                           "system's 255 bytes); check the paths in the experiment, target file and options")
                raise typer.Exit(ExitCode.BAD_INPUT) from None
            if exc.errno not in _UNWRITABLE:
                raise
            print_line("error:", "bold red", f"cannot write {exc.filename or 'a file'}: {exc.strerror}; free some space "
                       "or choose another path (run.workdir, report.dir, --out)")
            raise typer.Exit(ExitCode.BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]
