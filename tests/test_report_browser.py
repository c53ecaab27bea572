"""The HTML report in a real headless browser (Debian's chromium driven by Playwright): it loads offline
without script errors, every plot image decodes, the measurement table sorts on click, and it renders."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_fixtures import filled_store, sqlite_store  # noqa: F401

from edgebench.report import render_report
from edgebench.store import Store

CHROMIUM = shutil.which("chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the 'test' extra")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (bootstrap.sh --test)")

#: the flags this machine's closed network needs (no background fetches), as root in a container
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def test_report_renders_offline_with_working_images_and_sorting(
    browser: object, filled_store: tuple[Store, str], tmp_path: Path  # noqa: F811
) -> None:
    store, run_id = filled_store
    index = render_report(store, run_id, tmp_path / "report")
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: requests.append(req.url))
    page.goto(index.as_uri())
    page.wait_for_load_state("load")

    assert errors == []
    assert all(url.startswith("file://") for url in requests)  # nothing fetched from a network
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) >= 4 and all(width > 100 for _, width in images), images
    assert "Failed jobs (1)" in page.inner_text("body")

    table = page.locator("table.sortable").first
    headers = table.locator("th").all_inner_texts()
    column = headers.index("p50 ms")

    def p50_column() -> list[float]:
        cells = table.locator(f"tbody tr td:nth-child({column + 1})").all_inner_texts()
        return [float(c.replace(",", "")) for c in cells if c not in ("—", "")]

    table.locator("th").nth(column).click()
    ascending = p50_column()
    assert len(ascending) >= 5 and ascending == sorted(ascending)
    table.locator("th").nth(column).click()
    assert p50_column() == sorted(ascending, reverse=True)

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 50_000  # a rendered page with plots, not a blank one
    page.close()
