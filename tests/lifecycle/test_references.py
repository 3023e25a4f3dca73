"""Reference images: sent unchanged when they fit, otherwise normalised until they provably fit."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import random
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from asyncimg.lifecycle.references import PreparedReference, prepare_references
from asyncimg.protocol.errors import InvalidInput
from asyncimg.protocol.models import (
    MB,
    ModelProfile,
    get_profile,
    inspect_image,
    reference_problem,
    validate_reference_base64,
)

V40 = get_profile("jimeng_t2i_v40")
V31 = get_profile("jimeng_t2i_v31")
I2I = get_profile("jimeng_i2i_v30")


def _small(profile: ModelProfile = V40, **changes: Any) -> ModelProfile:
    """A profile with tighter reference limits, so limits are exercised with small images."""
    return dataclasses.replace(
        profile, references=dataclasses.replace(profile.references, **changes)
    )


def _noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rnd = random.Random(seed)
    return Image.frombytes("RGB", size, rnd.randbytes(size[0] * size[1] * 3))


def _save(image: Image.Image, path: Path, fmt: str, **kwargs: object) -> Path:
    image.save(path, fmt, **kwargs)
    return path


def _one(path: Path, profile: ModelProfile = V40) -> PreparedReference:
    [ref] = prepare_references([path], profile)
    assert reference_problem(profile, inspect_image(ref.data)) is None
    return ref


def _opened(ref: PreparedReference) -> Image.Image:
    image = Image.open(io.BytesIO(ref.data))
    image.load()
    return image


# --- unchanged when they already fit -------------------------------------------------------


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", "png"), ("JPEG", "jpg")])
def test_fitting_jpeg_and_png_are_sent_byte_for_byte(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = _save(_noise((300, 500)), tmp_path / f"hero.{suffix}", fmt)
    ref = _one(path)
    assert ref.data == path.read_bytes()
    assert (ref.format, ref.width, ref.height) == (fmt, 300, 500)
    assert ref.converted is False
    assert ref.note is None
    assert ref.path == str(path)


def test_transparent_png_that_fits_is_unchanged(tmp_path: Path) -> None:
    path = _save(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), tmp_path / "ghost.png", "PNG")
    assert _one(path).data == path.read_bytes()


def test_path_is_kept_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _save(_noise((50, 50)), tmp_path / "角色.png", "PNG")
    [ref] = prepare_references(["角色.png"], V40)
    assert ref.path == "角色.png"


def test_base64_is_raw_standard_base64(tmp_path: Path) -> None:
    ref = _one(_save(_noise((40, 40)), tmp_path / "a.png", "PNG"))
    assert not ref.base64.startswith("data:")
    assert base64.b64decode(ref.base64, validate=True) == ref.data
    validate_reference_base64(V40, 0, ref.base64)


# --- format conversion ----------------------------------------------------------------------


def test_webp_becomes_jpeg(tmp_path: Path) -> None:
    ref = _one(_save(_noise((320, 240)), tmp_path / "a.webp", "WEBP"))
    assert (ref.format, ref.width, ref.height, ref.converted) == ("JPEG", 320, 240, True)
    assert ref.note == "WEBP converted to JPEG"
    assert _opened(ref).mode == "RGB"


def test_transparent_webp_becomes_png_keeping_alpha(tmp_path: Path) -> None:
    image = Image.new("RGBA", (100, 80), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (20, 20, 80, 60))
    ref = _one(_save(image, tmp_path / "a.webp", "WEBP", lossless=True))
    assert ref.format == "PNG"
    out = _opened(ref)
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((50, 40))[3] == 255  # type: ignore[index]
    assert ref.note == "WEBP converted to PNG"


def test_bmp_becomes_jpeg(tmp_path: Path) -> None:
    ref = _one(_save(_noise((120, 90)), tmp_path / "a.bmp", "BMP"))
    assert (ref.format, ref.width, ref.height) == ("JPEG", 120, 90)
    assert ref.note == "BMP converted to JPEG"


def test_gif_with_transparency_becomes_png(tmp_path: Path) -> None:
    image = Image.new("P", (60, 60), 0)
    image.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    image.paste(1, (10, 10, 50, 50))
    ref = _one(_save(image, tmp_path / "a.gif", "GIF", transparency=0))
    assert ref.format == "PNG"
    assert _opened(ref).getpixel((0, 0))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "LA"])
def test_tiff_modes_become_jpeg_or_png(tmp_path: Path, mode: str) -> None:
    image = _noise((70, 50)).convert(mode)
    ref = _one(_save(image, tmp_path / "a.tiff", "TIFF"))
    assert ref.format == "JPEG"  # LA here is fully opaque, so nothing is lost
    assert _opened(ref).mode in ("L", "RGB")


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    image = Image.linear_gradient("L").resize((64, 64)).convert("I").point(lambda v: v * 256)
    ref = _one(_save(image.convert("I;16"), tmp_path / "a.tiff", "TIFF"))
    lo, hi = cast(tuple[int, int], _opened(ref).getextrema())
    assert lo < 20 and hi > 230


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    ref = _one(_save(_noise((80, 60)).convert("CMYK"), tmp_path / "a.jpg", "JPEG"))
    assert ref.converted
    assert _opened(ref).mode == "RGB"
    assert "CMYK converted to RGB" in (ref.note or "")


# --- orientation, pixels and bytes ----------------------------------------------------------


def test_exif_rotated_jpeg_comes_out_upright(tmp_path: Path) -> None:
    image = Image.new("RGB", (400, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 200))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    ref = _one(_save(image, tmp_path / "phone.jpg", "JPEG", exif=exif))
    assert (ref.width, ref.height) == (200, 400)
    assert ref.converted and "EXIF orientation" in (ref.note or "")
    out = _opened(ref)
    top, bottom = out.getpixel((100, 20)), out.getpixel((100, 380))
    assert top[0] > 200 and top[2] < 60  # type: ignore[index]
    assert bottom[2] > 200 and bottom[0] < 60  # type: ignore[index]
    assert out.getexif().get(0x0112, 1) == 1


def test_large_image_downscaled_keeping_ratio(tmp_path: Path) -> None:
    ref = _one(_save(Image.new("RGB", (5000, 3000), (90, 120, 200)), tmp_path / "a.png", "PNG"))
    assert max(ref.width, ref.height) <= 4096
    assert (ref.width, ref.height) == (4096, 2458)
    assert ref.format == "PNG"
    assert ref.note == "downscaled from 5000x3000 to 4096x2458"


def test_downscale_note_names_both_sizes(tmp_path: Path) -> None:
    ref = _one(_save(Image.new("RGB", (6000, 4000), (9, 9, 9)), tmp_path / "a.jpg", "JPEG"))
    assert ref.note == "downscaled from 6000x4000 to 4096x2731"


def test_exact_three_to_one_stays_within_limit_after_downscale(tmp_path: Path) -> None:
    ref = _one(_save(Image.new("L", (6000, 2000), 128), tmp_path / "a.png", "PNG"))
    assert ref.width == 4096
    assert ref.width / ref.height <= 3


def test_over_byte_limit_shrinks_under_it(tmp_path: Path) -> None:
    profile = _small(max_bytes=60_000)
    path = _save(_noise((400, 300)), tmp_path / "noisy.png", "PNG")
    assert path.stat().st_size > 60_000
    ref = _one(path, profile)
    assert len(ref.data) <= 60_000
    assert ref.format == "JPEG"
    assert abs(ref.width / ref.height - 4 / 3) < 0.02
    assert "re-encoded" in (ref.note or "") and "JPEG quality" in (ref.note or "")


def test_over_byte_limit_jpeg_also_shrinks(tmp_path: Path) -> None:
    profile = _small(I2I, max_bytes=int(0.05 * MB))
    path = _save(_noise((600, 600), seed=3), tmp_path / "noisy.jpg", "JPEG", quality=100)
    ref = _one(path, profile)
    assert len(ref.data) <= 0.05 * MB
    assert ref.width == ref.height


def test_large_noisy_image_fits_real_v40_limit(tmp_path: Path) -> None:
    path = _save(_noise((3000, 2000), seed=7), tmp_path / "huge.png", "PNG")
    assert path.stat().st_size > 15 * MB
    ref = _one(path)
    assert len(ref.data) <= 15 * MB
    assert (ref.width, ref.height) == (3000, 2000)  # quality alone was enough


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "example"), [((4000, 1000), "3000x1000"), ((1000, 4000), "1000x3000")]
)
def test_panorama_is_refused_not_cropped(
    tmp_path: Path, size: tuple[int, int], example: str
) -> None:
    path = _save(Image.new("RGB", size, (1, 2, 3)), tmp_path / "pano.jpg", "JPEG")
    with pytest.raises(InvalidInput) as info:
        prepare_references([path], V40)
    message = str(info.value)
    assert str(path) in message
    assert "4.00:1" in message
    assert f"crop it to at most 3:1, e.g. {example}" in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    ok = _save(_noise((20, 20)), tmp_path / "ok.png", "PNG")
    with pytest.raises(InvalidInput) as info:
        prepare_references([ok, tmp_path / "nope.png"], V40)
    assert info.value.field == "character_images[1]"
    assert str(tmp_path / "nope.png") in str(info.value)
    assert "no such file" in str(info.value)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("not a picture", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"fake\.png.*not an image"):
        prepare_references([path], V40)


def test_empty_file_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InvalidInput, match=r"empty\.jpg.*empty file"):
        prepare_references([tmp_path / "empty.jpg"], V40)
    with pytest.raises(InvalidInput, match="is a directory"):
        prepare_references([tmp_path], V40)


def test_truncated_image(tmp_path: Path) -> None:
    good = _save(_noise((200, 200)), tmp_path / "good.webp", "WEBP").read_bytes()
    (tmp_path / "cut.webp").write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidInput, match=r"cut\.webp"):
        prepare_references([tmp_path / "cut.webp"], V40)


def test_heic_is_named(tmp_path: Path) -> None:
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    with pytest.raises(InvalidInput, match="HEIC"):
        prepare_references([tmp_path / "IMG_0001.HEIC"], V40)


# --- counts ---------------------------------------------------------------------------------


def test_v40_takes_at_most_ten(tmp_path: Path) -> None:
    path = _save(_noise((20, 20)), tmp_path / "a.png", "PNG")
    assert len(prepare_references([path] * 10, V40)) == 10
    assert prepare_references([], V40) == []
    with pytest.raises(InvalidInput) as info:
        prepare_references([path] * 11, V40)
    assert info.value.field == "character_images"
    assert "11 images" in str(info.value) and "at most 10" in str(info.value)


@pytest.mark.parametrize("count", [1, 2, 5])
def test_text_only_model_takes_none(tmp_path: Path, count: int) -> None:
    path = _save(_noise((20, 20)), tmp_path / "a.png", "PNG")
    with pytest.raises(InvalidInput) as info:
        prepare_references([path] * count, V31)
    message = str(info.value)
    assert "jimeng_t2i_v31" in message and "takes no reference images" in message
    assert "jimeng_t2i_v40" in message and "up to 10" in message
    assert prepare_references([], V31) == []


def test_count_is_checked_before_files_are_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="exactly 1"):
        prepare_references([tmp_path / "missing.png"] * 2, I2I)
    with pytest.raises(InvalidInput, match="exactly 1"):
        prepare_references([], I2I)


# --- property: whatever comes out fits --------------------------------------------------------

_MODES_BY_FORMAT = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["1", "L", "P", "RGB"],
    "GIF": ["L", "P"],
    "TIFF": ["L", "LA", "RGB", "RGBA", "CMYK", "I;16"],
}


@st.composite
def _images(draw: st.DrawFn) -> tuple[Image.Image, str]:
    fmt = draw(st.sampled_from(sorted(_MODES_BY_FORMAT)))
    mode = draw(st.sampled_from(_MODES_BY_FORMAT[fmt]))
    size = (draw(st.integers(1, 400)), draw(st.integers(1, 400)))
    noisy = draw(st.booleans())
    base = _noise(size, draw(st.integers(0, 1000))) if noisy else Image.new("RGB", size, "teal")
    if mode in ("LA", "RGBA") and draw(st.booleans()):
        base = base.convert("RGBA")
        base.putalpha(Image.linear_gradient("L").resize(size))
    return base.convert(mode), fmt


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=_images(),
    max_side=st.sampled_from([64, 200, 4096]),
    max_bytes=st.sampled_from([6_000, 30_000, 15 * MB]),
    orientation=st.sampled_from([1, 3, 6, 8]),
)
def test_whatever_comes_out_fits(
    tmp_path: Path,
    drawn: tuple[Image.Image, str],
    max_side: int,
    max_bytes: int,
    orientation: int,
) -> None:
    image, fmt = drawn
    profile = _small(max_side=max_side, max_bytes=max_bytes)
    kwargs: dict[str, object] = {}
    if fmt == "JPEG":
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    path = _save(image, tmp_path / f"img.{fmt.lower()}", fmt, **kwargs)
    w, h = image.size
    if max(w, h) / min(w, h) > 3:
        with pytest.raises(InvalidInput, match="crop it to at most 3:1"):
            prepare_references([path], profile)
        return
    [ref] = prepare_references([path], profile)
    info = inspect_image(ref.data)
    assert reference_problem(profile, info) is None
    assert (info.format, info.width, info.height) == (ref.format, ref.width, ref.height)
    assert ref.converted == (ref.data != path.read_bytes())
    assert (ref.note is None) == (not ref.converted)
    if fmt == "JPEG" and orientation in (6, 8):
        w, h = h, w
    assert abs(ref.width / ref.height - w / h) <= 0.05 * (w / h) + 2 / min(ref.width, ref.height)


def test_a_fifo_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Reading a FIFO blocks until a writer comes: `submit` hung for ever (found by the
    reliability suite, `make chaos`)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InvalidInput, match=r"pipe\.png.*not a regular file"):
        prepare_references([fifo], V40)


def test_a_decompression_bomb_character_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few kB that decode to a huge image: Pillow warns; here that is an error naming the
    file (the threshold is lowered so the test image stays small)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (12, 12), (10, 20, 30)).save(path)  # 144 px: over 100, under 2 x 100
    with pytest.raises(InvalidInput, match="too many pixels to decode safely") as refused:
        prepare_references([path], V40)
    assert "bomb.png" in str(refused.value)
