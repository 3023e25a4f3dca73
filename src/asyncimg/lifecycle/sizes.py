"""A frame's `size` as the user writes it, and the submit fields it stands for.

`jimeng_t2i_v40` takes an output size three ways (research §1): width and height
(`1440x2560`), an area in px² (`4194304`, or `2K` = 2048², `4K` = 4096², `1K` = 1024²)
with the model choosing the aspect ratio, or nothing at all (`auto`: the model chooses
both, 2048² by default). The other models take `WIDTHxHEIGHT` or `auto` (their default).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asyncimg.i18n import N_, _
from asyncimg.lifecycle.config import parse_size
from asyncimg.protocol import models
from asyncimg.protocol.errors import InvalidInput

AREAS = {"1K": 1024 * 1024, "2K": 2048 * 2048, "4K": 4096 * 4096}
AUTO = "auto"
FORMS = N_("WIDTHxHEIGHT (e.g. 1440x2560), or for jimeng_t2i_v40 an area in px², 2K or 4K; or auto")
_SIZE_FIELDS = ("width", "height", "size")


def normalise(value: object) -> str:
    """Canonical text for a size: '1440x2560', an area ('4194304') or 'auto'.
    Raises InvalidInput for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == AUTO:
            return AUTO
        if text.upper() in AREAS:
            return str(AREAS[text.upper()])
        if text.isdigit() and int(text) > 0:
            return str(int(text))
        try:
            width, height = parse_size(text)
        except InvalidInput:
            pass
        else:
            return f"{width}x{height}"
    raise InvalidInput("size", value, _("is not {forms}").format(forms=_(FORMS)))


def is_area(text: str) -> bool:
    return text.isdigit()


def size_fields(value: object, req_key: str) -> dict[str, int]:
    """The submit fields for `value` on `req_key`: width/height, `size`, or none."""
    text = normalise(value)
    if text == AUTO:
        return {}
    if is_area(text):
        if not models.get_profile(req_key).has_size_field:
            raise InvalidInput(
                "size",
                value,
                _(
                    "{model} takes WIDTHxHEIGHT (or auto); an area, 2K or 4K is for jimeng_t2i_v40"
                ).format(model=req_key),
            )
        return {"size": int(text)}
    width, height = parse_size(text)
    return {"width": width, "height": height}


def applies(value: object, req_key: str) -> bool:
    """Whether a configured default size fits this model (a default never makes a frame
    invalid: SeedEdit takes no size, and only v40 takes an area)."""
    profile = models.get_profile(req_key)
    try:
        fields = size_fields(value, req_key)
    except InvalidInput:
        return False
    return all(name in profile.fields for name in fields)


def with_size(params: Mapping[str, Any], value: object, req_key: str) -> dict[str, Any]:
    """`params` with its output size replaced by `value`'s."""
    kept = {k: v for k, v in params.items() if k not in _SIZE_FIELDS}
    return {**kept, **size_fields(value, req_key)}


def describe(params: Mapping[str, Any], req_key: str) -> str:
    """The output size a frame asks for, in one short phrase."""
    width, height, area = params.get("width"), params.get("height"), params.get("size")
    if isinstance(width, int) and isinstance(height, int):
        return f"{width}x{height}"
    profile = models.get_profile(req_key)
    if profile.has_size_field:
        shown = area if isinstance(area, int) else profile.size.default[0] ** 2
        return f"area {shown} px² (the model picks the ratio)"
    if req_key == "seededit_v3.0":
        return "the input image's size"
    width, height = profile.size.default
    return f"{width}x{height} (model default)"
