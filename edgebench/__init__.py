"""edgebench: measure pruned and quantized CNN variants on real deployment runtimes.

The Python API (``edgebench/api.py``): ``edgebench.run(experiment) -> Results``, ``edgebench.load(store, run)``,
``Results.measurements()`` / ``.pareto(x, y)`` / ``.report(dir)``. They are imported on first use, so that
``import edgebench`` stays cheap for the measurement workers that import the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgebench.api import Results, load, run

__version__ = "0.1.0"
__all__ = ["Results", "__version__", "load", "run"]


def __getattr__(name: str) -> Any:
    if name in ("Results", "load", "run"):
        # by name, on first use: every module's ``from edgebench import x`` reads this package, which must not
        # depend on the API at the top of the stack (scripts/import_map.py would see a cycle, and it would be one)
        return getattr(importlib.import_module("edgebench.api"), name)
    raise AttributeError(f"module 'edgebench' has no attribute {name!r}")
