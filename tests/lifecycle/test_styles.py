"""Style presets compose `full_prompt` without touching the user's text."""

from __future__ import annotations

import pytest

from asyncimg.lifecycle.styles import (
    BUILTIN_PRESETS,
    StylePreset,
    compose_full_prompt,
    resolve_style,
)
from asyncimg.protocol.errors import InvalidInput

PROMPT = "少女站在雨中的街头，回头微笑 {not a placeholder} \u200b🌧"

EXPECTED_NAMES = {
    "manga": "manga",
    "comic": "manga",
    "漫画": "manga",
    "MANGA": "manga",
    "Comic": "manga",
    "realistic": "realistic",
    "写实": "realistic",
    "watercolor": "watercolor",
    "水彩": "watercolor",
    "oil": "oil",
    "oil_painting": "oil",
    "Oil-Painting": "oil",
    "油画": "oil",
}


@pytest.mark.parametrize(("name", "canonical"), sorted(EXPECTED_NAMES.items()))
def test_every_preset_and_alias_resolves(name: str, canonical: str) -> None:
    assert resolve_style(name, BUILTIN_PRESETS).name == canonical


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_full_prompt_keeps_prompt_verbatim_and_adds_style(name: str) -> None:
    full = compose_full_prompt(PROMPT, name, BUILTIN_PRESETS)
    preset = BUILTIN_PRESETS[EXPECTED_NAMES[name]]
    assert PROMPT in full
    assert full != PROMPT
    assert full == preset.template.replace("{prompt}", PROMPT)
    assert len(full) - len(PROMPT) < 60, "style text must stay short (800-char prompt limit)"


def test_builtin_styles_differ() -> None:
    fulls = {compose_full_prompt("x", n, BUILTIN_PRESETS) for n in set(EXPECTED_NAMES.values())}
    assert len(fulls) == 4


def test_no_style_means_prompt_unchanged() -> None:
    assert compose_full_prompt(PROMPT, None, BUILTIN_PRESETS) is PROMPT
    assert compose_full_prompt(PROMPT, "none", BUILTIN_PRESETS) == PROMPT


def test_chinese_prompt_passes_through_unchanged() -> None:
    prompt = "  林黛玉葬花，桃花纷飞，\t全身像  "
    full = compose_full_prompt(prompt, "漫画", BUILTIN_PRESETS)
    assert full.startswith(prompt)
    assert full == prompt + "，日系漫画风格，线条清晰，赛璐璐上色，色彩明快"


def test_placeholder_can_come_after_the_style() -> None:
    presets = {"ink": StylePreset("ink", "Chinese ink wash painting: {prompt}")}
    assert compose_full_prompt("a crane", "ink", presets) == "Chinese ink wash painting: a crane"


def test_unknown_style_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as info:
        compose_full_prompt("x", "cyberpunk", BUILTIN_PRESETS)
    err = info.value
    assert err.field == "style"
    assert "'cyberpunk'" in str(err)
    assert "unknown style; known:" in str(err)
    for name in ("manga", "comic", "漫画", "realistic", "watercolor", "oil", "油画"):
        assert name in str(err)
    assert "\n" not in str(err)


def test_non_ascii_names_are_not_case_folded() -> None:
    presets = {"Ölbild": StylePreset("Ölbild", "{prompt}, Öl")}
    assert resolve_style("Ölbild", presets).name == "Ölbild"
    with pytest.raises(InvalidInput):
        resolve_style("ölbild", presets)


def test_template_without_placeholder_is_refused() -> None:
    with pytest.raises(InvalidInput, match="placeholder"):
        StylePreset("bad", "ink wash painting")
