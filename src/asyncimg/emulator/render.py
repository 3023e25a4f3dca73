"""Placeholder frames a person can tell apart: prompt text, task id and reference thumbnails.

Frames are drawn at a reduced scale and resized, so even 4096² stays well under a second.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re

from PIL import Image, ImageDraw

from asyncimg.fonts import Font, prompt_font

_DRAW_MAX_SIDE = 768
_PROMPT_SHOWN = 240


def background(prompt: str) -> tuple[int, int, int]:
    """A mid-tone colour from the prompt's hash: different prompts, visibly different frames."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return (64 + digest[0] % 160, 64 + digest[1] % 160, 64 + digest[2] % 160)


_CJK = "\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
# A CJK character is a token by itself (no spaces between words); Latin words keep together.
_TOKENS = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+\\s*|\\s+")


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: float) -> list[str]:
    """Greedy wrap by word (by character for CJK and for words wider than a line)."""

    def fits(candidate: str) -> bool:
        return draw.textlength(candidate.rstrip(), font=font) <= width

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for token in _TOKENS.findall(paragraph):
            if fits(line + token):
                line += token
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = token.lstrip()
            while line and not fits(line):
                cut = next((i for i in range(len(line) - 1, 0, -1) if fits(line[:i])), 1)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def _thumbnails(references: list[str], box: int) -> list[Image.Image]:
    out: list[Image.Image] = []
    for encoded in references:
        try:
            with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
                thumb = img.convert("RGB")
        except (binascii.Error, ValueError, OSError):
            continue
        thumb.thumbnail((box, box))
        out.append(thumb)
    return out


def render(
    *,
    prompt: str,
    task_id: str,
    index: int,
    count: int,
    size: tuple[int, int],
    output_format: str,
    references: list[str],
) -> bytes:
    """One encoded frame (PNG or JPEG) of exactly `size` pixels."""
    width, height = size
    scale = min(1.0, _DRAW_MAX_SIDE / max(width, height))
    dw, dh = max(1, round(width * scale)), max(1, round(height * scale))
    bg = background(prompt)
    fg = (255, 255, 255) if sum(bg) < 420 else (20, 20, 20)
    img = Image.new("RGB", (dw, dh), bg)
    draw = ImageDraw.Draw(img)
    margin = max(4, dw // 24)
    text_size = max(8, min(dw, dh) // 22)
    small = prompt_font(max(8, text_size * 3 // 4))
    draw.rectangle((0, 0, dw - 1, dh - 1), outline=fg, width=max(1, dw // 200))
    y = margin
    header = f"task {task_id}  image {index + 1}/{count}  {width}x{height}"
    draw.text((margin, y), header, font=small, fill=fg)
    y += int(text_size * 1.6)

    thumbs = _thumbnails(references, max(8, min(dw, dh) // 5))
    if thumbs:
        x = margin
        row = 0
        for thumb in thumbs:
            if x + thumb.width > dw - margin:
                break
            img.paste(thumb, (x, y))
            x += thumb.width + margin // 2
            row = max(row, thumb.height)
        y += row + margin // 2

    shown = prompt if len(prompt) <= _PROMPT_SHOWN else prompt[: _PROMPT_SHOWN - 1] + "…"
    font = prompt_font(text_size)
    line_height = int(text_size * 1.3)
    for line in _wrap(draw, shown, font, dw - 2 * margin):
        if y + line_height > dh - margin:
            break
        draw.text((margin, y), line, font=font, fill=fg)
        y += line_height

    if (dw, dh) != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if output_format == "JPEG":
        img.save(buf, "JPEG", quality=85)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()
