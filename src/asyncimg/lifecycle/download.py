"""Verified, atomic image saving: a partial image never appears at `output_path`.

The bytes are checked by fully decoding them with Pillow, converted to the format the
path's extension names, written to a temp file beside the target, fsynced, then renamed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from asyncimg.fileio import atomic_write, remove_orphan_temps
from asyncimg.i18n import N_
from asyncimg.lifecycle import provenance
from asyncimg.protocol import models
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.record import ResultFile, TaskRecord
from asyncimg.store.states import UNFINISHED

if TYPE_CHECKING:
    from asyncimg.protocol.client import Result, VisualClient

FORMAT_BY_SUFFIX = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
}


class ImageCheckFailed(AsyncImgError):
    """Downloaded bytes are not a complete image (truncated, corrupt, empty)."""

    retryable = True
    hint = N_("the download was incomplete; the next pass downloads it again")


class DownloadAbandoned(AsyncImgError):
    """The finished task's image failed verification download after download, for long
    enough (`decide.corrupt_gives_up`): the result itself is broken; a new task may work.
    The message ends with the command that resubmits it."""

    resubmittable = True
    hint = N_("a new task usually gives a whole image; it is billed again")


class SaveFailed(AsyncImgError):
    """The image could not be written (a folder at the path, a name too long, permissions,
    disk full). The result is still on the service for about 12 h."""

    hint = N_(
        "fix the folder, or save it elsewhere: asyncimg retry TASK --output NEWPATH "
        "(fetched again, not resubmitted, while the service keeps it, ~12 h)"
    )


def remove_output_leftovers(records: Iterable[TaskRecord]) -> int:
    """Remove temp files left beside these records' images by writers that are gone (a
    process killed mid-write); returns how many. Only the records' own folders are looked
    in, and only our temp names (or the old format's, for these images, after an hour)."""
    folders: dict[Path, set[str]] = {}
    for record in records:
        if record.status not in UNFINISHED:
            continue
        try:
            target = record.resolve(record.output_path)
        except (OSError, RuntimeError, ValueError):
            continue
        names = folders.setdefault(target.parent, set())
        names.update(result_path(target, i).name for i in range(15))
    return sum(remove_orphan_temps(d, old_format_for=frozenset(n)) for d, n in folders.items())


def result_path(output_path: str | Path, index: int) -> Path:
    """Where image `index` (0-based) of a task goes: the path itself, then `<stem>_2.<ext>`…"""
    path = Path(output_path)
    if index == 0:
        return path
    return path.with_name(f"{path.stem}_{index + 1}{path.suffix}")


def verify_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode every pixel; raises ImageCheckFailed for anything short of a whole image.

    An image of more than `max_pixels` (default: the largest output of any model, with
    slack) is refused from its header, before it is decoded: a small file can decode to
    gigabytes. Pillow's DecompressionBombWarning is an error here too.
    """
    if not data:
        raise ImageCheckFailed("the image is empty (0 bytes)")
    bound = max_pixels or int(models.max_output_pixels() * models.PIXEL_SLACK)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.width * probe.height > bound:
                    raise _TooLarge(f"{probe.width}x{probe.height}")
                probe.verify()
            img = Image.open(io.BytesIO(data))
            img.load()
    except _TooLarge as exc:
        raise ImageCheckFailed(
            f"the image is {exc} px, more than the model's largest output allows ({bound} px)"
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageCheckFailed(f"the image has too many pixels to decode safely ({exc})") from None
    except Exception as exc:  # Pillow raises many kinds for broken data (and the warning)
        raise ImageCheckFailed(f"the image is incomplete or corrupt ({exc})") from None
    return img


class _TooLarge(Exception):
    """Raised inside verify_image when the header announces too many pixels."""


def encode_for(path: Path, img: Image.Image, original: bytes) -> bytes:
    """The bytes to store at `path`: the original if the format already matches."""
    target = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if target is None or target == img.format:
        return original
    out = img
    if target == "JPEG" and out.mode not in ("RGB", "L"):
        out = _flatten(out)
    buf = io.BytesIO()
    out.save(buf, target, **({"quality": 95} if target in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def _flatten(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def save_image(
    data: bytes,
    target: str | Path,
    fields: Mapping[str, str] | None = None,
    max_pixels: int | None = None,
) -> ResultFile:
    """Verify `data` (at most `max_pixels` pixels), convert it for `target`'s extension, put
    `fields` (provenance) inside a PNG or JPEG, and write it atomically. The sha256 is of the
    bytes written."""
    path = Path(target)
    img = verify_image(data, max_pixels)
    payload = provenance.embed(encode_for(path, img, data), fields or {})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, payload, mode=0o644, suffix=".part")
    except OSError as exc:
        raise SaveFailed(f"{path}: cannot write image ({exc.strerror or exc})") from None
    return ResultFile(
        path=str(path),
        sha256=hashlib.sha256(payload).hexdigest(),
        bytes=len(payload),
        width=img.width,
        height=img.height,
    )


async def fetch_images(client: VisualClient, result: Result) -> list[bytes]:
    """A finished task's image bytes as the service gave them: downloaded from its URLs,
    or decoded from its base64 payload (ImageCheckFailed if that is not valid base64)."""
    if result.image_urls:
        return [await client.download(url) for url in result.image_urls]
    blobs: list[bytes] = []
    for i, encoded in enumerate(result.images_base64):
        try:
            blobs.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            raise ImageCheckFailed(f"binary_data_base64[{i}] is not valid base64") from None
    return blobs


def max_pixels_for(req_key: str) -> int:
    """The most pixels an image of `req_key` may have when it is checked (with slack)."""
    return int(models.max_output_pixels(req_key) * models.PIXEL_SLACK)


def saver(record: TaskRecord) -> Callable[[bytes, Path], ResultFile]:
    """How `record`'s images are written, wherever their bytes come from (the service or
    the bucket): :func:`save_image` with the record's provenance and its model's pixel
    bound. Hashes the reference files (I/O): call it in a thread from async code."""
    return functools.partial(
        save_image,
        fields=provenance.provenance_of(record),
        max_pixels=max_pixels_for(record.req_key),
    )
