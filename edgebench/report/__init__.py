"""Offline HTML reports: Pareto fronts, budget tables, speedup plots and run history."""

from edgebench.report.html import render_report
from edgebench.report.pareto import pareto_mask

__all__ = ["pareto_mask", "render_report"]
