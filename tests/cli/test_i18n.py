"""Issue 9, "Chinese interface": the catalog covers every marked message, keeps their
placeholders, and the parser reads what the writer writes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from asyncimg import i18n
from asyncimg.lifecycle.explain import explanation, message_of
from asyncimg.protocol.errors import classify_business


@pytest.fixture(autouse=True)
def english_after() -> Iterator[None]:
    yield
    i18n.set_language("en")


def test_every_message_has_a_chinese_translation() -> None:
    missing = i18n.untranslated("zh")
    assert not missing, "untranslated (run: python -m asyncimg.i18n untranslated):\n" + "\n".join(
        f"{where}: {msgid!r}" for msgid, where in missing.items()
    )


FIELD = re.compile(r"\{[^{}]*\}")


def test_translations_keep_every_placeholder() -> None:
    for msgid, msgstr in i18n.catalog("zh").items():
        assert sorted(FIELD.findall(msgid)) == sorted(FIELD.findall(msgstr)), msgid


def test_po_round_trip() -> None:
    texts = ["one line", 'a "quote" and a \\ backslash', "two\nlines\n", "\ttab", "尾\n"]
    po = "\n".join(f"msgid {i18n.po_quote(t)}\nmsgstr {i18n.po_quote(t.upper())}\n" for t in texts)
    assert i18n.parse_po(po) == {t: t.upper() for t in texts}
    with pytest.raises(ValueError, match="line 1"):
        i18n.parse_po("msgid nope")


@pytest.mark.parametrize(
    ("env", "lang"),
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LC_ALL": "zh_TW", "LANG": "en_US.UTF-8"}, "zh"),
        ({"LANGUAGE": "zh_CN:en", "LANG": "C"}, "zh"),
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({"ASYNCIMG_LANG": "en", "LANG": "zh_CN.UTF-8"}, "en"),
        ({"LANG": "fr_FR"}, "en"),
        ({}, "en"),
    ],
)
def test_language_from_the_locale(env: dict[str, str], lang: str) -> None:
    assert i18n.from_environment(env) == lang


def test_lang_option_anywhere_on_the_command_line() -> None:
    assert i18n.lang_from_argv(["list", "--lang", "zh"]) == "zh"
    assert i18n.lang_from_argv(["--lang=zh", "check"]) == "zh"
    assert i18n.lang_from_argv(["submit", "--", "--lang", "zh"]) is None


def test_api_errors_get_a_plain_chinese_explanation() -> None:
    error = classify_business(50511, "Post Img Risk Not Pass", "req-1")
    assert message_of(error.code, error.kind, error.message) == "Post Img Risk Not Pass"
    i18n.set_language("zh")
    said = message_of(error.code, error.kind, error.message)
    assert said.startswith("生成的图片未通过内容审核") and "Post Img Risk Not Pass" in said
    assert explanation("50412") is not None  # a code given as text
    assert explanation(None, "ConnectFailed") == "无法连接 API（网络、代理或接入地址有问题）"
