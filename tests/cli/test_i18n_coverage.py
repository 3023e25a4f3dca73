"""Issue 9, "Chinese interface": no message is built in English where the user sees it.

A source scan (ast) finds every string literal that goes straight into a message — the
first argument of click.echo / console.print / print / _fail / click's exceptions,
Refused / ConfigError, a cancel Outcome, a receiver's report, the rule of an
InvalidInput, the text of a batch Problem — without passing through `_()`. Literal text
outside `_()` is fine when it holds no word (an "asyncimg: " prefix, "  {name}  {path}").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncimg import i18n
from asyncimg.gallery.live import LiveGallery
from asyncimg.gallery.page import render_page
from asyncimg.gallery.source import Chapter
from asyncimg.gallery.thumbs import Thumbnails
from asyncimg.store.store import TaskStore

PACKAGE = Path(i18n.__file__).parent

#: Calls whose first argument is a message for the user.
SINKS = frozenset(
    {
        "echo", "secho", "print", "confirm", "prompt", "_fail", "say", "say_line", "report",
        "ClickException", "UsageError", "BadParameter", "Refused", "ConfigError",
        "TasksFolderError", "Outcome",
    }
)  # fmt: skip
#: Calls whose third argument is the message (field, value, rule / where, field, message).
THIRD = frozenset({"InvalidInput", "Problem", "_problem"})

#: Not scanned: the emulator imitates the real service's (English) words; i18n.py is the
#: catalog tool for developers; protocol/models.py's field rules are shared with the
#: emulator, which answers with them (users get them behind a Chinese explanation of 50200).
SKIPPED = ("emulator/", "i18n.py", "protocol/models.py")

#: English kept on purpose: plural forms said only when the language is English (the other
#: branch of the same expression goes through `_()`).
ALLOWED = {
    ("cli/commands.py", "problem s   in   of   frame s  ; nothing was submitted or written."),
    ("cli/commands.py", "no   tasks to retry"),
}

WORD = re.compile(r"[A-Za-z]{2,}")


def literal_text(node: ast.AST) -> str:
    """The literal text of an argument that ends up in the message: string constants and
    f-string parts, through concatenation and conditionals, not inside `_()` / `N_()` (nor
    other calls' arguments, which are values, but `"...".format(...)` counts)."""
    parts: list[str] = []

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Call):
            if isinstance(n.func, ast.Name) and n.func.id in ("_", "N_"):
                return
            if isinstance(n.func, ast.Attribute) and n.func.attr == "format":
                visit(n.func.value)
            return
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            parts.append(n.value)
        elif isinstance(n, ast.JoinedStr | ast.BinOp | ast.IfExp | ast.FormattedValue):
            for child in ast.iter_child_nodes(n):
                visit(child)

    visit(node)
    return " ".join(parts)


def english_messages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, literal text) of every message built in English in one source file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name in SINKS:
            args = node.args[:1]
        elif name in THIRD:
            args = node.args[2:3]
        else:
            continue
        for arg in args:
            text = literal_text(arg).replace("asyncimg", "")
            if WORD.search(text):
                yield node.lineno, text


def unwrapped(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where.startswith(SKIPPED):
            continue
        for line, text in english_messages(path):
            if not any(where == f and text.strip().startswith(t) for f, t in ALLOWED):
                found.append(f"{where}:{line}: {text!r}")
    return found


def test_no_message_is_built_in_english_outside_the_catalog() -> None:
    found = unwrapped()
    assert not found, "wrap these in _() (then: python -m asyncimg.i18n update):\n" + "\n".join(
        found
    )


def test_the_scan_finds_what_it_is_meant_to(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "import click\n"
        "click.echo(f'{name}: cancelled by the service')\n"
        "raise Refused('task ' + key + ' is busy')\n"
        "raise InvalidInput('size', value, 'is not WIDTHxHEIGHT')\n"
        "_fail('cannot read {path}'.format(path=p))\n"
        "say('done' if ok else _('failed'))\n",
        encoding="utf-8",
    )
    (tmp_path / "good.py").write_text(
        "click.echo(_('{name}: cancelled by the service').format(name=name))\n"
        "click.echo(f'asyncimg: {exc}')\n"
        "say_line(f'  {name}  {task.output_path}: {why}', 'red')\n"
        "raise InvalidInput('size', value, _('is not WIDTHxHEIGHT'), 'e.g.')\n"
        "log.warning('developer words stay English: %s', x)\n",
        encoding="utf-8",
    )
    lines = [line.split(": ", 1)[0] for line in unwrapped(tmp_path)]
    assert lines == ["bad.py:2", "bad.py:3", "bad.py:4", "bad.py:5", "bad.py:6"]


@pytest.fixture
def chinese() -> Iterator[None]:
    i18n.set_language("zh")
    yield
    i18n.set_language("en")


def test_the_live_page_speaks_chinese(tmp_path: Path, chinese: None) -> None:
    tasks = tmp_path / "async_tasks"
    tasks.mkdir()
    page = LiveGallery(Chapter.of(TaskStore(tasks, read_only=True))).page()
    assert '<html lang="zh-CN">' in page and "实时：正在连接…" in page
    words = re.search(r"var WORDS = (\{.*?\});", page)
    assert words is not None and "</" not in words[1]
    assert "\\u5b9e\\u65f6" in words[1]  # "实时", as JSON escapes inside the script
    assert '<span class="n-all">共 0 帧</span>' in page


def test_the_static_page_follows_the_language(tmp_path: Path) -> None:
    def page() -> str:
        return render_page([], Thumbnails(), title="t", link=lambda _f: None, now=0)

    assert '<html lang="en">' in page() and "written " in page()
    i18n.set_language("zh")
    try:
        assert '<html lang="zh-CN">' in page() and "由 asyncimg gallery 于 " in page()
    finally:
        i18n.set_language("en")
