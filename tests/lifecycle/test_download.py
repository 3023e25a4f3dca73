"""Downloads are verified, converted to the path's format and written atomically."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from asyncimg.lifecycle.download import (
    ImageCheckFailed,
    SaveFailed,
    result_path,
    save_image,
    verify_image,
)
from asyncimg.protocol import models


def _png(w: int = 64, h: int = 96, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), (10, 200, 30) if mode == "RGB" else (10, 200, 30, 128)).save(buf, "PNG")
    return buf.getvalue()


def test_png_for_png_path_is_written_byte_for_byte(tmp_path: Path) -> None:
    data = _png()
    saved = save_image(data, tmp_path / "out" / "f.png")
    assert (tmp_path / "out" / "f.png").read_bytes() == data
    assert saved.sha256 == hashlib.sha256(data).hexdigest()
    assert (saved.bytes, saved.width, saved.height) == (len(data), 64, 96)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPEG"])
def test_png_result_for_jpeg_path_is_converted(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"f{suffix}"
    saved = save_image(_png(mode="RGBA"), target)
    with Image.open(target) as img:
        assert img.format == "JPEG" and img.size == (64, 96)
    assert saved.sha256 == hashlib.sha256(target.read_bytes()).hexdigest()


def test_webp_path_gets_webp(tmp_path: Path) -> None:
    save_image(_png(), tmp_path / "f.webp")
    with Image.open(tmp_path / "f.webp") as img:
        assert img.format == "WEBP"


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_image_is_refused_and_nothing_appears(tmp_path: Path, cut: float) -> None:
    data = _png(300, 300)
    target = tmp_path / "f.png"
    with pytest.raises(ImageCheckFailed):
        save_image(data[: int(len(data) * cut)], target)
    assert list(tmp_path.iterdir()) == []


def test_empty_and_garbage_are_refused() -> None:
    with pytest.raises(ImageCheckFailed, match="empty"):
        verify_image(b"")
    with pytest.raises(ImageCheckFailed):
        verify_image(b"<html>404</html>")


def test_existing_file_survives_a_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.png"
    target.write_bytes(b"old")

    def boom(self: Path, other: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", boom)
    with pytest.raises(SaveFailed, match="No space left"):
        save_image(_png(), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_extra_images_are_numbered() -> None:
    assert result_path("a/b/frame.png", 0) == Path("a/b/frame.png")
    assert result_path("a/b/frame.png", 1) == Path("a/b/frame_2.png")
    assert result_path("a/b/frame.jpeg", 2) == Path("a/b/frame_3.jpeg")


# -- decompression bombs ----------------------------------------------------------------------


def _bomb(side: int = 12000) -> bytes:
    """A small PNG (a few hundred KB at most) that decodes to side x side pixels."""
    buf = io.BytesIO()
    Image.new("1", (side, side), 0).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def test_a_small_file_that_decodes_to_a_huge_image_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    data = _bomb()
    assert len(data) < 1024 * 1024
    with pytest.raises(ImageCheckFailed, match="too many pixels"):
        save_image(data, tmp_path / "f.png")
    with pytest.raises(ImageCheckFailed, match=r"6000x6000 px, more than the model's largest"):
        save_image(_bomb(6000), tmp_path / "f.png", max_pixels=4096 * 4096)
    assert list(tmp_path.iterdir()) == []


def test_the_pixel_bound_follows_the_model() -> None:
    """A 2048x2048 image is fine for jimeng_t2i_v40 (up to 4096²) and for i2i (2016² with
    slack), 3000x3000 is not for i2i; SeedEdit follows its input (up to 4096² too)."""
    data = _png(2048, 2048)
    bound = int(models.max_output_pixels("jimeng_i2i_v30") * models.PIXEL_SLACK)
    assert models.max_output_pixels("seededit_v3.0") == 4096 * 4096
    verify_image(data, int(models.max_output_pixels("jimeng_t2i_v40") * models.PIXEL_SLACK))
    verify_image(data, bound)  # 2048² < 2016² x 1.25
    with pytest.raises(ImageCheckFailed, match="more than the model's largest"):
        verify_image(_png(3000, 3000), bound)


def test_pillows_decompression_bomb_warning_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own threshold, lowered
    with pytest.raises(ImageCheckFailed, match="too many pixels to decode safely"):
        verify_image(_png(12, 12), max_pixels=10**6)
