"""Output sizes as the research describes them (issue 10 finding 4), as pure rules."""

from __future__ import annotations

import pytest

from asyncimg.emulator.shapes import MODEL_RATIOS, i2i_output, output_size, prompt_ratio
from asyncimg.protocol.models import get_profile

V40 = get_profile("jimeng_t2i_v40")


@pytest.mark.parametrize(
    ("given", "out"),
    [((1328, 1328), (1328, 1328)), ((600, 900), (608, 896)), ((2016, 864), (1536, 656)),
     ((2016, 2016), (1536, 1536)), ((513, 1000), (512, 1008))],
)  # fmt: skip
def test_i2i_nearest_multiple_of_16_within_512_1536(
    given: tuple[int, int], out: tuple[int, int]
) -> None:
    assert i2i_output(*given) == out
    assert all(w % 16 == 0 and 512 <= w <= 1536 for w in out)


def test_i2i_default_is_1328() -> None:
    assert output_size(get_profile("jimeng_i2i_v30"), {"prompt": "p"}) == (1328, 1328)


def test_seededit_follows_the_input() -> None:
    profile = get_profile("seededit_v3.0")
    assert output_size(profile, {"prompt": "p"}, [(640, 480)]) == (640, 480)


def test_v40_width_height_win() -> None:
    assert output_size(V40, {"prompt": "16:9", "width": 2048, "height": 2048}) == (2048, 2048)


@pytest.mark.parametrize("prompt", ["a fox", "一只猫", "city at night", "x", "portrait"])
def test_v40_model_chooses_a_ratio_for_the_area(prompt: str) -> None:
    for area in (1024 * 1024, 2048 * 2048, 4096 * 4096):
        w, h = output_size(V40, {"prompt": prompt, "size": area})
        assert abs(w * h - area) / area < 0.02
        assert any(abs(w / h - r) < 0.02 for r in MODEL_RATIOS)


def test_v40_ratio_sources() -> None:
    assert prompt_ratio("a poster, 9：16") == pytest.approx(9 / 16)
    w, h = output_size(V40, {"prompt": "a fox"}, [(1000, 500)])
    assert w / h == pytest.approx(2, rel=0.02)  # the reference's shape
    w, h = output_size(V40, {"prompt": "16:9", "max_ratio": 1.5})
    assert w / h == pytest.approx(1.5, rel=0.02)  # clamped to max_ratio


def test_v40_does_not_always_draw_squares() -> None:
    shapes = {output_size(V40, {"prompt": f"frame {n}"}) for n in range(20)}
    assert any(w != h for w, h in shapes)
