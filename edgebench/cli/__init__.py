"""edgebench's command line (Typer + rich). Library code logs; only this package prints.

Commands live beside what they drive: ``run.py`` (run, variants, bench), ``store.py`` (report, compare,
history, tag, runs, delete, export, import), ``targets.py`` (targets, doctor), ``profile.py`` (profile);
``common.py`` has the shared console and the one-line error wrapper.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
from typing import Annotated

import typer

from edgebench.cli import profile, run, store, targets
from edgebench.cli.common import friendly_errors
from edgebench.errors import exit_codes_help

app = typer.Typer(
    help="Benchmark pruned and quantized CNN variants on real deployment runtimes.\n\n" + exit_codes_help(),
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    _keep_workers_off_the_console_script()


def _keep_workers_off_the_console_script() -> None:
    """A spawned worker imports the driver's main module before its task; the ``edgebench`` console script's holds
    only ``app``, whose imports (typer, pandas, scipy: 2 s) every worker then carried, measurement workers in
    their peak RSS too (ONNX Runtime's in the default run: 160 MiB with them, 108 without). multiprocessing does
    not import a main module named ``<package>.__main__`` again (as for ``python -m``), so the script is given
    that name; a user's own script is left as it is."""
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "app", None) is app and getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec("edgebench.__main__", None)


for _module in (run, store, targets, profile):
    _module.register(app, friendly_errors)
