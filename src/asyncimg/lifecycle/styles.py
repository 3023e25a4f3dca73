"""Style presets: how a task's `prompt` and `style` become the `full_prompt` that is sent.

A chapter's ~30 frames must share one look, so the style text lives in one named preset
instead of being pasted into every prompt. Templates are short because the model takes at
most 800 characters and the user's own prompt needs most of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from asyncimg.i18n import _
from asyncimg.protocol.errors import InvalidInput

PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class StylePreset:
    """A named template; `{prompt}` marks where the user's prompt goes."""

    name: str
    template: str
    aliases: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if PLACEHOLDER not in self.template:
            raise InvalidInput(
                f"styles.{self.name}.template",
                self.template,
                _("has no {prompt} placeholder"),
                _('e.g. "{prompt}, Chinese ink wash painting"'),
            )

    def apply(self, prompt: str) -> str:
        # str.replace, not str.format: braces in the prompt or template stay literal.
        return self.template.replace(PLACEHOLDER, prompt)


def _builtin(*presets: StylePreset) -> dict[str, StylePreset]:
    return {p.name: p for p in presets}


BUILTIN_PRESETS: Mapping[str, StylePreset] = _builtin(
    StylePreset(
        "manga",
        "{prompt}，日系漫画风格，线条清晰，赛璐璐上色，色彩明快",
        ("comic", "漫画"),
        "Japanese manga / anime, clean lines, cel shading",
    ),
    StylePreset(
        "realistic",
        "{prompt}，写实风格，真实光影，细节丰富，电影质感",
        ("写实",),
        "photorealistic, cinematic lighting",
    ),
    StylePreset(
        "watercolor",
        "{prompt}，水彩画风格，柔和晕染，淡雅色调，纸张纹理",
        ("水彩",),
        "soft watercolour washes on paper",
    ),
    StylePreset(
        "oil",
        "{prompt}，油画风格，厚涂笔触，浓郁色彩，画布质感",
        ("oil_painting", "油画"),
        "oil painting, impasto brushwork",
    ),
    StylePreset(
        "none",
        "{prompt}",
        ("plain", "无"),
        "the prompt as written (overrides a configured default style)",
    ),
)


def normalise_name(name: str) -> str:
    """The lookup key: ASCII names ignore case, spaces and '-' vs '_'; others match exactly."""
    key = name.strip()
    if key.isascii():
        key = key.lower().replace("-", "_").replace(" ", "_")
    return key


def _index(presets: Mapping[str, StylePreset]) -> dict[str, StylePreset]:
    """Name or alias → preset. Names beat aliases; among aliases the later preset wins."""
    index: dict[str, StylePreset] = {}
    for preset in presets.values():
        for alias in preset.aliases:
            index[normalise_name(alias)] = preset
    for preset in presets.values():
        index[normalise_name(preset.name)] = preset
    return index


def describe_known(presets: Mapping[str, StylePreset]) -> str:
    """'manga (comic, 漫画), oil (…)' for error messages."""
    parts: list[str] = []
    for preset in presets.values():
        aliases = f" ({', '.join(preset.aliases)})" if preset.aliases else ""
        parts.append(preset.name + aliases)
    return ", ".join(parts)


def resolve_style(name: str, presets: Mapping[str, StylePreset]) -> StylePreset:
    """The preset called `name` or having it as an alias; InvalidInput listing the known ones."""
    preset = _index(presets).get(normalise_name(name))
    if preset is None:
        raise InvalidInput(
            "style",
            name,
            _("unknown style; known: {known}").format(known=describe_known(presets)),
        )
    return preset


def compose_full_prompt(prompt: str, style: str | None, presets: Mapping[str, StylePreset]) -> str:
    """The text sent as `prompt`: the user's prompt inside the style's template.

    `style=None` means no style text (callers pass the configured default themselves).
    The prompt itself is inserted verbatim: no stripping, escaping or Unicode changes.
    """
    if style is None:
        return prompt
    return resolve_style(style, presets).apply(prompt)


def preset_names(presets: Iterable[StylePreset]) -> list[str]:
    """Every name and alias, for shell completion and help text."""
    names: list[str] = []
    for preset in presets:
        names.append(preset.name)
        names.extend(preset.aliases)
    return names
