"""What size the service draws: pure rules from the research (§1, findings 4 and 5).

- `jimeng_t2i_v40`: width/height when given; otherwise the model picks the aspect ratio
  (from a ratio written in the prompt, else the first reference image, else its own choice)
  within [min_ratio, max_ratio], for the area `size` (default 2048²);
- `jimeng_i2i_v30`: the requested (or default 1328x1328) size, scaled into [512, 1536] and
  rounded to multiples of 16;
- `seededit_v3.0`: the input image's size;
- the 3.x text-to-image models: exactly the requested size, else their default.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence

from asyncimg.protocol.models import ModelProfile

V40_DEFAULT_AREA = 2048 * 2048
# The ratios of the documented recommended sizes (1:1, 4:3, 3:2, 16:9, 21:9) and portraits.
MODEL_RATIOS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16, 21 / 9, 9 / 21)
I2I_MIN_SIDE, I2I_MAX_SIDE, I2I_STEP = 512, 1536, 16
_PROMPT_RATIO = re.compile(r"(\d{1,2})\s*[:：]\s*(\d{1,2})")


def output_size(
    profile: ModelProfile,
    fields: Mapping[str, object],
    references: Sequence[tuple[int, int]] = (),
) -> tuple[int, int]:
    """The (width, height) the service returns for this submit body."""
    w, h = fields.get("width"), fields.get("height")
    given = (w, h) if isinstance(w, int) and isinstance(h, int) else None
    if profile.has_size_field:
        if given:
            return given
        return model_chosen(profile, fields, references)
    if profile.req_key == "seededit_v3.0":
        return references[0] if references else profile.size.default
    if profile.req_key == "jimeng_i2i_v30":
        return i2i_output(*(given or profile.size.default))
    return given or profile.size.default


def model_chosen(
    profile: ModelProfile, fields: Mapping[str, object], references: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """v40 with only an area (or nothing): the ratio comes from the prompt, the references,
    or the model itself (a stable pick from the prompt's hash), within the allowed range."""
    area = fields.get("size")
    area = area if isinstance(area, int) and not isinstance(area, bool) else V40_DEFAULT_AREA
    prompt = fields.get("prompt")
    text = prompt if isinstance(prompt, str) else ""
    ratio = prompt_ratio(text)
    if ratio is None and references:
        rw, rh = references[0]
        ratio = rw / rh if rh else 1.0
    if ratio is None:
        digest = hashlib.sha256(text.encode()).digest()
        ratio = MODEL_RATIOS[digest[0] % len(MODEL_RATIOS)]
    lo = _number(fields.get("min_ratio"), profile.size.min_ratio)
    hi = _number(fields.get("max_ratio"), profile.size.max_ratio)
    ratio = min(max(ratio, lo), hi)
    width = max(I2I_STEP, round(math.sqrt(area * ratio) / I2I_STEP) * I2I_STEP)
    height = max(I2I_STEP, round(area / width / I2I_STEP) * I2I_STEP)
    return width, height


def prompt_ratio(prompt: str) -> float | None:
    """A ratio written in the prompt ("16:9", "9：16"), as width / height."""
    match = _PROMPT_RATIO.search(prompt)
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        return None
    return int(match[1]) / int(match[2])


def i2i_output(width: int, height: int) -> tuple[int, int]:
    """The requested size scaled to fit [512, 1536] and rounded to multiples of 16."""
    scale = min(1.0, I2I_MAX_SIDE / max(width, height))

    def side(value: float) -> int:
        rounded = int(value / I2I_STEP + 0.5) * I2I_STEP  # half up
        return min(I2I_MAX_SIDE, max(I2I_MIN_SIDE, rounded))

    return side(width * scale), side(height * scale)


def _number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default
