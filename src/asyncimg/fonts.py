"""The machine's best font for prompt text: a CJK one when installed (prompts are often
Chinese), else DejaVuSans, else Pillow's own. Used by the emulator's frames and the
contact sheet."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
_CJK_PATTERNS = ("NotoSansCJK*", "NotoSansSC*", "NotoSans*CJK*", "wqy-*", "wqy*")
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=1)
def font_path() -> Path | None:
    """A CJK-capable font when installed (prompts are often Chinese), else DejaVuSans."""
    for root in _FONT_DIRS:
        if not root.is_dir():
            continue
        for pattern in _CJK_PATTERNS:
            found = sorted(root.rglob(pattern))
            fonts = [p for p in found if p.suffix.lower() in (".ttc", ".otf", ".ttf")]
            if fonts:
                return fonts[0]
    return _DEJAVU if _DEJAVU.is_file() else None


@lru_cache(maxsize=16)
def prompt_font(size: int) -> Font:
    """The machine's best font for prompts (a CJK one if installed), or Pillow's own."""
    path = font_path()
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            pass
    return ImageFont.load_default(size=size)
