"""Model profiles: local validation names the field, value and rule, and suggests a fix."""

from __future__ import annotations

import base64
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from asyncimg.protocol import models
from asyncimg.protocol.errors import InvalidInput


def _png(w: int, h: int, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), "red").save(buf, fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_all_five_profiles_exist_and_v40_is_default() -> None:
    assert set(models.PROFILES) == {
        "jimeng_t2i_v40", "jimeng_t2i_v31", "jimeng_t2i_v30", "jimeng_i2i_v30", "seededit_v3.0",
    }  # fmt: skip
    from asyncimg.constants import DEFAULT_REQ_KEY

    assert DEFAULT_REQ_KEY == "jimeng_t2i_v40"


def test_720x1280_suggests_the_2k_9_16_size() -> None:
    with pytest.raises(InvalidInput) as info:
        models.validate_fields("jimeng_t2i_v40", {"prompt": "p", "width": 720, "height": 1280})
    err = info.value
    assert err.field == "width x height" and err.value == "720x1280"
    assert "below the minimum" in err.rule
    assert err.suggestion == "try 1440x2560"


def test_valid_v40_request_passes() -> None:
    profile = models.validate_fields(
        "jimeng_t2i_v40",
        {"prompt": "一只狐狸", "width": 1440, "height": 2560, "scale": 0.5, "force_single": True,
         "binary_data_base64": [_png(8, 8)]},
    )  # fmt: skip
    assert profile.output_format == "PNG"


@pytest.mark.parametrize(
    ("req_key", "fields", "field", "words"),
    [
        ("jimeng_t2i_v40", {"prompt": ""}, "prompt", "non-empty"),
        ("jimeng_t2i_v40", {"prompt": "长" * 801}, "prompt", "at most 800"),
        ("jimeng_t2i_v40", {"prompt": "p", "width": 2048}, "width", "together"),
        ("jimeng_t2i_v40", {"prompt": "p", "height": 2048}, "height", "together"),
        ("jimeng_t2i_v40", {"prompt": "p", "width": 5000, "height": 5000}, "width x height",
         "above the maximum"),
        ("jimeng_t2i_v40", {"prompt": "p", "width": 4000, "height": 1000}, "width x height",
         "aspect ratio"),
        ("jimeng_t2i_v40", {"prompt": "p", "size": 100}, "size", "within"),
        ("jimeng_t2i_v40", {"prompt": "p", "scale": 1.5}, "scale", "[0, 1]"),
        ("jimeng_t2i_v40", {"prompt": "p", "force_single": "yes"}, "force_single", "true or false"),
        ("jimeng_t2i_v40", {"prompt": "p", "min_ratio": 20}, "min_ratio", "1/16"),
        ("jimeng_t2i_v40", {"prompt": "p", "colour": "red"}, "colour", "does not take"),
        ("jimeng_t2i_v40", {"prompt": "p", "image_urls": ["u"], "binary_data_base64": ["b"]},
         "image_urls", "not both"),
        ("jimeng_t2i_v40", {"prompt": "p", "binary_data_base64": ["x"] * 11},
         "binary_data_base64", "0 to 10"),
        ("jimeng_t2i_v31", {"prompt": "p", "binary_data_base64": ["x"]}, "binary_data_base64",
         "takes no reference"),
        ("jimeng_t2i_v31", {"prompt": "p", "width": 256, "height": 256}, "width x height",
         "below the minimum"),
        ("jimeng_t2i_v31", {"prompt": "p", "seed": 1.5}, "seed", "integer"),
        ("jimeng_i2i_v30", {"prompt": "p"}, "binary_data_base64", "1 to 1"),
        ("jimeng_i2i_v30", {"prompt": "p", "image_urls": ["u"], "width": 3000, "height": 1000},
         "width x height", "at most 2016"),
        # Research finding 4 (S17): SeedEdit takes no width/height; its output follows the input.
        ("seededit_v3.0", {"prompt": "p", "image_urls": ["u"], "width": 1024, "height": 1024},
         "width", "does not take"),
        ("nope_model", {"prompt": "p"}, "req_key", "unknown model"),
    ],
)  # fmt: skip
def test_violations_name_field_and_rule(
    req_key: str, fields: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        models.validate_fields(req_key, fields)
    assert info.value.field == field
    assert words in str(info.value)


def test_unknown_model_is_a_permission_code() -> None:
    with pytest.raises(InvalidInput) as info:
        models.get_profile("nope")
    assert info.value.code == 50400


def test_reference_checks() -> None:
    p = models.get_profile("jimeng_t2i_v40")
    assert models.validate_reference_base64(p, 0, _png(100, 100)).format == "PNG"
    with pytest.raises(InvalidInput, match="aspect ratio"):
        models.validate_reference_base64(p, 0, _png(400, 100))
    with pytest.raises(InvalidInput, match="takes JPEG or PNG"):
        models.validate_reference_base64(p, 1, _png(10, 10, "BMP"))
    with pytest.raises(InvalidInput, match="valid base64"):
        models.validate_reference_base64(p, 0, "!!!")
    with pytest.raises(InvalidInput, match="data: prefix"):
        models.validate_reference_base64(p, 0, "data:image/png;base64,AAAA")
    with pytest.raises(InvalidInput, match="not a readable image"):
        models.validate_reference_base64(p, 0, base64.b64encode(b"hello").decode())


@given(w=st.integers(64, 8000), h=st.integers(64, 8000))
def test_suggestions_are_always_valid(w: int, h: int) -> None:
    for key in ("jimeng_t2i_v40", "jimeng_t2i_v31", "jimeng_i2i_v30"):
        profile = models.get_profile(key)
        suggestion = models.suggest_size(profile, w, h)
        if suggestion is None:
            continue
        fields: dict[str, object] = {"prompt": "p", "width": suggestion[0], "height": suggestion[1]}
        if profile.references.min_count:
            fields["image_urls"] = ["u"]
        models.validate_fields(key, fields)
