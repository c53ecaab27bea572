"""The report's quantization panel: accuracy vs bits per target, QAT vs PTQ at the same bits, the FPGA cost proxy
(bit operations, multipliers; counted, not synthesised) vs accuracy, and which layers a mixed-precision variant
kept in float and why.

Every accuracy is the deployed artifact's on the test split; a drop is against the fp32 artifact of the same
variant on the same target and backend.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from edgebench.report.page import esc, table_html
from edgebench.report.tables import fmt_cell

#: the width of ``ap_fixed<W,I>`` in a calibrated fixed-point variant's spec
_WIDTH = re.compile(r"<\s*(\d+)")


def quant_method(spec: dict[str, Any]) -> tuple[str, int | None]:
    """How a variant was quantized and its weight bits: ``("QAT", 4)``, ``("PTQ", 8)``, ``("mixed", 8)``, ``("fp32",
    32)``; bits None where the spec does not say (a fixed point type edgebench cannot read)."""
    quant = spec.get("quant") or {}
    precision = quant.get("precision", "fp32")
    if quant.get("qat"):
        return "QAT", int(quant["qat"]["weight_bits"])
    if quant.get("max_drop") is not None:
        return "mixed", 8
    if precision == "fixed":
        width = _WIDTH.search(str(quant.get("fixed_point") or "ap_fixed<16,6>"))
        return "PTQ", int(width.group(1)) if width else None
    return ("PTQ", 8) if precision.startswith("int8") else (precision, {"fp32": 32, "fp16": 16}.get(precision))


def _base(label: str) -> str:
    return label.rsplit("/", 1)[0]


def quantization_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per measurement: target, backend, variant base, method, bits, accuracy and drop vs that fp32."""
    rows = []
    for _, r in ok.iterrows():
        spec = r["spec"] if isinstance(r["spec"], dict) else {}
        method, bits = quant_method(spec)
        rows.append({"target": r["target"], "backend": r["backend"], "base": _base(str(r["label"])), "method": method,
                     "bits": bits, "label": r["label"], "accuracy": r["accuracy"], "bops": r.get("bops"),
                     "multipliers": r.get("fpga_multipliers"), "details": r["details"]})
    df = pd.DataFrame(rows)
    fp32 = df[df["method"] == "fp32"].set_index(["target", "backend", "base"])["accuracy"]
    fp32 = fp32[~fp32.index.duplicated()]
    keys = list(zip(df["target"], df["backend"], df["base"]))
    df["drop_pt"] = [100 * (fp32.get(k) - a) if k in fp32.index and pd.notna(a) else None
                     for k, a in zip(keys, df["accuracy"])]
    return df


def _bits_table(df: pd.DataFrame) -> str:
    quantized = df[df["method"] != "fp32"].sort_values(["target", "backend", "base", "bits", "method"])
    body = [f"<tr><td class=l>{esc(r['target'])} · {esc(r['backend'])}</td><td class=l>{esc(r['base'])}</td>"
            f"<td class=l>{esc(r['method'])}</td><td>{fmt_cell(r['bits'])}</td><td>{fmt_cell(r['accuracy'])}</td>"
            f"<td>{fmt_cell(r['drop_pt'])}</td></tr>" for _, r in quantized.iterrows()]
    return table_html(["target", "variant", "quantized by", "weight bits", "accuracy", "drop vs fp32 (pt)"], body,
                      left=3, sortable=True)


def _qat_vs_ptq(df: pd.DataFrame) -> str | None:
    keys = ["target", "backend", "base", "bits"]
    pairs = df[df["method"] == "PTQ"].merge(df[df["method"] == "QAT"], on=keys, suffixes=("_ptq", "_qat"))
    if pairs.empty:
        return None
    body = [f"<tr><td class=l>{esc(r['target'])} · {esc(r['backend'])}</td><td class=l>{esc(r['base'])}</td>"
            f"<td>{fmt_cell(r['bits'])}</td><td>{fmt_cell(r['accuracy_ptq'])}</td><td>{fmt_cell(r['accuracy_qat'])}</td>"
            f"<td class=l>{esc(r['label_qat'])}</td></tr>" for _, r in pairs.iterrows()]
    return table_html(["target", "variant", "bits", "PTQ accuracy", "QAT accuracy", "QAT variant"], body, left=2)


def _fpga_proxy(df: pd.DataFrame) -> str | None:
    fpga = df[df["bops"].notna()].sort_values(["target", "bops"])
    if fpga.empty:
        return None
    body = []
    for _, r in fpga.iterrows():
        widths = ((r["details"] or {}).get("hls4ml") or {}).get("bit_operations", {}).get("multipliers_by_width", {})
        body.append(f"<tr><td class=l>{esc(r['label'])}</td><td class=l>{esc(r['target'])}</td>"
                    f"<td>{fmt_cell(r['accuracy'])}</td><td>{fmt_cell(r['bops'] / 1e6)}</td>"
                    f"<td>{fmt_cell(r['multipliers'])}</td><td class=l>{esc(widths or '—')}</td></tr>")
    return table_html(["variant", "target", "accuracy", "MBOPs (counted)", "multipliers (counted)",
                       "multipliers by weight x input bits"], body, left=2, sortable=True)


def _mixed(df: pd.DataFrame) -> str | None:
    body = []
    for _, r in df[df["method"] == "mixed"].iterrows():
        record = ((r["details"] or {}).get("quantization") or {}).get("mixed_precision")
        if not record:
            continue
        kept = ", ".join(f"{layer} (int8 with it in fp32: {record['recovered'].get(layer, float('nan')):.4f})"
                         for layer, _ in record["steps"]) or "none: int8 is within the budget"
        body.append(f"<tr><td class=l>{esc(r['label'])}</td><td class=l>{esc(r['target'])} · {esc(r['backend'])}</td>"
                    f"<td>{100 * record['max_drop']:g}</td><td>{fmt_cell(record['fp32_accuracy'])}</td>"
                    f"<td>{fmt_cell(record['int8_accuracy'])}</td><td>{fmt_cell(record['accuracy'])}</td>"
                    f"<td class=l>{esc(kept)}</td></tr>")
    if not body:
        return None
    return table_html(["variant", "target", "max drop (pt)", "fp32 (val)", "all int8 (val)", "mixed (val)",
                       "layers kept in fp32, in order (why: validation accuracy of int8 with only that layer float)"],
                      body, left=2)


def quantization_section(ok: pd.DataFrame) -> str | None:
    """The panel's HTML, or None when the run measured no quantized variant."""
    if ok.empty:
        return None
    df = quantization_rows(ok)
    if not (df["method"] != "fp32").any():
        return None
    parts = ["<h3>Accuracy vs bits, per target</h3>", _bits_table(df)]
    for title, html in (("QAT vs PTQ at the same bits", _qat_vs_ptq(df)),
                        ("FPGA cost proxy vs accuracy (counted from the hls4ml model, not synthesised)", _fpga_proxy(df)),
                        ("Mixed precision: layers kept in float and why", _mixed(df))):
        if html is not None:
            parts += [f"<h3>{esc(title)}</h3>", html]
    return "".join(parts)
