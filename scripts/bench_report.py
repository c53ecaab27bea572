"""Size and render time of the interactive HTML report: a stored run (default: the default run's store) and a
synthetic store of N measurements (default 500: 20 variants x 25 targets).

Prints, per case: the time render_report takes (PNG/SVG figures included), the page and the files beside it,
the bytes Debian's chromium loads to show the page (every request, all file://), and when BokehJS reports
the plots drawn ("document idle"). Needs `bash scripts/bootstrap.sh --test` (chromium, playwright).

    .venv/bin/python scripts/bench_report.py [--store runs/default/results.db] [--measurements 500]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from store_fixtures import fill_run  # the tests' synthetic runs

from edgebench.report import render_report
from edgebench.store import Store

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "unknown")
    load = Path("/proc/loadavg").read_text().split()[:3]
    return f"CPU: {model}; load average {' '.join(load)}"


def in_chromium(index: Path) -> tuple[int, float | None, int]:
    """(bytes loaded, BokehJS 'document idle' ms, requests not from file://)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        requests: list[str] = []
        idle: list[float] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: idle.extend(float(x) for x in re.findall(r"document idle at (\d+) ms", m.text)))
        page.goto(index.as_uri())
        page.wait_for_function("window.Bokeh && Bokeh.documents.length > 0 && Object.keys(Bokeh.index).length >= 3")
        page.wait_for_timeout(500)
        browser.close()
    local = {Path(unquote(urlparse(u).path)) for u in requests if u.startswith("file://")}
    return sum(p.stat().st_size for p in local), (idle[0] if idle else None), sum(not u.startswith("file://") for u in requests)


def report(name: str, store: Store, run_id: str, out: Path) -> None:
    n = len(store.measurements(run_id).query("status == 'ok'"))
    start = time.perf_counter()
    index = render_report(store, run_id, out)
    seconds = time.perf_counter() - start
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    figures = sum(size for name, size in files.items() if name.endswith((".png", ".svg")))
    library = sum(size for name, size in files.items() if name.endswith(".js"))
    loaded, idle, remote = in_chromium(index)
    print(f"{name}: {n} measurements; render_report {seconds:.1f} s; index.html {files['index.html'] / 1e6:.2f} MB, "
          f"BokehJS {library / 1e6:.2f} MB, PNG+SVG {figures / 1e6:.2f} MB; chromium loads {loaded / 1e6:.2f} MB "
          f"({remote} network requests), plots drawn at {idle} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="runs/default/results.db", help="a stored run to report (skipped if absent)")
    parser.add_argument("--measurements", type=int, default=500, help="synthetic store size (multiple of 20)")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        if Path(args.store).is_file():
            with Store.open(args.store) as store:
                report(f"stored run {args.store}", store, store.resolve_run("latest"), Path(tmp) / "stored")
        else:
            print(f"{args.store}: not found, skipped (run `edgebench run` first)")
        with Store.open(Path(tmp) / "synthetic.db") as store:
            targets = {f"board-{k:02d}": 1.0 + 0.1 * k for k in range(max(1, args.measurements // 20))}
            run_id = fill_run(store, targets=targets, fail_one=False)
            report("synthetic", store, run_id, Path(tmp) / "synthetic")


if __name__ == "__main__":
    main()
