"""Latency-aware allocation (NetAdapt-style): per-layer latency tables measured on a target (``table.py``), the
width search on them (``search.py``) and the registered ``latency`` allocation with its budget (``budget.py``)."""
