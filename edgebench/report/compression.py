"""The report section that puts filter pruning, unstructured sparsity and low rank side by side.

Per target context and precision it picks, for each kind of variant, the smallest (ZIP-compressed) and the
fastest variant whose accuracy is within :data:`EQUAL_ACCURACY_POINTS` of the unpruned baseline measured in
the same context, and shows size, non-zero parameters, MACs (executed and of non-zero weights) and measured
latency. Then what sparsity does and does not buy on each target, from the measurements: the latency ratio of
the sparse variants to the dense baseline, their size on disk and compressed, whether LiteRT's XNNPACK sparse
kernels could engage (and why not), and the hls4ml multiplier counts next to the dense baseline's.
"""

from __future__ import annotations

import math

import pandas as pd

from edgebench.report.page import esc, table_html
from edgebench.report.tables import context_titles, fmt_cell

#: "equal accuracy": at most this many percentage points below the baseline of the same context
EQUAL_ACCURACY_POINTS = 1.0
KINDS = ("structured", "sparse", "lowrank")
_KIND_NAMES = {"baseline": "baseline", "structured": "filter pruning", "sparse": "unstructured sparsity",
               "lowrank": "low rank"}


def _groups(ok: pd.DataFrame) -> list[tuple[str, pd.DataFrame, pd.Series]]:
    """(title, rows, baseline row) per target context and precision that has a measured baseline."""
    titles = context_titles(ok) + " · " + ok["precision"].astype(str)
    out = []
    for title in sorted(set(titles)):
        part = ok[titles == title]
        base = part[part["kind"] == "baseline"]
        if not base.empty and part["kind"].isin(KINDS).any():
            out.append((title, part, base.iloc[0]))
    return out


def _span(values: pd.Series, fmt: str) -> str:
    """``lo–hi`` in ``fmt`` (one value when they agree)."""
    lo, hi = format(float(values.min()), fmt), format(float(values.max()), fmt)
    return lo if lo == hi else f"{lo}–{hi}"


def _ratio(value: object, ref: object) -> str:
    """``value / ref`` as ``1.23x``; a dash where either is missing (None, NaN) or ``ref`` is zero."""
    try:
        ratio = float(value) / float(ref)
    except (TypeError, ValueError, ZeroDivisionError):
        return "—"
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "—"


def _accuracy(r: pd.Series, base: pd.Series) -> str:
    """``0.9750 (-0.3)``: the accuracy and its change in points from the baseline's; dashes where one is missing."""
    if pd.isna(r["accuracy"]):
        return "—"
    change = "" if pd.isna(base["accuracy"]) else f" ({100 * (r['accuracy'] - base['accuracy']):+.1f})"
    return f"{r['accuracy']:.4f}{change}"


def _scaled(value: object, scale: float) -> str:
    """A table cell of ``value * scale``; a missing value (no artifact size, no MAC count) shows as a dash."""
    return fmt_cell(float(value) * scale if pd.notna(value) else None)  # type: ignore[arg-type]


def _row(kind: str, why: str, r: pd.Series, base: pd.Series) -> str:
    cells = [
        esc(_KIND_NAMES[kind]), esc(why), esc(r["label"]),
        _accuracy(r, base),
        fmt_cell(r["nonzero_params"]), _scaled(r["size_bytes"], 1 / 1024), _scaled(r["compressed_size_bytes"], 1 / 1024),
        _scaled(r["macs"], 1e-6), _scaled(r["nonzero_macs"], 1e-6),
        fmt_cell(r["p50_ms"]), _ratio(base["p50_ms"], r["p50_ms"]),
    ]
    return "<tr>" + "".join(f"<td class=l>{c}</td>" if i < 3 else f"<td>{esc(c)}</td>" for i, c in enumerate(cells)) + "</tr>"


def equal_accuracy_table(part: pd.DataFrame, base: pd.Series) -> str:
    """Baseline, then per kind its smallest and fastest variant within the accuracy tolerance."""
    rows = [_row("baseline", "reference", base, base)]
    floor = base["accuracy"] - EQUAL_ACCURACY_POINTS / 100
    for kind in KINDS:
        of_kind = part[part["kind"] == kind]
        if of_kind.empty:
            continue
        fit = of_kind[of_kind["accuracy"] >= floor - 1e-12]
        if fit.empty:
            best = of_kind.sort_values("accuracy", ascending=False).iloc[0]
            rows.append(f"<tr><td class=l>{esc(_KIND_NAMES[kind])}</td><td class=l colspan=10>none within "
                        f"{EQUAL_ACCURACY_POINTS:g} point of the baseline (most accurate: {esc(best['label'])}, "
                        f"{fmt_cell(best['accuracy'])})</td></tr>")
            continue
        size_col = "compressed_size_bytes" if fit["compressed_size_bytes"].notna().any() else "size_bytes"
        smallest = fit.sort_values([size_col, "p50_ms"]).iloc[0]
        fastest = fit.sort_values(["p50_ms", size_col]).iloc[0]
        rows.append(_row(kind, "smallest", smallest, base))
        if fastest["variant_id"] != smallest["variant_id"]:
            rows.append(_row(kind, "fastest", fastest, base))
    headers = ["kind", "pick", "variant", "accuracy (Δ points)", "non-zero params", "size KiB", "zip KiB", "MACs (M)",
               "nz MACs (M)", "p50 ms", "speedup"]
    return table_html(headers, rows, left=3)


def sparsity_summary(part: pd.DataFrame, base: pd.Series) -> str:
    """What the sparse variants of one context bought: latency, size, compressed size, from the measurements."""
    sparse = part[part["kind"] == "sparse"].dropna(subset=["p50_ms"])
    if sparse.empty:
        return ""
    speed = base["p50_ms"] / sparse["p50_ms"]
    size = sparse["size_bytes"] / base["size_bytes"]
    text = (f"Sparse variants measured here: {len(sparse)} ({_span(sparse['sparsity'], '.0%')} of the weights zero). "
            f"p50 speedup over the dense baseline {_span(speed, '.2f')}x")
    if base["backend"] == "hls4ml":
        text += " (C-simulation time on the host, not FPGA latency; the firmware's multipliers are counted below)"
    else:
        text += (f", executing {_span(sparse['macs'] / base['macs'], '.2f')}x the baseline's MACs (dense kernels "
                 "multiply every stored zero)")
    text += f"; size on disk {_span(size, '.2f')}x the baseline's"
    if sparse["compressed_size_bytes"].notna().any() and pd.notna(base["compressed_size_bytes"]):
        packed = sparse["compressed_size_bytes"] / base["compressed_size_bytes"]
        text += f", compressed (ZIP) {_span(packed, '.2f')}x"
    return f"<p>{esc(text)}.</p>" + _xnnpack_note(sparse) + _multiplier_table(part, base)


def _xnnpack_note(sparse: pd.DataFrame) -> str:
    checks = [(r["label"], d["xnnpack_sparse_inference"]) for _, r in sparse.iterrows()
              if isinstance(d := r["details"], dict) and "xnnpack_sparse_inference" in d]
    if not checks:
        return ""
    candidates = [label for label, c in checks if c.get("candidate")]
    if candidates:
        layers = {label: [p["name"] for p in c["pointwise_convs"]] for label, c in checks if c.get("candidate")}
        return f"<p>XNNPACK sparse inference: candidates {esc(layers)} (unchecked: {esc(checks[0][1]['unchecked'])}).</p>"
    unmet = sorted({reason for _, c in checks for reason in c.get("unmet", [])})
    return ("<p>XNNPACK sparse inference: no measured variant qualifies, so LiteRT ran dense kernels: "
            f"{esc('; '.join(unmet))}.</p>")


def _multiplier_table(part: pd.DataFrame, base: pd.Series) -> str:
    def counts(r: pd.Series) -> dict | None:
        d = r["details"] if isinstance(r["details"], dict) else {}
        return (d.get("hls4ml") or {}).get("multipliers")

    base_counts = counts(base)
    rows = []
    for _, r in part[part["kind"].isin(("baseline", *KINDS))].iterrows():
        c = counts(r)
        if c is None or base_counts is None:
            continue
        rows.append(f"<tr><td class=l>{esc(r['label'])}</td><td>{c['multipliers']:,}</td><td>{c['dense_multipliers']:,}"
                    f"</td><td>{esc(_ratio(c['multipliers'], base_counts['dense_multipliers']))}</td></tr>")
    if not rows:
        return ""
    note = f"<p class=muted>hls4ml multipliers, {esc(base_counts['method'])}.</p>"
    return note + table_html(["variant", "multipliers (counted)", "if dense", "vs dense baseline"], rows, left=1)


def compression_section(ok: pd.DataFrame) -> str | None:
    """The comparison section, or None when the run has no structured/sparse/low-rank variant with a baseline."""
    if "kind" not in ok.columns:
        return None
    parts = []
    for title, part, base in _groups(ok):
        parts.append(f"<h3>{esc(title)}</h3>" + equal_accuracy_table(part, base) + sparsity_summary(part, base))
    if not parts:
        return None
    intro = (f"<p class=muted>Equal accuracy: at most {EQUAL_ACCURACY_POINTS:g} percentage point below the baseline "
             "in the same context. Size is the artifact on disk; zip is the same artifact ZIP-compressed (DEFLATE 9), "
             "which the archive module reads back byte-identical. MACs are what dense kernels execute; nz MACs "
             "count only non-zero weights (what a sparse kernel, or hls4ml at reuse factor 1, computes).</p>")
    return intro + "".join(parts)
