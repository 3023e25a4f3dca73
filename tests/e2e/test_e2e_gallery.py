"""`asyncimg manifest | gallery | sheet | show FILE`, and `monitor` leaving a manifest.

Before issue 9 nothing showed a chapter's frames together and nothing machine-readable
linked a batch line to its image: each test here failed on main (no such command).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from .chapter import BATCH, ROWS, Clock, emulator_settings, make_chapter
from .conftest import E2E, EmulatorThread, scan_for_secret


@pytest.fixture(scope="module")
def chapter_e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """One chapter for the tests that only read it (each writes its own output file)."""
    clock = Clock()
    emu = EmulatorThread(**emulator_settings(clock))
    try:
        e2e = E2E(tmp_path_factory.mktemp("chapter"), emu)
        make_chapter(e2e, clock)
        yield e2e
    finally:
        emu.close()
    scan_for_secret(e2e.root)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_manifest_links_every_batch_line_to_its_image(chapter_e2e: E2E) -> None:
    e2e = chapter_e2e
    ran = e2e.ok("asyncimg", "manifest")
    path = e2e.tasks / "manifest.jsonl"
    assert ran.stdout.strip() == str(Path("async_tasks") / "manifest.jsonl")
    lines = manifest_lines(path.read_text(encoding="utf-8"))
    # One line per frame, in the batch's order; the line's own id, else file:line.
    assert [x["id"] for x in lines] == [
        "c01-001",
        f"{BATCH}:2",
        "c01-003",
        f"{BATCH}:4",
        "c01-005",
        f"{BATCH}:6",
    ]
    assert [x["output_path"] for x in lines] == [r["output_path"] for r in ROWS]
    assert [x["status"] for x in lines] == [
        "completed",
        "completed",
        "failed",
        "completed",
        "submitted",
        "submitted",
    ]
    for line, row in zip(lines, ROWS, strict=True):
        assert line["prompt"] == row["prompt"]  # Chinese as typed
        assert line["style"] == row["style"]
        assert line["characters"] == row.get("character_images", [])
        assert line["task_id"]
    for line in lines:
        if line["status"] == "completed":
            image = e2e.root / line["output_path"]
            assert line["sha256"] == sha(image)  # the bytes on disk, provenance included
            with Image.open(image) as img:
                assert (line["width"], line["height"]) == img.size
        else:
            assert line["sha256"] is None and line["width"] is None
    assert "review" in lines[2]["error"].lower() or "risk" in lines[2]["error"].lower()
    # Written raw UTF-8, and the same text on stdout with --out -.
    assert "雨夜的小巷" in path.read_text(encoding="utf-8")
    assert e2e.ok("asyncimg", "manifest", "--out", "-").stdout == path.read_text("utf-8")


def test_monitor_refreshes_the_manifest_when_it_ends(make_e2e: Callable[..., E2E]) -> None:
    clock = Clock()
    e2e = make_e2e(**emulator_settings(clock))
    make_chapter(e2e, clock)
    clock.advance(60)  # frames 5 and 6 are done at the emulator
    e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=60)  # frame 3 failed
    lines = manifest_lines((e2e.tasks / "manifest.jsonl").read_text(encoding="utf-8"))
    assert [x["status"] for x in lines] == ["completed"] * 2 + ["failed"] + ["completed"] * 3
    assert all(x["sha256"] for x in lines if x["status"] == "completed")


def test_images_carry_their_provenance_and_show_reads_it(chapter_e2e: E2E) -> None:
    e2e = chapter_e2e
    records = e2e.by_output()
    lin = sha(e2e.root / "chars" / "lin.png")
    for name in ("frames/001.png", "frames/002.jpg"):  # PNG text chunks; JPEG EXIF + XMP
        record = records[name]
        ran = e2e.ok("asyncimg", "show", name)
        out = ran.stdout
        assert record["prompt"] in out and record["full_prompt"] in out
        assert f"task_id      {record['task_id']}" in out
        assert "jimeng_t2i_v40" in out and record["style"] in out
        if name.endswith(".png"):
            assert lin in out
            with Image.open(e2e.root / name) as img:
                assert img.text["prompt"] == record["prompt"]  # type: ignore[attr-defined]
        else:
            with Image.open(e2e.root / name) as img:
                assert b"urn:asyncimg:provenance:1" in img.info["xmp"]
                assert img.getexif()[0x0131] == "asyncimg"
    # A file that is not an image, and an image without provenance, are said so.
    plain = e2e.root / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert "no asyncimg provenance" in e2e.ok("asyncimg", "show", "plain.png").stdout


def test_gallery_is_one_self_contained_page_in_batch_order(chapter_e2e: E2E) -> None:
    e2e = chapter_e2e
    ran = e2e.ok("asyncimg", "gallery")
    page_path = e2e.root / "gallery.html"
    assert ran.stdout.strip() == "gallery.html"
    page = page_path.read_text(encoding="utf-8")
    # Every image is embedded: nothing is fetched from anywhere.
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page
    # 3 frame thumbnails (the completed frames) and one per character image of each frame.
    characters = sum(len(r.get("character_images", [])) for r in ROWS)
    assert len(sources) == 3 + characters
    cards = re.findall(r'<article class="frame (\w+)" id="f-(\w+)"', page)
    assert [status for status, _ in cards] == [
        "completed",
        "completed",
        "failed",
        "completed",
        "submitted",
        "submitted",
    ]
    ids = re.findall(r'<span class="fid">([^<]*)</span>', page)
    assert ids == ["c01-001", f"{BATCH}:2", "c01-003", f"{BATCH}:4", "c01-005", f"{BATCH}:6"]
    for row in ROWS:
        assert row["prompt"] in page
    # The failed frame: its error and the exact command that retries it.
    failed = e2e.by_output()["frames/003.png"]
    assert f"asyncimg retry {failed['task_id']} --tasks-dir async_tasks" in page
    # Pending ones are placeholders.
    assert page.count('<div class="placeholder">submitted</div>') == 2
    # --out elsewhere: the links to full images are relative to the page.
    e2e.ok("asyncimg", "gallery", "--out", "share/g.html")
    assert 'href="../frames/001.png"' in (e2e.root / "share" / "g.html").read_text("utf-8")


def test_contact_sheet(chapter_e2e: E2E) -> None:
    e2e = chapter_e2e
    ran = e2e.ok("asyncimg", "sheet", "--columns", "3")
    sheet = e2e.root / "contact_sheet.jpg"
    assert ran.stdout.strip() == "contact_sheet.jpg"
    with Image.open(sheet) as img:
        assert img.format == "JPEG"
        width, height = img.size
        assert width > height  # 3 columns, 2 rows of portrait-or-square cells
        # The failed frame (row 1, column 3) is framed in red.
        cell = (width - 8) // 3
        r, g, b = img.convert("RGB").getpixel((8 + 2 * cell + 2, 8 + cell // 2))
        assert r > 150 and g < 90 and b < 90
    e2e.ok("asyncimg", "sheet", "--out", "sheet.png")
    with Image.open(e2e.root / "sheet.png") as img:
        assert img.format == "PNG"
    e2e.exits(2, "asyncimg", "sheet", "--out", "sheet.gif")


def test_no_tasks_folder_is_one_line_and_exit_2(e2e: E2E) -> None:
    for command in ("gallery", "sheet", "manifest", "serve"):
        ran = e2e.exits(2, "asyncimg", command)
        assert ran.stderr.strip() == (
            "asyncimg: async_tasks: no tasks folder here (submit some frames, or give --tasks-dir)"
        )
