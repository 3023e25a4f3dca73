"""Messages in the user's language: gettext-style `.po` catalogs, read by a small parser.

The catalogs are plain `.po` files committed in `asyncimg/locale/<lang>/asyncimg.po`
and read at run time, so installing needs no compile step (no `msgfmt`, no `.mo`).
A message is marked in the code with ``_("text {name}")`` (formatted *after*
translation) or ``N_("text")`` (marked only, translated where it is shown); click's help
texts (docstrings and ``help=``) are translated when the CLI starts
(:func:`translate_cli`).

The language: ``--lang`` (any command), else ``$ASYNCIMG_LANG``, else the locale
(``$LANGUAGE``, ``$LC_ALL``, ``$LC_MESSAGES``, ``$LANG``, first one set): ``zh_*`` → Chinese.

``python -m asyncimg.i18n untranslated`` lists every marked message the Chinese catalog
does not translate (exit 1 if any); ``python -m asyncimg.i18n update`` appends them to the
catalog with an empty ``msgstr`` for a translator.
"""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import click

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "asyncimg"
LANGUAGES = ("en", "zh")
ENV_LANG = "ASYNCIMG_LANG"

_current = "en"


def set_language(lang: str | None) -> str:
    """Use `lang` ("zh", "zh_CN.UTF-8", "en", None: from the environment); returns the one
    now in use."""
    global _current
    _current = normalise(lang) if lang else from_environment()
    return _current


def language() -> str:
    return _current


def normalise(lang: str) -> str:
    """'zh_CN.UTF-8', 'zh-Hans', 'ZH' → 'zh'; anything without a catalog → 'en'."""
    base = lang.strip().lower().replace("-", "_").split("_")[0].split(".")[0]
    return base if base in LANGUAGES else "en"


def from_environment(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get(ENV_LANG):
        return normalise(env[ENV_LANG])
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return normalise(value.split(":")[0])
    return "en"


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / f"{DOMAIN}.po"


@cache
def catalog(lang: str) -> dict[str, str]:
    """msgid → msgstr of one language (untranslated entries left out)."""
    path = catalog_path(lang)
    if not path.is_file():
        return {}
    return {k: v for k, v in parse_po(path.read_text(encoding="utf-8")).items() if v}


def _(message: str) -> str:
    """`message` in the current language (itself when there is no translation)."""
    if _current == "en" or not message:
        return message
    return catalog(_current).get(message, message)


def N_(message: str) -> str:
    return message


# -- the .po format -----------------------------------------------------------------------


def parse_po(text: str) -> dict[str, str]:
    """The entries of a `.po` file: msgid → msgstr (contexts and plurals are not used)."""
    entries: dict[str, str] = {}
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    current: list[str] | None = None

    def flush() -> None:
        if msgid is not None and msgstr is not None:
            key = "".join(msgid)
            if key:
                entries[key] = "".join(msgstr)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("msgid "):
            flush()
            msgid, msgstr = [_po_string(line[6:], number)], None
            current = msgid
        elif line.startswith("msgstr "):
            msgstr = [_po_string(line[7:], number)]
            current = msgstr
        elif line.startswith('"') and current is not None:
            current.append(_po_string(line, number))
        else:
            raise ValueError(f"line {number}: not a .po line: {raw!r}")
    flush()
    return entries


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _po_string(token: str, number: int) -> str:
    token = token.strip()
    if len(token) < 2 or token[0] != '"' or token[-1] != '"':
        raise ValueError(f"line {number}: expected a quoted string, found {token!r}")
    out: list[str] = []
    chars = iter(token[1:-1])
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
        else:
            out.append(char)
    return "".join(out)


def po_quote(text: str) -> str:
    """`text` as a .po string (multi-line texts one line per source line)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    lines = escaped.split("\n")
    if len(lines) == 1:
        return f'"{lines[0]}"'
    parts = [f'"{line}\\n"' for line in lines[:-1]]
    if lines[-1]:
        parts.append(f'"{lines[-1]}"')
    return '""\n' + "\n".join(parts)


# -- the CLI's help -----------------------------------------------------------------------


def walk_commands(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from walk_commands(sub)


def help_texts(command: click.Command) -> Iterator[str]:
    """Every help text of a click command tree, as it is stored (the msgids)."""
    for cmd in walk_commands(command):
        for text in _english.get(id(cmd), (cmd.help, cmd.short_help)):
            if text:
                yield text
        for param in cmd.params:
            text = _english_param.get(id(param), getattr(param, "help", None))
            if text:
                yield text


#: What click itself says to users (its own `_()` messages), translated through our catalog.
CLICK_MESSAGES = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Aborted!"),
    N_("Missing command."),
    N_("env var: {var}"),
    N_("default: {default}"),
    N_("Show the version and exit."),
    N_("Show this message and exit."),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing parameter: {param_name}"),
    N_("Missing {param_type}"),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("No such option {name!r}."),
    N_("No such command {name!r}."),
    N_("Option {name!r} does not take a value."),
    N_("{value} is not in the range {range}."),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"),
    N_("Choose from:\n\t{choices}"),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is a file."),
    N_("file"),
    N_("directory"),
    N_("path"),
)

_CLICK_MODULES = ("core", "decorators", "exceptions", "formatting", "parser", "types")


def translate_cli(command: click.Command) -> None:
    """Put the current language's help texts into a click command tree (once, at start),
    and let click's own words ("Usage:", "Error: …") go through our catalog too: click
    calls the `gettext` function each of its modules imported as `_`. Safe to call again
    with another language (the English texts are kept aside the first time)."""
    import importlib

    for name in _CLICK_MODULES:
        module = importlib.import_module(f"click.{name}")
        if callable(getattr(module, "_", None)):
            _click_gettext.setdefault(name, module._)
            module._ = _ if _current != "en" else _click_gettext[name]  # type: ignore[attr-defined]
    for cmd in walk_commands(command):
        english = _english.setdefault(id(cmd), (cmd.help, cmd.short_help))
        cmd.help = _(english[0]) if english[0] else english[0]
        cmd.short_help = _(english[1]) if english[1] else english[1]
        for param in cmd.params:
            text = _english_param.setdefault(id(param), getattr(param, "help", None))
            if text:
                param.help = _(text)


_click_gettext: dict[str, Any] = {}
_english: dict[int, tuple[str | None, str | None]] = {}
_english_param: dict[int, str | None] = {}


def lang_from_argv(argv: Sequence[str]) -> str | None:
    """The value of `--lang X` / `--lang=X` anywhere in `argv` (before click parses it, so
    that help texts are already translated when click prints them)."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
    return None


# -- finding every marked message -----------------------------------------------------------


def marked_messages(paths: Iterable[Path]) -> dict[str, str]:
    """msgid → "file:line" of every `_("...")` / `N_("...")` with a literal argument."""
    found: dict[str, str] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("_", "N_")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.setdefault(node.args[0].value, f"{path.name}:{node.lineno}")
    return found


def all_messages() -> dict[str, str]:
    """Every message the user can see that is marked for translation, with where it is."""
    from asyncimg.cli.main import cli

    package = Path(__file__).parent
    sources = sorted(p for p in package.rglob("*.py") if "emulator" not in p.parts)
    found = marked_messages(sources)
    for text in help_texts(cli):
        found.setdefault(text, "(click help)")
    return found


def untranslated(lang: str = "zh") -> dict[str, str]:
    have = catalog(lang)
    return {msgid: where for msgid, where in all_messages().items() if msgid not in have}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    action = args[0] if args else "untranslated"
    lang = args[1] if len(args) > 1 else "zh"
    missing = untranslated(lang)
    if action == "untranslated":
        for msgid, where in missing.items():
            print(f"{where}\t{msgid!r}")
        print(f"{len(missing)} untranslated message(s) in {catalog_path(lang)}", file=sys.stderr)
        return 1 if missing else 0
    if action == "update":
        with catalog_path(lang).open("a", encoding="utf-8") as po:
            for msgid, where in missing.items():
                po.write(f'\n#: {where}\nmsgid {po_quote(msgid)}\nmsgstr ""\n')
        print(f"{len(missing)} message(s) added to {catalog_path(lang)} with an empty msgstr")
        return 0
    print("usage: python -m asyncimg.i18n [untranslated|update] [LANG]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
