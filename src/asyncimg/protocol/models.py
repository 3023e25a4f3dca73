"""Model profiles (spec §3): what each req_key accepts, checked before anything is sent.

The client and the emulator validate with this one table, so they cannot drift apart.
Every violation raises :class:`InvalidInput` naming the field, the value and the rule.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from asyncimg.protocol.errors import InvalidInput

# The docs' "15MB" / "4.7MB": decimal megabytes, the stricter reading (research §6 #15).
MB = 1000 * 1000


@dataclass(frozen=True)
class SizeRule:
    """Output size rules. Area bounds are in px²; side bounds apply to each of width/height."""

    default: tuple[int, int]
    min_area: int | None = None
    max_area: int | None = None
    min_ratio: float = 1 / 3
    max_ratio: float = 3.0
    min_side: int | None = None
    max_side: int | None = None
    recommended: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class ReferenceRule:
    """Reference (input) images: how many, which formats, how large."""

    min_count: int
    max_count: int
    formats: frozenset[str] = frozenset({"JPEG", "PNG"})
    max_bytes: int = 15 * MB
    max_side: int = 4096
    max_aspect: float = 3.0


@dataclass(frozen=True)
class ModelProfile:
    req_key: str
    fields: frozenset[str]
    size: SizeRule
    references: ReferenceRule
    prompt_max: int = 800
    output_format: str = "PNG"
    max_outputs: int = 1
    has_size_field: bool = False

    @property
    def takes_references(self) -> bool:
        return self.references.max_count > 0


def _landscape_and_portrait(sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for w, h in sizes:
        out.append((w, h))
        if w != h:
            out.append((h, w))
    return tuple(out)


# 2K first: a suggestion prefers the 2K size of the requested ratio.
_V40_RECOMMENDED = _landscape_and_portrait(
    [
        (2048, 2048),
        (2304, 1728),
        (2496, 1664),
        (2560, 1440),
        (3024, 1296),
        (4096, 4096),
        (4694, 3520),
        (4992, 3328),
        (5404, 3040),
        (6198, 2656),
        (1024, 1024),
    ]
)

_IMAGE_FIELDS = frozenset({"image_urls", "binary_data_base64"})
#: Callback mode (v40, research S3): `callback_url` plus what applies to the callback only.
CALLBACK_FIELDS = frozenset({"callback_url", "return_url", "logo_info", "aigc_meta"})
_JSON_STRING_FIELDS = ("logo_info", "aigc_meta")

_T2I_V3 = dict(
    fields=frozenset({"prompt", "use_pre_llm", "seed", "width", "height"}),
    size=SizeRule(default=(1328, 1328), min_area=512 * 512, max_area=2048 * 2048),
    references=ReferenceRule(min_count=0, max_count=0),
    output_format="JPEG",
)

_EDIT_REFERENCES = ReferenceRule(min_count=1, max_count=1, max_bytes=int(4.7 * MB), max_side=4096)

# jimeng_i2i_v30 (S5): default 1328x1328; the output is the requested size's nearest
# multiple of 16 within [512, 1536].
_I2I = dict(
    fields=frozenset({"prompt", "seed", "scale", "width", "height"}) | _IMAGE_FIELDS,
    size=SizeRule(default=(1328, 1328), min_side=512, max_side=2016, min_ratio=0, max_ratio=1e9),
    references=_EDIT_REFERENCES,
    output_format="JPEG",
)

# seededit_v3.0 (S17): no width/height anywhere; the output follows the input image.
_SEEDEDIT = dict(
    fields=frozenset({"prompt", "seed", "scale"}) | _IMAGE_FIELDS,
    size=SizeRule(default=(1024, 1024), min_ratio=0, max_ratio=1e9),
    references=_EDIT_REFERENCES,
    output_format="JPEG",
)

PROFILES: dict[str, ModelProfile] = {
    "jimeng_t2i_v40": ModelProfile(
        req_key="jimeng_t2i_v40",
        fields=frozenset(
            {"prompt", "size", "width", "height", "scale", "force_single", "min_ratio", "max_ratio"}
        )
        | _IMAGE_FIELDS
        | CALLBACK_FIELDS,
        size=SizeRule(
            default=(2048, 2048),
            min_area=1024 * 1024,
            max_area=4096 * 4096,
            recommended=_V40_RECOMMENDED,
        ),
        references=ReferenceRule(min_count=0, max_count=10),
        output_format="PNG",
        max_outputs=15,
        has_size_field=True,
    ),
    "jimeng_t2i_v31": ModelProfile(req_key="jimeng_t2i_v31", **_T2I_V3),  # type: ignore[arg-type]
    "jimeng_t2i_v30": ModelProfile(req_key="jimeng_t2i_v30", **_T2I_V3),  # type: ignore[arg-type]
    "jimeng_i2i_v30": ModelProfile(req_key="jimeng_i2i_v30", **_I2I),  # type: ignore[arg-type]
    "seededit_v3.0": ModelProfile(req_key="seededit_v3.0", **_SEEDEDIT),  # type: ignore[arg-type]
}


def max_output_pixels(req_key: str | None = None) -> int:
    """The largest image the model (every model, if None or unknown) can return, in pixels:
    its largest area, or its longest side squared. Decoded results are held to this bound
    (with :data:`PIXEL_SLACK`), so a small file that decodes to a huge image is refused."""
    profiles = [PROFILES[req_key]] if req_key in PROFILES else list(PROFILES.values())
    largest = 0
    for profile in profiles:
        rule = profile.size
        if rule.max_area:
            largest = max(largest, rule.max_area)
        elif rule.max_side:
            largest = max(largest, rule.max_side * rule.max_side)
        else:  # the output follows the input (SeedEdit): as large as a reference may be
            side = profile.references.max_side or 0
            largest = max(largest, rule.default[0] * rule.default[1], side * side)
    return largest


#: Room above the model's documented largest output before a decoded image is refused.
PIXEL_SLACK = 1.25


def default_image_cap() -> int:
    """Bytes an image download may have (`max_image_mb`): the largest output of any model
    as an uncompressed RGBA PNG (4 bytes a pixel), plus 1 MB for headers and metadata."""
    return max_output_pixels() * 4 + MB


def default_reply_cap() -> int:
    """Bytes a JSON reply may have (`max_reply_mb`): one largest image inline as base64
    (4/3 of its bytes) plus 1 MB; a poll asks for URLs, so real replies are far smaller."""
    return default_image_cap() * 4 // 3 + MB


def get_profile(req_key: str) -> ModelProfile:
    try:
        return PROFILES[req_key]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise InvalidInput(
            "req_key", req_key, f"unknown model; known: {known}", code=50400
        ) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def suggest_size(profile: ModelProfile, width: int, height: int) -> tuple[int, int] | None:
    """A valid size close to width×height: the recommended size of the same ratio, else scaled."""
    rule = profile.size
    if width <= 0 or height <= 0:
        return rule.default
    ratio = width / height
    for rw, rh in rule.recommended:
        if abs(rw / rh - ratio) <= 0.01 * ratio and _size_problem(profile, rw, rh, None) is None:
            return (rw, rh)
    area = width * height
    scale = 1.0
    if rule.min_area and area < rule.min_area:
        scale = math.sqrt(rule.min_area / area)
    elif rule.max_area and area > rule.max_area:
        scale = math.sqrt(rule.max_area / area)
    w, h = float(width) * scale, float(height) * scale
    if rule.min_side:
        f = max(1.0, rule.min_side / min(w, h))
        w, h = w * f, h * f
    if rule.max_side:
        f = min(1.0, rule.max_side / max(w, h))
        w, h = w * f, h * f
    # Multiples of 8: rounded up first (to clear a minimum), then down (to stay under a maximum).
    for rounder in (math.ceil, math.floor):
        cand = (int(rounder(w / 8) * 8), int(rounder(h / 8) * 8))
        if _size_problem(profile, cand[0], cand[1], None) is None:
            return cand
    return None


def _size_problem(
    profile: ModelProfile, width: int, height: int, ratio_bounds: tuple[float, float] | None
) -> str | None:
    rule = profile.size
    if width <= 0 or height <= 0:
        return "must be positive"
    area = width * height
    if rule.min_area and area < rule.min_area:
        return f"area {area} px² is below the minimum {rule.min_area} ({_side(rule.min_area)}²)"
    if rule.max_area and area > rule.max_area:
        return f"area {area} px² is above the maximum {rule.max_area} ({_side(rule.max_area)}²)"
    for side in (width, height):
        if rule.min_side and side < rule.min_side:
            return f"each side must be at least {rule.min_side}"
        if rule.max_side and side > rule.max_side:
            return f"each side must be at most {rule.max_side}"
    lo, hi = ratio_bounds or (rule.min_ratio, rule.max_ratio)
    ratio = width / height
    if ratio < lo - 1e-9 or ratio > hi + 1e-9:
        return f"aspect ratio {ratio:.3g} is outside [{lo:.3g}, {hi:.3g}]"
    return None


def _side(area: int) -> int:
    return math.isqrt(area)


def unknown_fields(profile: ModelProfile, fields: Mapping[str, object]) -> list[str]:
    """The names in `fields` the model's documentation does not list."""
    return [name for name in fields if name not in profile.fields and name not in _IMAGE_FIELDS]


def validate_fields(
    req_key: str, fields: Mapping[str, object], *, ignore_unknown: bool = False
) -> ModelProfile:
    """Check a submit body's fields (without `req_key`) against the model's profile.

    Unknown names are refused unless `ignore_unknown` (the real service most likely
    ignores them; asyncimg refuses them locally so a typo never goes out).
    Reference image *contents* are checked separately by :func:`validate_reference`.
    """
    profile = get_profile(req_key)
    unknown = [] if ignore_unknown else unknown_fields(profile, fields)
    if unknown:
        allowed = ", ".join(sorted(profile.fields))
        raise InvalidInput(
            unknown[0],
            fields[unknown[0]],
            f"{req_key} does not take this field; it takes: {allowed}",
        )
    _check_prompt(profile, fields)
    _check_images(profile, fields)
    _check_scalars(fields)
    _check_size(profile, fields)
    _check_callback(fields)
    return profile


def _check_callback(fields: Mapping[str, object]) -> None:
    """`callback_url` an http(s) URL; `return_url` a boolean (or its JSON text, the API's
    "JSON string" wording is ambiguous for it); `logo_info` / `aigc_meta` JSON objects
    written as strings; all three only with a `callback_url`."""
    extras = [name for name in ("return_url", *_JSON_STRING_FIELDS) if name in fields]
    if "callback_url" not in fields:
        if extras:
            name = extras[0]
            raise InvalidInput(
                name,
                fields[name],
                "applies only to callback mode (with callback_url); polled results take "
                "their own options",
            )
        return
    url = fields["callback_url"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("callback_url", url, "must be an http(s) URL the service can POST to")
    flag = fields.get("return_url", False)
    if not isinstance(flag, bool) and flag not in ("true", "false"):
        raise InvalidInput(
            "return_url", fields["return_url"], 'must be true or false (or "true" / "false")'
        )
    for name in _JSON_STRING_FIELDS:
        if name not in fields:
            continue
        value = fields[name]
        try:
            parsed = json.loads(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidInput(
                name, value, "must be a JSON object written as a string (the API's format)"
            )


def _check_prompt(profile: ModelProfile, fields: Mapping[str, object]) -> None:
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt", prompt, "a non-empty string is required")
    if len(prompt) > profile.prompt_max:
        raise InvalidInput(
            "prompt",
            prompt,
            f"{len(prompt)} characters; {profile.req_key} takes at most {profile.prompt_max}",
            "shorten the prompt or the style preset",
        )


def _check_images(profile: ModelProfile, fields: Mapping[str, object]) -> None:
    present = [f for f in ("image_urls", "binary_data_base64") if f in fields]
    if len(present) == 2:
        raise InvalidInput(
            "image_urls", fields["image_urls"], "give image_urls or binary_data_base64, not both"
        )
    images: object = fields[present[0]] if present else []
    name = present[0] if present else "binary_data_base64"
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise InvalidInput(name, images, "must be a list of non-empty strings")
    rule = profile.references
    if not rule.min_count <= len(images) <= rule.max_count:
        if rule.max_count == 0:
            text = f"{profile.req_key} takes no reference images"
            hint = "use jimeng_t2i_v40 for character references"
        else:
            text = (
                f"{len(images)} images; {profile.req_key} takes "
                f"{rule.min_count} to {rule.max_count}"
            )
            hint = None
        raise InvalidInput(name, f"{len(images)} images", text, hint)


def _check_scalars(fields: Mapping[str, object]) -> None:
    if "scale" in fields:
        v = fields["scale"]
        if not _is_number(v) or not 0 <= float(v) <= 1:  # type: ignore[arg-type]
            raise InvalidInput("scale", v, "must be a number within [0, 1]")
    for flag in ("force_single", "use_pre_llm"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise InvalidInput(flag, fields[flag], "must be true or false")
    if "seed" in fields and not _is_int(fields["seed"]):
        raise InvalidInput("seed", fields["seed"], "must be an integer (-1 for random)")
    for name in ("min_ratio", "max_ratio"):
        if name in fields:
            v = fields[name]
            if not _is_number(v) or not 1 / 16 <= float(v) < 16:  # type: ignore[arg-type]
                raise InvalidInput(name, v, "must be a number within [1/16, 16)")


def _check_size(profile: ModelProfile, fields: Mapping[str, object]) -> None:
    has_w, has_h = "width" in fields, "height" in fields
    if has_w != has_h:
        given = "width" if has_w else "height"
        raise InvalidInput(given, fields[given], "width and height go together or not at all")
    lo = float(fields.get("min_ratio", profile.size.min_ratio))  # type: ignore[arg-type]
    hi = float(fields.get("max_ratio", profile.size.max_ratio))  # type: ignore[arg-type]
    if has_w:
        w, h = fields["width"], fields["height"]
        for name, v in (("width", w), ("height", h)):
            if not _is_int(v):
                raise InvalidInput(name, v, "must be an integer number of pixels")
        assert isinstance(w, int) and isinstance(h, int)
        problem = _size_problem(profile, w, h, (lo, hi))
        if problem:
            suggestion = suggest_size(profile, w, h)
            hint = f"try {suggestion[0]}x{suggestion[1]}" if suggestion else None
            raise InvalidInput("width x height", f"{w}x{h}", problem, hint)
    if "size" in fields and profile.has_size_field:
        v = fields["size"]
        rule = profile.size
        if not _is_int(v):
            raise InvalidInput("size", v, "must be an integer area in px²")
        assert isinstance(v, int)
        if (rule.min_area and v < rule.min_area) or (rule.max_area and v > rule.max_area):
            raise InvalidInput(
                "size", v, f"area must be within [{rule.min_area}, {rule.max_area}] px²"
            )


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    nbytes: int


def inspect_image(data: bytes) -> ImageInfo:
    """Format and pixel size from the header; raises ValueError if it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return ImageInfo(str(img.format), img.width, img.height, len(data))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image ({exc})") from None


def reference_problem(profile: ModelProfile, info: ImageInfo) -> str | None:
    """Why this image cannot be a reference for the model, or None."""
    rule = profile.references
    if info.format not in rule.formats:
        return f"format {info.format}; {profile.req_key} takes {' or '.join(sorted(rule.formats))}"
    if info.nbytes > rule.max_bytes:
        return f"{info.nbytes / MB:.1f} MB; at most {rule.max_bytes / MB:.1f} MB"
    if max(info.width, info.height) > rule.max_side:
        return f"{info.width}x{info.height} px; at most {rule.max_side} px a side"
    aspect = max(info.width, info.height) / max(1, min(info.width, info.height))
    if aspect > rule.max_aspect:
        return f"aspect ratio {aspect:.2f}:1; at most {rule.max_aspect:g}:1"
    return None


def validate_reference_base64(profile: ModelProfile, index: int, encoded: str) -> ImageInfo:
    """Decode and check one `binary_data_base64` entry (used by the emulator and by tests)."""
    field = f"binary_data_base64[{index}]"
    if encoded.startswith("data:"):
        raise InvalidInput(field, encoded[:30], "raw base64 only, without a data: prefix")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, encoded[:30], "is not valid base64") from None
    try:
        info = inspect_image(data)
    except ValueError as exc:
        raise InvalidInput(field, f"{len(data)} bytes", str(exc)) from None
    problem = reference_problem(profile, info)
    if problem:
        raise InvalidInput(field, f"{info.width}x{info.height} {info.format}", problem)
    return info
