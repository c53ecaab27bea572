"""The FPGA section of the report: hls4ml projects with their synthesis figures or why there are none."""

from __future__ import annotations

from typing import Any

import pandas as pd

from edgebench.report.page import esc, table_html

_RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K")


def _resource_cell(synthesis: dict[str, Any], name: str) -> str:
    used = synthesis.get("resources", {}).get(name)
    if used is None:
        return "—"
    pct = synthesis.get("utilisation_pct", {}).get(name)
    return f"{used:,}" + (f" ({pct:.1f}%)" if pct is not None else "")


def fpga_section(ok: pd.DataFrame) -> str | None:
    """Table of hls4ml measurements; None when the run has none.

    Accuracy is the fixed-point C simulation's own; cycle latency and resources come only from a
    synthesis report, never from an estimate.
    """
    if "details" not in ok.columns:
        return None
    rows = []
    for _, r in ok.iterrows():
        details = r["details"] if isinstance(r["details"], dict) else {}
        if "synthesis" not in details:
            continue
        hls, syn = details.get("hls4ml", {}), details["synthesis"]
        if syn.get("status") == "synthesised":
            latency = f"{syn.get('latency_cycles_worst')} cycles / {syn.get('latency_ns_worst', 0) / 1e3:.2f} µs"
            interval = str(syn.get("interval_max"))
            resources = [_resource_cell(syn, name) for name in _RESOURCES]
        else:
            latency = f"not synthesised: {syn.get('reason', 'no report')}"
            interval, resources = "—", ["—"] * len(_RESOURCES)
        rows.append(
            f"<tr><td class=l>{esc(r['label'])}</td><td class=l>{esc(r['target'])}</td>"
            f"<td class=l>{esc(hls.get('part', ''))}</td><td class=l>{esc(hls.get('precision', ''))}</td>"
            f"<td>{esc(hls.get('reuse_factor', ''))}</td><td class=l>{esc(hls.get('io_type', ''))}</td>"
            f"<td>{r['accuracy']:.4f}</td><td class=l>{esc(_overflow_cell(hls))}</td>"
            f"<td class=l>{esc(latency)}</td><td>{esc(interval)}</td>"
            + "".join(f"<td>{esc(c)}</td>" for c in resources) + "</tr>"
        )
    if not rows:
        return None
    header = ["variant", "target", "part", "precision", "reuse", "io", "C-sim accuracy", "overflow", "latency", "II",
              *_RESOURCES]
    return table_html(header, rows, left=6)


def _overflow_cell(hls: dict) -> str:
    """The tensors the calibration images drove out of the fixed-point range (the C simulation's outputs there wrap
    around or saturate), or "none"."""
    overflow = hls.get("overflow") or []
    if not overflow:
        return "none"
    return f"{len(overflow)} tensors: " + "; ".join(overflow[:3]) + ("; ..." if len(overflow) > 3 else "")
