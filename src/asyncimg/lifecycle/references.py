"""Character reference images: read, check and normalise them for one model.

Users hand over whatever their drawing tool or phone produced (WebP, BMP, rotated JPEGs,
huge scans). The API takes only JPEG/PNG under size limits and rejects the whole task
otherwise, so everything fixable is fixed here, locally, and said so in a `note`.
What cannot be fixed without guessing (a panorama that would need cropping, which could
cut the character out) is refused with a message saying what would work.
Files that already fit are sent byte for byte: re-encoding would only lose quality.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from asyncimg.constants import DEFAULT_REQ_KEY
from asyncimg.i18n import _
from asyncimg.protocol.errors import InvalidInput
from asyncimg.protocol.models import (
    MB,
    ModelProfile,
    get_profile,
    inspect_image,
    reference_problem,
)

FIELD = "character_images"
JPEG_QUALITY = 92
# Re-encoding steps when a file is over the byte limit, before shrinking the pixels.
_SHRINK_QUALITIES = (85, 75, 65, 50)
_MIN_SIDE = 16  # Below this a reference is useless; give up instead of looping.
_ORIENTATION_TAG = 0x0112


class _CannotFit(Exception):
    """Normalising gave up (only for absurd limits); becomes InvalidInput naming the path."""


@dataclass(frozen=True)
class PreparedReference:
    """One reference image as it will be sent, and what was done to it."""

    path: str
    data: bytes
    format: str
    width: int
    height: int
    converted: bool
    note: str | None = None

    @property
    def base64(self) -> str:
        """Raw standard base64 for `binary_data_base64` (no `data:` prefix)."""
        return base64.b64encode(self.data).decode("ascii")


def prepare_references(
    paths: Sequence[str | Path], profile: ModelProfile
) -> list[PreparedReference]:
    """Read and normalise every reference for `profile`; InvalidInput naming the bad one."""
    check_count(len(paths), profile)
    return [_prepare_one(f"{FIELD}[{i}]", path, profile) for i, path in enumerate(paths)]


def prepare_reference(field: str, path: str | Path, profile: ModelProfile) -> PreparedReference:
    """One reference file as it will be sent (`field` names it in errors)."""
    return _prepare_one(field, path, profile)


def check_count(count: int, profile: ModelProfile) -> None:
    """InvalidInput unless the model takes `count` reference images."""
    rule = profile.references
    if rule.min_count <= count <= rule.max_count:
        return
    if rule.max_count == 0:
        default_max = get_profile(DEFAULT_REQ_KEY).references.max_count
        raise InvalidInput(
            FIELD,
            _("{n} images").format(n=count),
            _("{model} is text-only and takes no reference images").format(model=profile.req_key),
            _("use {model}, which takes up to {n}").format(model=DEFAULT_REQ_KEY, n=default_max),
        )
    if rule.min_count == rule.max_count:
        takes = _("{model} takes exactly {n}").format(model=profile.req_key, n=rule.min_count)
    elif rule.min_count == 0:
        takes = _("{model} takes at most {n}").format(model=profile.req_key, n=rule.max_count)
    else:
        takes = _("{model} takes {low} to {high}").format(
            model=profile.req_key, low=rule.min_count, high=rule.max_count
        )
    raise InvalidInput(FIELD, _("{n} images").format(n=count), takes)


def _read(field: str, path: Path, shown: str) -> bytes:
    if not path.exists():
        raise InvalidInput(field, shown, _("no such file"))
    if path.is_dir():
        raise InvalidInput(field, shown, _("is a directory, not an image file"))
    if not path.is_file():  # a FIFO or a device: reading it could block for ever
        raise InvalidInput(field, shown, _("not a regular file (a pipe or a device?)"))
    try:
        return path.read_bytes()
    except OSError as exc:
        why = exc.strerror or exc
        raise InvalidInput(field, shown, _("cannot read: {why}").format(why=why)) from None


def _not_an_image(data: bytes) -> str:
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftypavif"):
        return _("HEIC/AVIF is not supported here; export it as JPEG or PNG")
    if not data:
        return _("empty file, not an image")
    return _("not an image (or a format that cannot be read)")


def _prepare_one(field: str, given: str | Path, profile: ModelProfile) -> PreparedReference:
    """One reference image, checked and made to fit; Pillow's decompression-bomb warning
    (a few kB that decode to gigabytes) is an error here, as it is for results."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _prepare_unguarded(field, given, profile)
    except Image.DecompressionBombWarning as exc:
        raise InvalidInput(
            field, str(given), _("too many pixels to decode safely ({why})").format(why=exc)
        ) from None


def _prepare_unguarded(field: str, given: str | Path, profile: ModelProfile) -> PreparedReference:
    shown = str(given)
    data = _read(field, Path(given), shown)
    rule = profile.references
    try:
        with Image.open(io.BytesIO(data)) as opened:
            fmt = str(opened.format)
            orientation = opened.getexif().get(_ORIENTATION_TAG, 1)
            mode = opened.mode
            width, height = opened.size
            _check_aspect(field, shown, width, height, profile)
            as_is = (
                fmt in rule.formats
                and orientation in (1, None)
                and mode != "CMYK"
                and reference_problem(profile, inspect_image(data)) is None
            )
            if as_is:
                return PreparedReference(shown, data, fmt, width, height, converted=False)
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            notes: list[str] = []
            if orientation not in (1, None):
                notes.append("EXIF orientation applied")
            out = _normalise(image, fmt, profile, notes)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        reason = _not_an_image(data) if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise InvalidInput(field, shown, reason) from None
    except _CannotFit as exc:
        raise InvalidInput(field, shown, str(exc)) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            field, shown, _("damaged or unreadable image ({why})").format(why=exc)
        ) from None
    info = inspect_image(out)
    problem = reference_problem(profile, info)
    if problem:  # Should not happen: normalising is meant to guarantee a fit.
        raise InvalidInput(
            field, shown, _("could not be made to fit: {problem}").format(problem=problem)
        )
    return PreparedReference(
        shown,
        out,
        info.format,
        info.width,
        info.height,
        converted=True,
        note="; ".join(notes) or None,
    )


def _check_aspect(field: str, shown: str, width: int, height: int, profile: ModelProfile) -> None:
    limit = profile.references.max_aspect
    long, short = max(width, height), max(1, min(width, height))
    if long / short <= limit:
        return
    fit = math.floor(short * limit)
    example = f"{fit}x{short}" if width >= height else f"{short}x{fit}"
    raise InvalidInput(
        field,
        shown,
        _(
            "{width}x{height} is {ratio:.2f}:1; {model} takes at most {limit:g}:1 "
            "and cropping automatically could cut the character out"
        ).format(
            width=width, height=height, ratio=long / short, model=profile.req_key, limit=limit
        ),
        _("crop it to at most {limit:g}:1, e.g. {example}").format(limit=limit, example=example),
    )


def _has_transparency(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        extrema = image.getchannel("A").getextrema()
        return isinstance(extrema[0], int | float) and extrema[0] < 255
    return "transparency" in image.info


def _to_mode(image: Image.Image, fmt: str, notes: list[str]) -> Image.Image:
    """A mode the target format stores faithfully: L/RGB for JPEG, L/LA/RGB/RGBA for PNG."""
    mode = image.mode
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16/32-bit grey: scale to 8 bits instead of clipping everything to white.
        hi = image.getextrema()[1]
        scale = 255 / hi if isinstance(hi, int | float) and hi > 255 else 1.0
        image = image.convert("I").point(lambda v: v * scale).convert("L")
    elif mode == "F":
        image = image.convert("L")
    alpha = fmt == "PNG" and _has_transparency(image)
    grey = image.mode in ("1", "L", "LA", "La")
    if alpha:
        return image.convert("LA" if grey else "RGBA")
    if _has_transparency(image):
        notes.append("transparency flattened onto white")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if grey else "RGB")


def _encode(image: Image.Image, fmt: str, quality: int, icc: bytes | None) -> bytes:
    buf = io.BytesIO()
    if image.mode not in ("RGB", "RGBA"):
        icc = None
    if fmt == "JPEG":
        image.save(buf, "JPEG", quality=quality, optimize=True, icc_profile=icc)
    else:
        image.save(buf, "PNG", optimize=False, icc_profile=icc)
    return buf.getvalue()


def _fit_side(width: int, height: int, max_side: int, max_aspect: float) -> tuple[int, int]:
    """Scale so the long side is at most `max_side`, without rounding past `max_aspect`."""
    long, short = max(width, height), min(width, height)
    if long <= max_side:
        return width, height
    new_long = max_side
    new_short = max(1, round(short * max_side / long))
    if new_long / new_short > max_aspect:
        new_short = math.ceil(new_long / max_aspect)
    return (new_long, new_short) if width >= height else (new_short, new_long)


def _normalise(image: Image.Image, src_fmt: str, profile: ModelProfile, notes: list[str]) -> bytes:
    rule = profile.references
    if src_fmt in rule.formats:
        fmt = src_fmt
    else:
        fmt = "PNG" if _has_transparency(image) and "PNG" in rule.formats else "JPEG"
        shown = {"MPO": "MPO (multi-picture JPEG)"}.get(src_fmt, src_fmt)
        notes.append(f"{shown} converted to {fmt}")
    # An RGB colour profile stays valid only while the pixels stay RGB.
    icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
    image = _to_mode(image, fmt, notes)

    width, height = image.size
    new_size = _fit_side(width, height, rule.max_side, rule.max_aspect)
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {width}x{height} to {new_size[0]}x{new_size[1]}")
    data = _encode(image, fmt, JPEG_QUALITY, icc)
    if len(data) <= rule.max_bytes:
        return data
    return _shrink(image, fmt, rule.max_bytes, rule.max_aspect, icc, len(data), notes)


def _shrink(
    image: Image.Image,
    fmt: str,
    max_bytes: int,
    max_aspect: float,
    icc: bytes | None,
    nbytes: int,
    notes: list[str],
) -> bytes:
    """Lower JPEG quality first (cheap, keeps detail), then fewer pixels, until it fits."""
    before = f"{nbytes / MB:.1f} MB {fmt}"
    if fmt != "JPEG":
        image = _to_mode(image, "JPEG", notes)
    start = image.size
    current = image
    while True:
        for quality in _SHRINK_QUALITIES:
            data = _encode(current, "JPEG", quality, icc)
            if len(data) <= max_bytes:
                what = f"re-encoded {before} as JPEG quality {quality}"
                if current.size != start:
                    what += f" at {current.width}x{current.height} (from {start[0]}x{start[1]})"
                notes.append(f"{what} to stay under {max_bytes / MB:.2f} MB")
                return data
        if min(current.size) <= _MIN_SIDE:
            raise _CannotFit(
                _("{before} cannot be compressed under {mb:.2f} MB").format(
                    before=before, mb=max_bytes / MB
                )
            )
        # Bytes scale roughly with area; aim a little under and never shrink by less than 10%.
        factor = min(0.9, max(0.3, math.sqrt(max_bytes / len(data)) * 0.95))
        target = _fit_side(
            current.width,
            current.height,
            max(_MIN_SIDE, math.floor(max(current.size) * factor)),
            max_aspect,
        )
        target = (max(1, target[0]), max(1, target[1]))
        current = image.resize(target, Image.Resampling.LANCZOS)
