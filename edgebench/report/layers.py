"""The per-layer section of the report: where the time goes on each target, baseline next to a pruned variant.

For each (target, backend) with stored profiles: every layer's time share against its MACs share for
the baseline and for one pruned variant of the same precision (the one closest to half of the filters
removed), and the layers whose removed MACs did not become removed time (layout reorders, fixed
per-operator cost, kernels that do not scale down with channels).
"""

from __future__ import annotations

import pandas as pd

from edgebench.profile.table import LayerProfile, macs_time_gaps
from edgebench.report.page import esc, table_html


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _pair(group: pd.DataFrame, profiles: dict[int, LayerProfile]) -> tuple[pd.Series, pd.Series] | None:
    """The baseline measurement and the pruned one to show beside it, both with a usable profile."""
    usable = group[group["id"].map(lambda i: i in profiles and profiles[i].status == "ok")]
    base = usable[usable["criterion"].isna()]
    if base.empty:
        return None
    base_row = base.sort_values("precision", key=lambda p: p != "fp32").iloc[0]
    pruned = usable[usable["criterion"].notna() & (usable["precision"] == base_row["precision"])]
    if pruned.empty:
        return None
    pruned_row = pruned.loc[(pruned["ratio"] - 0.5).abs().sort_values(kind="stable").index[0]]
    return base_row, pruned_row


def _side_by_side(base: LayerProfile, pruned: LayerProfile) -> str:
    other = {r.layer: r for r in pruned.rows}
    rows = []
    for r in base.rows:
        p = other.get(r.layer)
        macs_kept = f"{p.macs / r.macs:.0%}" if p and r.macs else "—"
        time_kept = f"{p.time_ms / r.time_ms:.0%}" if p and r.time_ms else "—"
        rows.append(
            f"<tr><td class=l>{esc(r.layer)}</td><td class=l>{esc(r.op)}</td><td>{_pct(r.time_share)}</td>"
            f"<td>{_pct(r.macs_share)}</td><td>{_pct(p.time_share if p else None)}</td>"
            f"<td>{_pct(p.macs_share if p else None)}</td><td>{macs_kept}</td><td>{time_kept}</td></tr>"
        )
    headers = ["layer", "op", "baseline time share", "baseline MACs share", "pruned time share",
               "pruned MACs share", "MACs kept", "time kept"]
    return table_html(headers, rows, left=2, sortable=True)


def _gaps(base: LayerProfile, pruned: LayerProfile) -> str:
    gaps = macs_time_gaps(base, pruned)
    if not gaps:
        return "<p>Every layer that lost at least 20 % of its MACs lost at least half as much time.</p>"
    rows = [f"<tr><td class=l>{esc(g.layer)}</td><td>{g.macs_kept:.0%}</td><td>{g.time_kept:.0%}</td>"
            f"<td>{g.base_ms:.4f}</td><td>{g.pruned_ms:.4f}</td></tr>" for g in gaps]
    return ("<p class=muted>Layers whose MACs were cut by at least 20 % but whose time fell by less than half "
            "that much.</p>" + table_html(["layer", "MACs kept", "time kept", "baseline ms", "pruned ms"], rows, 1))


def layer_profile_section(ok: pd.DataFrame, profiles: dict[int, LayerProfile]) -> str | None:
    """HTML for every (target, backend) with profiles; None when the run recorded none."""
    if not profiles:
        return None
    parts = []
    for (target, backend), group in ok.groupby(["target", "backend"], sort=True):
        recorded = [profiles[i] for i in group["id"] if i in profiles]
        if not recorded:
            continue
        parts.append(f"<h3>{esc(target)} — {esc(backend)}</h3>")
        unavailable = next((p for p in recorded if p.status != "ok"), None)
        pair = _pair(group, profiles)
        if pair is None:
            reason = unavailable.reason if unavailable else "no baseline and pruned variant of one precision profiled"
            parts.append(f"<p>Per-layer profile not available: {esc(reason)}</p>")
            continue
        base_row, pruned_row = pair
        base, pruned = profiles[base_row["id"]], profiles[pruned_row["id"]]
        shares = [f"{esc(label)}: {esc(p.p50_share_text(row['p50_ms']))}"  # or why none: not a bare dash
                  for label, p, row in (("baseline", base, base_row), (pruned_row["label"], pruned, pruned_row))]
        parts.append(f"<p>{esc(base_row['label'])} vs {esc(pruned_row['label'])}. Not conv/gemm kernel time: "
                     + "; ".join(shares) + "</p>")
        parts.append(_side_by_side(base, pruned))
        parts.append(_gaps(base, pruned))
    return "".join(parts) or None
