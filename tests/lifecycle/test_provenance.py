"""Provenance inside the image (issue 9): PNG iTXt chunks, JPEG EXIF + XMP, read back.

Real images made with Pillow; the bytes written are checked to decode to the same pixels,
and other readers (Pillow's own PNG text and EXIF parsers) see the fields too.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from asyncimg.lifecycle import provenance
from asyncimg.lifecycle.config import Config
from asyncimg.lifecycle.download import save_image
from asyncimg.lifecycle.submit import TaskRequest, build_record

FIELDS = {
    "prompt": '雨夜的小巷，林晓撑着红伞回头张望 & <tags> "quoted"',
    "full_prompt": "雨夜的小巷，日系漫画风格",
    "model": "jimeng_t2i_v40",
    "task_id": "7392616336519610409",
    "seed": "42",
    "style": "manga",
    "references": json.dumps([{"file": "chars/lin.png", "sha256": "ab" * 32}]),
    "frame_id": "c01-001",
}


def _image(fmt: str, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (10, 120, 200)).save(buf, fmt, **save)
    return buf.getvalue()


def _pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").tobytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fields_round_trip_and_pixels_are_untouched(tmp_path: Path, fmt: str) -> None:
    original = _image(fmt)
    data = provenance.embed(original, FIELDS)
    assert data != original and _pixels(data) == _pixels(original)
    path = tmp_path / f"f.{fmt.lower()}"
    path.write_bytes(data)
    assert provenance.read(path) == FIELDS


def test_png_chunks_are_what_other_tools_read(tmp_path: Path) -> None:
    data = provenance.embed(_image("PNG"), FIELDS)
    with Image.open(io.BytesIO(data)) as img:
        assert img.text["prompt"] == FIELDS["prompt"]  # type: ignore[attr-defined]
        assert img.text["Software"] == "asyncimg"  # type: ignore[attr-defined]


def test_jpeg_exif_alone_still_carries_every_field(tmp_path: Path) -> None:
    """A tool that strips XMP but keeps EXIF: the UserComment still has it all."""
    data = provenance.embed(_image("JPEG"), FIELDS)
    with Image.open(io.BytesIO(data)) as img:
        exif = img.getexif()
        assert exif[0x0131] == "asyncimg"
        assert provenance._read_exif_comment(exif) == FIELDS


def test_an_earlier_exif_is_replaced_and_jfif_kept(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0131] = "someone else"
    original = _image("JPEG", exif=exif.tobytes())
    data = provenance.embed(original, FIELDS)
    assert data[2:4] == b"\xff\xe0"  # JFIF first, as before
    assert data.count(b"Exif\x00\x00") == 1
    with Image.open(io.BytesIO(data)) as img:
        assert img.getexif()[0x0131] == "asyncimg"
    # Embedding twice leaves one copy, not two.
    again = provenance.embed(data, FIELDS)
    assert again.count(b"Exif\x00\x00") == 1 and again.count(b"urn:asyncimg:provenance:1") == 1


def test_other_formats_and_no_fields_are_left_alone() -> None:
    webp = _image("WEBP")
    assert provenance.embed(webp, FIELDS) == webp
    png = _image("PNG")
    assert provenance.embed(png, {}) == png


def test_an_image_without_provenance_and_a_non_image(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(_image("PNG"))
    assert provenance.read(plain) == {}
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png"):
        provenance.read(text)


def test_save_image_writes_it_and_hashes_the_bytes_written(tmp_path: Path) -> None:
    target = tmp_path / "out" / "001.jpg"
    saved = save_image(_image("PNG"), target, FIELDS)  # converted to JPEG, then signed
    assert saved.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()
    assert provenance.read(target) == FIELDS


def test_provenance_of_a_record_hashes_its_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ref = tmp_path / "chars" / "lin.png"
    ref.parent.mkdir()
    ref.write_bytes(_image("PNG"))
    request = TaskRequest(
        prompt="林晓",
        output_path="frames/001.png",
        character_images=("chars/lin.png", "chars/gone.png"),
        style="manga",
        params={"seed": 7},
        frame_id="c01-001",
    )
    record = build_record(request, Config(), now=0.0)
    fields = provenance.provenance_of(record)
    assert fields["prompt"] == "林晓" and fields["model"] == record.req_key
    assert fields["seed"] == "7" and fields["style"] == "manga"
    assert fields["frame_id"] == "c01-001"
    assert "task_id" not in fields  # none yet: left out, not written empty
    refs = json.loads(fields["references"])
    assert refs == [
        {"file": "chars/lin.png", "sha256": hashlib.sha256(ref.read_bytes()).hexdigest()},
        {"file": "chars/gone.png", "sha256": "missing"},
    ]


def test_png_chunks_go_before_the_first_real_idat(tmp_path: Path) -> None:
    """A text chunk that happens to contain the bytes IDAT does not mislead the splice."""
    original = _image("PNG", pnginfo=_info("note", "IDAT IDAT"))
    data = provenance.embed(original, FIELDS)
    assert _pixels(data) == _pixels(original)
    path = tmp_path / "f.png"
    path.write_bytes(data)
    assert provenance.read(path) == FIELDS


def _info(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info
