"""asyncimg.toml: lookup order, defaults, user styles, and one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncimg.lifecycle.config import (
    CONFIG_NAME,
    ENV_CONFIG,
    Config,
    find_config,
    load_config,
    parse_size,
)
from asyncimg.lifecycle.styles import BUILTIN_PRESETS
from asyncimg.protocol.errors import ConfigError, InvalidInput

FULL = """
[defaults]
style = "manga"
req_key = "jimeng_t2i_v40"
size = "1440x2560"
tasks_dir = "async_tasks"
poll_concurrency = 8
interval = 30
[defaults.params]
force_single = true
scale = 0.5
[styles.ink]
template = "{prompt}, Chinese ink wash painting"
aliases = ["水墨"]
"""


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray ASYNCIMG_CONFIG or ./asyncimg.toml from the machine running the tests."""
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path / "asyncimg.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_full_example_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "a.toml", FULL))
    d = config.defaults
    assert (d.style, d.req_key, d.size) == ("manga", "jimeng_t2i_v40", "1440x2560")
    assert d.dimensions == (1440, 2560)
    assert (d.tasks_dir, d.poll_concurrency, d.interval) == (Path("async_tasks"), 8, 30.0)
    assert d.params == {"force_single": True, "scale": 0.5}
    assert config.source == tmp_path / "a.toml"
    assert config.full_prompt("一只鹤", "水墨") == "一只鹤, Chinese ink wash painting"
    assert config.full_prompt("女孩") == "女孩，日系漫画风格，线条清晰，赛璐璐上色，色彩明快"
    assert config.submit_fields() == {
        "force_single": True,
        "scale": 0.5,
        "width": 1440,
        "height": 2560,
    }


def test_no_file_means_all_defaults() -> None:
    assert find_config() is None
    config = load_config()
    assert config == Config()
    assert config.source is None
    assert config.defaults.style is None
    assert config.defaults.req_key == "jimeng_t2i_v40"
    assert config.full_prompt("x") == "x"
    assert set(config.presets) == set(BUILTIN_PRESETS)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd_file = _write(Path.cwd() / CONFIG_NAME, '[defaults]\nstyle = "oil"\n')
    env_file = _write(tmp_path / "env.toml", '[defaults]\nstyle = "watercolor"\n')
    explicit = _write(tmp_path / "explicit.toml", '[defaults]\nstyle = "realistic"\n')

    assert find_config() == Path(CONFIG_NAME)
    assert load_config().defaults.style == "oil"

    monkeypatch.setenv(ENV_CONFIG, str(env_file))
    assert find_config() == env_file
    assert load_config().defaults.style == "watercolor"

    assert load_config(explicit).defaults.style == "realistic"
    assert load_config(str(explicit)).defaults.style == "realistic"
    assert cwd_file.exists()


def test_cwd_lookup_follows_chdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "novel"
    project.mkdir()
    _write(project / CONFIG_NAME, "[defaults]\ninterval = 60\n")
    assert load_config().defaults.interval == 30.0
    monkeypatch.chdir(project)
    assert load_config().defaults.interval == 60.0


def test_explicit_or_env_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: no such config file"):
        load_config(tmp_path / "missing.toml")
    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml: no such config file.*ASYNCIMG_CONFIG"):
        load_config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[defaults]\nsize = "720x"\n', "defaults.size: '720x' is not WIDTHxHEIGHT"),
        ('[defaults]\nsize = "720x1280"\n', "defaults.size: '720x1280': area"),
        ('[defaults]\nstlye = "manga"\n', "defaults.stlye: unknown key; did you mean 'style'?"),
        ('[default]\nstyle = "manga"\n', "default: unknown key; did you mean 'defaults'?"),
        ('[defaults]\nstyle = "cyberpunk"\n', "defaults.style: unknown style 'cyberpunk'"),
        ('[defaults]\nreq_key = "dalle"\n', "defaults.req_key: 'dalle': unknown model"),
        ("[defaults]\npoll_concurrency = 0\n", "defaults.poll_concurrency:"),
        ('[defaults]\ninterval = "30s"\n', "defaults.interval:"),
        ("[defaults]\ninterval = -1\n", "defaults.interval:"),
        ("[defaults.params]\nscale = 2\n", "defaults.params.scale: 2: must be a number"),
        ("[defaults.params]\nsacle = 0.5\n", "defaults.params.sacle: 0.5: jimeng_t2i_v40 does not"),
        ("[defaults.params]\nprompt = 'x'\n", "defaults.params.prompt: not a default"),
        ("[defaults.params]\nwidth = 1440\n", "defaults.params.width: not a default"),
        (
            '[defaults]\nreq_key = "jimeng_t2i_v31"\n[defaults.params]\nforce_single = true\n',
            "defaults.params.force_single: True: jimeng_t2i_v31 does not take this field",
        ),
        (
            '[styles.ink]\ntemplate = "ink wash"\n',
            "styles.ink.template: 'ink wash' has no {prompt}",
        ),
        ("[styles.ink]\naliases = ['x']\n", "styles.ink.template: required key is missing"),
        ('[styles.ink]\ntemplate = "{prompt}"\ncolour = 1\n', "styles.ink.colour: unknown key"),
        (
            '[styles.ink]\ntemplate = "{prompt}"\naliases = ["manga"]\n',
            "styles.ink.aliases: 'manga' is already the name of a style",
        ),
        ("[defaults\n", "invalid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(tmp_path, text)


def test_size_error_matches_the_documented_message(tmp_path: Path) -> None:
    message = _error(tmp_path, '[defaults]\nsize = "720x"\n')
    assert message.startswith(
        f"{tmp_path / 'asyncimg.toml'}: defaults.size: '720x' is not WIDTHxHEIGHT"
    )


def test_size_below_model_minimum_suggests_valid_size(tmp_path: Path) -> None:
    assert "try 1440x2560" in _error(tmp_path, '[defaults]\nsize = "720x1280"\n')


@pytest.mark.parametrize("text", ["2048 × 2048", "2048*2048", "2048X2048"])
def test_size_is_normalised(tmp_path: Path, text: str) -> None:
    config = load_config(_write(tmp_path / "c.toml", f'[defaults]\nsize = "{text}"\n'))
    assert config.defaults.size == "2048x2048"
    assert config.defaults.dimensions == (2048, 2048)


def test_size_must_be_text(tmp_path: Path) -> None:
    assert "defaults.size: 1440 is not WIDTHxHEIGHT" in _error(
        tmp_path, "[defaults]\nsize = 1440\n"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "asyncimg.toml"
    path.write_bytes(b'[defaults]\nstyle = "\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


@pytest.mark.parametrize(
    "text",
    [
        'access_key = "AKLT..."\n',
        '[defaults]\nsecret_key = "c2VjcmV0"\n',
        '[credentials]\nACCESS-KEY = "AKLT..."\n',
        '[defaults.params]\nvolc_secretkey = "x"\n',
    ],
)
def test_credentials_in_config_are_refused(tmp_path: Path, text: str) -> None:
    message = _error(tmp_path, text)
    assert "VOLC_ACCESSKEY" in message
    assert "VOLC_SECRETKEY" in message
    assert "AKLT" not in message and "c2VjcmV0" not in message, "never echo a secret"


def test_user_style_overrides_builtin_and_keeps_its_aliases(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path / "c.toml", '[styles.manga]\ntemplate = "{prompt}, shonen manga"\n')
    )
    assert config.full_prompt("hero", "manga") == "hero, shonen manga"
    assert config.full_prompt("hero", "漫画") == "hero, shonen manga"
    assert config.full_prompt("hero", "comic") == "hero, shonen manga"
    assert config.full_prompt("hero", "oil") == BUILTIN_PRESETS["oil"].apply("hero")


def test_user_style_with_own_aliases(tmp_path: Path) -> None:
    text = '[styles.Manga]\ntemplate = "漫画：{prompt}"\naliases = ["mg"]\n'
    config = load_config(_write(tmp_path / "c.toml", text))
    assert config.full_prompt("hero", "manga") == "漫画：hero"
    assert config.full_prompt("hero", "MG") == "漫画：hero"
    assert "manga" not in config.presets
    assert config.presets["Manga"].aliases == ("mg",)


def test_user_alias_may_take_over_a_builtin_alias(tmp_path: Path) -> None:
    text = '[styles.ink]\ntemplate = "{prompt}, 水墨画"\naliases = ["comic"]\n'
    config = load_config(_write(tmp_path / "c.toml", text))
    assert config.full_prompt("a", "comic") == "a, 水墨画"
    assert config.full_prompt("a", "manga") == BUILTIN_PRESETS["manga"].apply("a")


def test_default_style_may_be_a_user_style_alias(tmp_path: Path) -> None:
    text = (
        '[defaults]\nstyle = "水墨"\n'
        '[styles.ink]\ntemplate = "{prompt}，水墨画"\naliases = ["水墨"]\n'
    )
    config = load_config(_write(tmp_path / "c.toml", text))
    assert config.full_prompt("山") == "山，水墨画"
    assert config.full_prompt("山", "none") == "山"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1440x2560", (1440, 2560)),
        ("1440X2560", (1440, 2560)),
        ("1440×2560", (1440, 2560)),
        ("1440*2560", (1440, 2560)),
        (" 2048 x 2048 ", (2048, 2048)),
    ],
)
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["720x", "x720", "1440", "0x100", "-1x5", "1.5x2", "axb", ""])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidInput, match="WIDTHxHEIGHT"):
        parse_size(text)
