"""The compare page shows each compared value in the unit the run report uses, with that unit."""

from __future__ import annotations

from edgebench.report.compare_page import _value


def test_compare_values_are_in_the_reports_units() -> None:
    assert _value(40000.000001, "size") == "39.1 KiB (40,000 B)"
    assert _value(5.000000000000001e-4, "energy") == "0.5 mJ"
    assert _value(130.0, "memory") == "130 MiB" and _value(0.25, "latency") == "0.25 ms"
    assert _value(0.95, "accuracy") == "0.95" and _value(None, "size") == "—"
