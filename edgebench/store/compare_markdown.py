"""Markdown rendering of a :class:`Comparison`, sized for a pull-request comment.

Regressions and improvements come first as a table; every compared result is
in a collapsed ``<details>`` block so the comment stays short.
"""

from __future__ import annotations

from edgebench.store.compare import Comparison, MetricChange

_ICON = {"regression": "🔴", "improvement": "🟢", "unchanged": "⚪", "n/a": "·"}


def fmt_change(c: MetricChange) -> str:
    """``+12.3% [+10.1, +14.0]`` (accuracy in pp), or an em dash when not comparable."""
    if c.change is None:
        return "—"
    unit = " pp" if c.metric == "accuracy" else "%"
    text = f"{c.change:+.1f}{unit}"
    if c.ci_low is not None and c.ci_high is not None and c.ci_low != c.ci_high:
        text += f" [{c.ci_low:+.1f}, {c.ci_high:+.1f}]"
    return text


def fmt_confidence(c: MetricChange) -> str:
    """Confidence of the test as a percentage, or the method when no test applies."""
    return "—" if c.confidence is None else f"{100 * c.confidence:.1f}%"


def _row(label: str, context: str, c: MetricChange) -> str:
    return (
        f"| {_ICON[c.verdict]} {c.verdict} | {label} | {context} | {c.metric} | {fmt_change(c)} | "
        f"{fmt_confidence(c)} | {c.min_effect:g}{' pp' if c.metric == 'accuracy' else '%'} | {c.note} |"
    )


_HEADER = (
    "| verdict | variant | target | metric | change [CI] | confidence | min effect | note |\n"
    "|---|---|---|---|---|---|---|---|"
)


def to_markdown(cmp: Comparison) -> str:
    """The comparison as Markdown: summary, context warnings, notable changes, then all details."""
    n_reg = len(cmp.regressions)
    lines = [
        f"### edgebench compare: {'🔴 ' + str(n_reg) + ' regressed' if n_reg else '✅ no regression'}",
        f"baseline `{cmp.baseline_run}` → candidate `{cmp.candidate_run}`; {len(cmp.results)} results compared "
        f"(latency: Mann-Whitney U, α={cmp.alpha:g}, with a minimum effect per metric).",
    ]
    notes = cmp.warnings + [w for r in cmp.results for w in r.warnings]
    if notes or cmp.unmatched:
        lines.append("\n**⚠ Context differences (results may not be comparable):**")
        lines += [f"- {w}" for w in dict.fromkeys(notes)]
        lines += [f"- {u}" for u in cmp.unmatched]
    notable = [(r, c) for r in cmp.results for c in r.changes if c.verdict in ("regression", "improvement")]
    notable.sort(key=lambda rc: rc[1].verdict != "regression")
    if notable:
        lines += ["", _HEADER] + [_row(r.label, r.context, c) for r, c in notable]
    lines += ["", "<details><summary>All compared results</summary>", "", _HEADER]
    lines += [_row(r.label, r.context, c) for r in cmp.results for c in r.changes if c.verdict != "n/a"]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
