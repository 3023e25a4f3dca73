"""Frames render quickly at the big sizes and carry what tells them apart."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image, ImageDraw

from asyncimg.emulator.render import _wrap, background, render
from asyncimg.fonts import font_path, prompt_font


@pytest.mark.parametrize(
    ("size", "fmt"), [((2048, 2048), "PNG"), ((1440, 2560), "PNG"), ((2048, 2048), "JPEG")]
)
def test_big_frames_are_fast(size: tuple[int, int], fmt: str) -> None:
    began = time.perf_counter()
    data = render(
        prompt="a long prompt " * 60,
        task_id="1234567890123456789",
        index=0,
        count=1,
        size=size,
        output_format=fmt,
        references=[],
    )
    assert time.perf_counter() - began < 0.8
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.size) == (fmt, size)


def test_background_depends_on_prompt() -> None:
    assert background("a") == background("a")
    assert background("a") != background("b")


def test_a_font_is_found() -> None:
    path = font_path()
    assert path is None or path.is_file()


def test_wrap_keeps_words_and_fits() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = prompt_font(20)
    text = "一只在雪地里的红狐狸, watercolor, soft light " + "x" * 60 + "\nsecond"
    lines = _wrap(draw, text, font, 200)
    assert all(draw.textlength(line, font=font) <= 200 for line in lines)
    # Words stay whole whichever font the machine has (a CJK font wraps the Chinese alone).
    assert any("watercolor," in line.split() for line in lines)
    assert any("soft" in line.split() for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert lines[-1] == "second"
