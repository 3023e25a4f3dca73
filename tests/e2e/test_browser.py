"""The gallery in a real browser: Debian's headless Chromium, driven by Playwright.

`.ci/run` installs `chromium` when it is missing; on a machine without it these tests are
skipped with one line. Playwright's own browser download is not used (it cannot work
offline): Playwright drives /usr/bin/chromium. Set ASYNCIMG_SCREENSHOTS=DIR to keep the
screenshots (docs/gallery.png comes from the first test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .chapter import ROWS, Clock, emulator_settings, make_chapter
from .conftest import E2E, interrupt, serve_live

CHROMIUM = Path(os.environ.get("ASYNCIMG_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright")

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous safety nets: the page reacts within the serve interval (0.2 s) when all is well.
WAIT_MS = 30_000

ALL_IMAGES_DECODED = """() => {
  const imgs = Array.from(document.images);
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("ASYNCIMG_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / name)
    return shot


def images(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        "() => Array.from(document.images).map(i => ({cls: i.className, w: i.naturalWidth}))"
    )
    return result


def test_every_thumbnail_of_the_gallery_decodes(
    make_e2e: Callable[..., E2E], page: Any, tmp_path: Path
) -> None:
    clock = Clock()
    e2e = make_e2e(**emulator_settings(clock))
    make_chapter(e2e, clock)
    e2e.ok("asyncimg", "gallery")
    page.goto((e2e.root / "gallery.html").as_uri())
    page.wait_for_function(ALL_IMAGES_DECODED, timeout=WAIT_MS)
    shown = images(page)
    assert [i["cls"] for i in shown].count("thumb") == 3  # the completed frames
    characters = sum(len(row.get("character_images", [])) for row in ROWS)
    assert [i["cls"] for i in shown].count("char") == characters  # of every frame
    assert all(i["w"] > 0 for i in shown)
    statuses = page.eval_on_selector_all("article.frame", "els => els.map(e => e.dataset.status)")
    assert statuses == ["completed", "completed", "failed", "completed", "submitted", "submitted"]
    failed = page.inner_text("article.failed")
    assert "Post Img Risk Not Pass" in failed and "asyncimg retry" in failed
    keep_screenshot(page, tmp_path, "gallery.png")


def _serve(e2e: E2E) -> tuple[subprocess.Popen[str], str]:
    """`asyncimg serve` on a free port; the process and the URL it printed."""
    proc, url = serve_live(e2e)
    assert url.startswith("http://127.0.0.1:")  # loopback by default
    return proc, url


def test_a_frame_that_finishes_appears_on_the_live_page_without_a_reload(
    make_e2e: Callable[..., E2E], page: Any, tmp_path: Path
) -> None:
    clock = Clock()
    e2e = make_e2e(**emulator_settings(clock))
    chapter = make_chapter(e2e, clock)
    before = sorted(p.name for p in e2e.tasks.iterdir())
    proc, url = _serve(e2e)
    try:
        page.goto(url)
        page.wait_for_function("() => document.body.dataset.version !== '0'", timeout=WAIT_MS)
        page.evaluate("() => { window.notReloaded = true; }")
        page.wait_for_function(ALL_IMAGES_DECODED, timeout=WAIT_MS)
        assert [i["cls"] for i in images(page)].count("thumb") == 3
        assert sorted(p.name for p in e2e.tasks.iterdir()) == before  # serve wrote nothing
        # Read-only: nothing but GET.
        assert page.request.post(url, data="x").status == 405
        assert page.request.get(url + "image/nope").status == 404

        chapter.finish_the_rest()  # frames 5 and 6 complete while the page is open

        page.wait_for_function(
            """() => {
              const done = document.querySelectorAll('article[data-status="completed"]');
              const thumbs = Array.from(document.querySelectorAll("img.thumb"));
              return done.length === 5
                && thumbs.length === 5 && thumbs.every(i => i.complete && i.naturalWidth > 0);
            }""",
            timeout=WAIT_MS,
        )
        assert page.evaluate("() => window.notReloaded") is True  # the same page, updated
        order = page.eval_on_selector_all(
            "article.frame span.fid", "els => els.map(e => e.textContent)"
        )
        assert order[0] == "c01-001" and order[4] == "c01-005"  # still in batch order
        assert "5 completed" in page.inner_text("#summary")
        full = page.request.get(url + "image/" + page.get_attribute("article.frame", "data-key"))
        assert full.status == 200 and full.headers["content-type"] == "image/png"
        keep_screenshot(page, tmp_path, "gallery-live.png")
    finally:
        out, err = interrupt(proc)
    assert proc.returncode == 130 and "Traceback" not in err, err  # Ctrl+C: stopped cleanly
    assert out.strip() == "stopped serving"
