"""`asyncimg sheet`: the whole chapter as one PNG or JPEG, to share in a chat.

A grid of frames in batch order, each labelled with its id; a failed frame is a red
cell saying so, an unfinished one a grey cell with its state.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw

from asyncimg.fileio import atomic_write
from asyncimg.fonts import Font, font_path, prompt_font
from asyncimg.gallery.frames import Frame
from asyncimg.gallery.page import placeholder
from asyncimg.i18n import _
from asyncimg.store.states import TaskState

CELL = 240
LABEL = 28
GAP = 8
BACKGROUND = (244, 242, 238)
_COLOURS = {
    TaskState.COMPLETED: (46, 125, 50),
    TaskState.FAILED: (198, 40, 40),
}
_GREY = (138, 109, 0)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(frames: Sequence[Frame], columns: int = 6, cell: int = CELL) -> Image.Image:
    """The sheet as an RGB image (an empty chapter gives one empty cell)."""
    columns = max(1, min(columns, len(frames) or 1))
    rows = max(1, math.ceil(len(frames) / columns))
    width = GAP + columns * (cell + GAP)
    height = GAP + rows * (cell + LABEL + GAP)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    label_font = prompt_font(15)
    for i, frame in enumerate(frames):
        x = GAP + (i % columns) * (cell + GAP)
        y = GAP + (i // columns) * (cell + LABEL + GAP)
        _draw_cell(sheet, draw, frame, (x, y), cell, label_font)
    return sheet


def _draw_cell(
    sheet: Image.Image,
    draw: ImageDraw.ImageDraw,
    frame: Frame,
    at: tuple[int, int],
    cell: int,
    font: Font,
) -> None:
    x, y = at
    status = frame.status
    colour = _COLOURS.get(status, _GREY)
    shown = False
    if frame.image is not None:
        try:
            with Image.open(frame.image) as img:
                img.draft("RGB", (cell, cell))
                img.thumbnail((cell, cell), Image.Resampling.LANCZOS, reducing_gap=2.0)
                small = img.convert("RGB")
            sheet.paste(small, (x + (cell - small.width) // 2, y + (cell - small.height) // 2))
            shown = True
        except Exception:  # a missing or broken file is shown as missing, not a crash
            shown = False
    if not shown:
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(230, 226, 218), outline=colour)
        word = placeholder(frame, _word) if status is TaskState.COMPLETED else _word(status.value)
        word = _fit(draw, word, font, cell - 8)
        w = draw.textlength(word, font=font)
        draw.text((x + (cell - w) / 2, y + cell / 2 - 9), word, font=font, fill=colour)
    if status is TaskState.FAILED:
        draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=colour, width=4)
    label = (
        frame.frame_id
        if status is TaskState.COMPLETED
        else f"{frame.frame_id} · {_word(status.value)}"
    )
    draw.text((x + 2, y + cell + 5), _fit(draw, label, font, cell - 4), font=font, fill=colour)


def _word(text: str) -> str:
    """`text` in the current language when the sheet's font can draw it (a CJK font is
    installed), else as is: a sheet of empty boxes says less than English."""
    translated = _(text)
    return translated if translated.isascii() or _draws_cjk() else text


@cache
def _draws_cjk() -> bool:
    path = font_path()
    return path is not None and "dejavu" not in path.name.lower()


def write_sheet(image: Image.Image, path: Path) -> None:
    """Save as PNG, or JPEG for .jpg/.jpeg (smaller for chat); atomically."""
    buf = io.BytesIO()
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(buf, "JPEG", quality=85, optimize=True)
    else:
        image.save(buf, "PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue(), mode=0o644)
