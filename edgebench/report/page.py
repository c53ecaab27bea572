"""Shared HTML scaffolding of the report pages: one stylesheet, escaping, tables, page writing."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0} td.l,th.l{text-align:left}
tr.pareto td{background:#fff4e5;font-weight:600} tr:hover td{background:#eef5ff}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .muted{color:#777;font-size:13px}
.ctx{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:1em}
.err{color:#a00;font-family:monospace;text-align:left;white-space:pre-wrap}
"""
# click a header to sort (numbers numerically, '—' last); inline so the page works offline
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th,i)=>th.addEventListener('click',()=>{
 const tb=th.closest('table').tBodies[0], rows=[...tb.rows], asc=th.dataset.asc!=='1'; th.dataset.asc=asc?'1':'0';
 const key=r=>{const t=r.cells[i].innerText.replace(/,/g,''); const n=parseFloat(t); return isNaN(n)?t:n};
 rows.sort((a,b)=>{const x=key(a),y=key(b); if(x==='—')return 1; if(y==='—')return -1;
  return (x<y?-1:x>y?1:0)*(asc?1:-1)}); rows.forEach(r=>tb.appendChild(r));}));
"""


def esc(value: object) -> str:
    """HTML-escape any value's text."""
    return html.escape(str(value))


def table_html(headers: Sequence[str], rows: Sequence[str], left: int = 0, sortable: bool = False) -> str:
    """A table from header texts and pre-rendered ``<tr>`` rows; the first ``left`` headers align left."""
    head = "".join(f"<th class=l>{esc(h)}</th>" if i < left else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    cls = " class=sortable" if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_page(path: Path, title: str, body: str) -> Path:
    """Write a self-contained page (inline CSS and JS, images by relative path)."""
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>{esc(title)}</h1>{body}<script>{SORT_JS}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    log.info("wrote %s", path)
    return path
