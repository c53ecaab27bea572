"""Shared HTML scaffolding of the report pages: one stylesheet, escaping, tables, page writing, and BokehJS
written once beside the pages (no CDN: the pages open offline from the file system)."""

from __future__ import annotations

import html
import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import bokeh
from bokeh.util.paths import bokehjs_path

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1400px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0} th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0} td.l,th.l{text-align:left}
td{max-width:30em;overflow-wrap:anywhere} td:not(.l),td.nw{white-space:nowrap}
.wide{overflow-x:auto} .wide td{white-space:nowrap} .wide td.l{white-space:normal;min-width:7em;overflow-wrap:break-word}
.wide td.l:first-child{min-width:13em} .wide td.note{min-width:12em} td code{white-space:nowrap}
table.budget td{white-space:normal;text-align:left;overflow-wrap:break-word;min-width:9em}
tr.pareto td{background:#fff4e5;font-weight:600} tr:hover td{background:#eef5ff}
img{max-width:100%;border:1px solid #eee;margin:.5em 0} .muted{color:#777;font-size:13px}
.ctx{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:1em}
td.err,.err{color:#a00;font-family:monospace;text-align:left;white-space:pre-wrap}
.controls{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;margin:.5em 0}
.chip{border:1px solid #ccc;border-radius:1em;background:#fff;padding:2px 9px;cursor:pointer;font-size:13px}
.chip.off{opacity:.35;text-decoration:line-through} .chip i{font-style:normal}
.plots{display:flex;flex-wrap:wrap;gap:.5em} tr.selected td{background:#cfe3ff!important;outline:1px solid #5b8fd9}
.detail{border:1px solid #ddd;padding:.3em 1em;margin:.5em 0;background:#fafafa}
.bar{display:inline-block;height:.8em;background:#5b8fd9;margin-right:.4em;vertical-align:middle}
tr.regression td,tr.fail td{background:#fde8e8} tr.improvement td{background:#e6f6ea}
tr.warn td,tr.undecided td{background:#fff6db}
.gate-fail{color:#b00020} .gate-warn{color:#9a6700} .gate-ok{color:#1a7f37}
nav.toc{font-size:13px;margin:.3em 0 1em} nav.toc a{margin-right:.9em;white-space:nowrap}
"""
# click a header to sort its own table by that column (numbers numerically, '—' last); inline so the page works
# offline
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',()=>{
 const i=th.cellIndex, tb=th.closest('table').tBodies[0], rows=[...tb.rows], asc=th.dataset.asc!=='1'; th.dataset.asc=asc?'1':'0';
 const key=r=>{const t=r.cells[i].innerText.replace(/,/g,''); const n=parseFloat(t); return isNaN(n)?t:n};
 rows.sort((a,b)=>{const x=key(a),y=key(b); if(x==='—')return 1; if(y==='—')return -1;
  return (x<y?-1:x>y?1:0)*(asc?1:-1)}); rows.forEach(r=>tb.appendChild(r));}));
"""


def esc(value: object) -> str:
    """HTML-escape any value's text."""
    return html.escape(str(value))


def with_contents(sections: Sequence[str]) -> str:
    """``sections`` (each opening with its ``<h2>``) after a line of links to them: a lab's report of 372
    measurements was 23,000 px tall, its notes and failed jobs at the very bottom."""
    links, body = [], []
    for i, section in enumerate(sections):
        match = re.match(r"<h2>(.*?)</h2>", section)
        if match is None:
            body.append(section)
            continue
        links.append(f'<a href="#s{i}">{match[1]}</a>')
        body.append(f'<a id="s{i}"></a>{section}')  # the heading itself unchanged: what pages and tests read
    return (f"<nav class=toc>{' '.join(links)}</nav>" if len(links) > 1 else "") + "".join(body)


def table_html(headers: Sequence[str], rows: Sequence[str], left: int = 0, sortable: bool = False) -> str:
    """A table from header texts and pre-rendered ``<tr>`` rows; the first ``left`` headers align left."""
    head = "".join(f"<th class=l>{esc(h)}</th>" if i < left else f"<th>{esc(h)}</th>" for i, h in enumerate(headers))
    cls = " class=sortable" if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_bokeh_js(out_dir: Path) -> str:
    """Copy BokehJS (from the installed bokeh package) beside the pages once; return its file name.

    The name carries the version, so pages rendered by another bokeh never load a library they were not
    built for; a copy of the same size is kept.
    """
    name = f"bokeh-{bokeh.__version__}.min.js"
    library, copy = Path(bokehjs_path()) / "js" / "bokeh.min.js", Path(out_dir) / name
    if not copy.is_file() or copy.stat().st_size != library.stat().st_size:
        shutil.copyfile(library, copy)
    return name


def write_page(path: Path, title: str, body: str, *, scripts: Sequence[str] = (), inline_js: str = "") -> Path:
    """Write a page: inline CSS and JS; ``scripts`` are files beside it (BokehJS), images by relative path.

    ``inline_js`` runs at the end of the body, after every element of ``body`` exists.
    """
    head = "".join(f'<script src="{esc(src)}"></script>' for src in scripts)
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{esc(title)}</title><style>{CSS}</style>{head}"
        f"</head><body><h1>{esc(title)}</h1>{body}<script>{SORT_JS}{inline_js}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    log.info("wrote %s", path)
    return path
