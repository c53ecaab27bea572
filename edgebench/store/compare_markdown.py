"""Markdown rendering of a :class:`Comparison`, sized for a pull-request comment.

Regressions and improvements come first as a table; every compared result is
in a collapsed ``<details>`` block so the comment stays short. The summary line
says what the verdicts rest on (runs, earlier runs, interleaved rounds or the
noise allowance), so a reader can judge them.
"""

from __future__ import annotations

from edgebench.store.compare import Comparison, MetricChange, shown_name, worth_a_row

_ICON = {"regression": "🔴", "lost": "🟠", "improvement": "🟢", "unchanged": "⚪", "undecided": "🟡", "n/a": "·"}
#: confidences are never printed as certainty: run-level tests on a few runs cannot give it
_MAX_SHOWN_CONFIDENCE = 0.999
#: interval bounds beyond this many percent are shown as ">+1000": a t on 1 df put one at +5.1e40 %, a number
#: that says only "unbounded"
_MAX_SHOWN_BOUND = 1000.0


def fmt_change(c: MetricChange) -> str:
    """``+12.3% [+10.1, +14.0]`` (accuracy in pp), or an em dash when not comparable."""
    if c.change is None:
        return "—"
    unit = " pp" if c.metric == "accuracy" else "%"
    text = f"{c.change:+.1f}{unit}"
    if c.ci_low is not None and c.ci_high is not None and c.ci_low != c.ci_high:
        text += f" [{_bound(c.ci_low)}, {_bound(c.ci_high)}]"
    return text


def _bound(value: float) -> str:
    """An interval bound as ``+12.3``, or ``>+1000`` / ``<-1000`` past :data:`_MAX_SHOWN_BOUND`."""
    if abs(value) > _MAX_SHOWN_BOUND:
        return f"{'>+' if value > 0 else '<-'}{_MAX_SHOWN_BOUND:g}"
    return f"{value:+.1f}"


def fmt_confidence(c: MetricChange) -> str:
    """Confidence of the run-level test, "unknown" where the run-to-run spread is, or a dash where no test applies."""
    if c.confidence is None:
        return "unknown" if c.basis == "allowance" else "—"
    if c.confidence > _MAX_SHOWN_CONFIDENCE:
        return f">{100 * _MAX_SHOWN_CONFIDENCE:.1f}%"
    return f"{100 * c.confidence:.1f}%"


def fmt_evidence(c: MetricChange) -> str:
    """What the verdict rests on, in a few words."""
    if c.basis == "rounds":
        return f"{c.runs[0]} rounds"
    if c.basis in ("runs", "lookback"):
        return f"{c.runs[0]}+{c.runs[1]} runs, spread {c.noise_pct:.1f}%" if c.noise_pct is not None else "runs"
    if c.basis == "allowance":
        return f"{c.runs[0]}+{c.runs[1]} runs, allowance"
    return c.basis


def _row(label: str, context: str, c: MetricChange) -> str:
    return (
        f"| {_ICON[c.verdict]} {c.verdict} | {label} | {context} | {shown_name(c)} | {fmt_change(c)} | "
        f"{fmt_confidence(c)} | {fmt_evidence(c)} | {c.min_effect:g}{' pp' if c.metric == 'accuracy' else '%'} | "
        f"{c.note} |"
    )


_HEADER = (
    "| verdict | variant | target | metric | change [CI] | confidence | evidence | min effect | note |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _verdict(regressed: int, compared: int) -> str:
    """The heading's verdict: nothing compared is not "no regression" (the gate fails it)."""
    if regressed:
        return f"🔴 {regressed} regressed"
    return "✅ no regression" if compared else "⚠ nothing compared"


#: what a pull-request comment holds (GitHub refuses a longer body: 65,536 characters), less room for a note
COMMENT_CHARS = 65_000


def fit_comment(text: str, limit: int = COMMENT_CHARS) -> str:
    """``text`` cut at a line to fit a pull-request comment, saying what was left out and where the whole is (a
    sweep's comparison of 372 results was 1,078,342 characters, which the CI example would have failed to post).
    The gate's section comes first, so its verdict and findings stay."""
    if len(text) <= limit:
        return text
    note_room = 400
    kept = text[: limit - note_room].rsplit("\n", 1)[0]
    left = text[len(kept) + 1:].count("\n")  # after the kept lines' last line break
    closing = "\n</details>" if kept.count("<details>") > kept.count("</details>") else ""
    return (f"{kept}{closing}\n\n**{left} more lines left out** to fit a pull-request comment ({limit:,} "
            "characters): the whole comparison is `edgebench compare` with `--format json`, or the compare page with "
            "`--format html`.\n")


def to_markdown(cmp: Comparison) -> str:
    """The comparison as Markdown: summary, context warnings, notable changes, then all details."""
    n_reg = len(cmp.regressions)
    lines = [
        f"### edgebench compare: {_verdict(n_reg, len(cmp.results))}",
        f"baseline `{cmp.baseline_run}` → candidate `{cmp.candidate_run}`; {len(cmp.results)} results compared.",
        "",
        f"How: {cmp.method}.",
        "",
        f"Read: *change [CI]* is the candidate against the baseline with its {100 * (1 - cmp.alpha):g}% interval "
        f"(alpha {cmp.alpha:g}); *confidence* is 1 - p of that test (\"unknown\" where the run-to-run spread is, and "
        "the noise allowance decides).",
    ]
    if cmp.speed_note:
        lines += ["", f"Machine speed: {cmp.speed_note}."]
    notes = cmp.warnings + [w for r in cmp.results for w in r.warnings]
    if notes or cmp.unmatched:
        lines.append("\n**⚠ Context differences (results may not be comparable):**")
        lines += [f"- {w}" for w in dict.fromkeys(notes)]
        lines += [f"- {u}" for u in cmp.unmatched]
    order = ("regression", "lost", "undecided", "improvement")
    notable = [(r, c) for r in cmp.results for c in r.changes if c.verdict in order]
    notable.sort(key=lambda rc: order.index(rc[1].verdict))
    if notable:
        lines += ["", _HEADER] + [_row(r.label, r.context, c) for r, c in notable]
    lines += ["", "<details><summary>All compared results</summary>", "", _HEADER]
    lines += [_row(r.label, r.context, c) for r in cmp.results for c in r.changes if worth_a_row(c)]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
