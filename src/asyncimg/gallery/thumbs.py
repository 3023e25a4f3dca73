"""Small JPEG thumbnails as `data:` URIs, so a gallery page is one self-contained file.

Made once per file version: the cache key is the path with its size and mtime, so the
live page re-encodes only images that changed.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

#: The box a frame thumbnail fits in (a 1440x2560 frame becomes 180x320).
FRAME_BOX = (320, 320)
#: The box a character reference thumbnail fits in.
CHARACTER_BOX = (64, 64)
QUALITY = 80


def thumbnail_bytes(path: Path, box: tuple[int, int]) -> bytes:
    """A JPEG of the image at `path` fitted in `box`; OSError / ValueError when unreadable."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", box)  # JPEG: decode at a fraction of the size
            img.thumbnail(box, Image.Resampling.LANCZOS, reducing_gap=2.0)
            small = img.convert("RGB") if img.mode != "RGB" else img.copy()
    except OSError:
        raise
    except Exception as exc:  # Pillow raises many kinds for what is not an image
        raise ValueError(f"{path}: not an image ({exc})") from None
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


class Thumbnails:
    """`data:image/jpeg;base64,...` URIs, cached by file version; None for a missing or
    unreadable file (the page shows a placeholder)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, tuple[int, int]], tuple[tuple[int, int], str | None]] = {}

    def uri(self, path: Path, box: tuple[int, int] = FRAME_BOX) -> str | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        version = (stat.st_size, stat.st_mtime_ns)
        key = (str(path), box)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            data = thumbnail_bytes(path, box)
            uri: str | None = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
        except (OSError, ValueError):
            uri = None
        self._cache[key] = (version, uri)
        return uri
