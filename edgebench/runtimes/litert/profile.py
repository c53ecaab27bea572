"""LiteRT per-layer profile: not available from Python.

ai-edge-litert's Python ``Interpreter`` can force delegate node profiling
(``experimental_force_delegate_node_profiling``) but exposes no way to attach a profiler or read
per-operator times; LiteRT's per-op figures come from the separate ``benchmark_model`` binary
(``--enable_op_profiling=true``), which is not part of the Python packages.
"""

from __future__ import annotations

from edgebench.profile.table import LayerProfile, not_available

REASON = ("ai-edge-litert's Python Interpreter exposes no per-operator profiler; LiteRT's op profile comes from "
          "the benchmark_model binary (--enable_op_profiling=true), which the Python packages do not ship")


def profile_litert() -> LayerProfile:
    """The LiteRT record: not available, and why."""
    return not_available("litert", REASON)
