"""edgebench's command line (Typer + rich). Library code logs; only this package prints.

Commands live beside what they drive: ``run.py`` (run, variants, bench), ``store.py`` (report, compare,
history, tag, runs, export, import), ``targets.py`` (targets, doctor), ``profile.py`` (profile);
``common.py`` has the shared console and the one-line error wrapper.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from edgebench.cli import profile, run, store, targets
from edgebench.cli.common import friendly_errors

app = typer.Typer(
    help="Benchmark pruned and quantized CNN variants on real deployment runtimes.\n\n"
    "Exit codes: 0 ok; 1 `compare` found a regression; 2 bad input (a file, field, option or path, named in "
    "one line; nothing stored is changed); 3 nothing could run (every job of `run` or `bench` was \"not run\": "
    "no target available, no export for any precision); 4 every job of `run` failed (nothing measured; the "
    "errors are printed and stored); 130 interrupted (finished jobs are kept).",
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


for _module in (run, store, targets, profile):
    _module.register(app, friendly_errors)
