"""`check_async_tasks.py`: the guide's flags and interactive menu, exactly as documented.

python check_async_tasks.py --check-once [--tasks-dir D]
python check_async_tasks.py --monitor [--interval N] [--tasks-dir D]
python check_async_tasks.py            # interactive menu (works with piped input)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from asyncimg.api import run_sync
from asyncimg.cli.commands import _workspace, run_check, run_monitor
from asyncimg.cli.emit import err_console, out_console, say_waiting
from asyncimg.cli.interval import interval_seconds
from asyncimg.constants import DEFAULT_INTERVAL_S
from asyncimg.i18n import N_, _, lang_from_argv, set_language
from asyncimg.lifecycle.config import load_config
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.states import TaskState


def _interval_arg(text: str) -> float:
    try:
        return interval_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="check_async_tasks.py",
        description=_("Check asynchronous image tasks and download finished images."),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check-once", action="store_true", help=_("check every task once"))
    mode.add_argument("--monitor", action="store_true", help=_("check repeatedly until all finish"))
    parser.add_argument(
        "--interval",
        type=_interval_arg,
        default=None,
        help=_(
            "seconds between checks in --monitor mode, at least 1 "
            "(default: asyncimg.toml's interval, else {seconds:g})"
        ).format(seconds=DEFAULT_INTERVAL_S),
    )
    parser.add_argument("--tasks-dir", default=None, help=_("task folder (default async_tasks)"))
    parser.add_argument("--lang", default=None, help=_("language of messages: zh or en"))
    return parser


def check_once(tasks_dir: Path | None) -> int:
    return run_check(tasks_dir, None)


MENU = N_("""
asyncimg task checker ({tasks_dir})
  1) check all tasks once
  2) monitor until all finish (every {interval:g} s)
  3) monitor with another interval
  4) list tasks
  5) retry failed tasks
  6) delete completed task records
  0) quit""")


class _Quit(Exception):
    """Leave the menu with this exit status (end of input, Ctrl+C, a stopped monitor)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def interactive(
    tasks_dir: Path | None, interval: float | None, read: Callable[[str], str] = input
) -> int:
    """The menu; EOF on stdin quits, so `printf '1\\n0\\n' | python check_async_tasks.py` works.

    It shows and uses asyncimg.toml's tasks folder and interval unless the command line
    gives them; end of input and Ctrl+C leave it with one line; option 6 asks first.
    """
    try:
        config = load_config(None)
    except AsyncImgError as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        return 2
    shown_dir = tasks_dir or config.defaults.tasks_dir
    every = interval if interval is not None else config.defaults.interval

    def ask(prompt: str) -> str:
        try:
            return read(prompt).strip()
        except EOFError:
            out_console.print("\n" + _("end of input: quit"), markup=False)
            raise _Quit(0) from None

    try:
        while True:
            out_console.print(_(MENU).format(tasks_dir=shown_dir, interval=every), markup=False)
            _choose(ask(_("Choose [0-6]: ")), tasks_dir, every, ask)
    except _Quit as stop:
        return stop.code
    except KeyboardInterrupt:
        out_console.print(
            "\n" + _("stopped by user (Ctrl+C); every record is intact"), markup=False
        )
        return EXIT_INTERRUPTED


def _choose(choice: str, tasks_dir: Path | None, every: float, ask: Callable[[str], str]) -> None:
    """Carry out one menu choice; raises _Quit to leave the menu."""
    if choice in ("0", "q", "quit", "exit"):
        raise _Quit(0)
    if choice == "1":
        _stop_if_interrupted(check_once(tasks_dir))
    elif choice == "2":
        _stop_if_interrupted(run_monitor(tasks_dir, None, every))
    elif choice == "3":
        answer = ask(_("Interval in seconds: "))
        try:
            seconds = interval_seconds(answer)
        except ValueError as exc:
            out_console.print(str(exc), markup=False)
            return
        _stop_if_interrupted(run_monitor(tasks_dir, None, seconds))
    elif choice == "4":
        _list(tasks_dir)
    elif choice == "5":
        _retry_failed(tasks_dir)
    elif choice == "6":
        _clean(tasks_dir, ask)
    else:
        out_console.print(_("unknown choice {choice!r}").format(choice=choice), markup=False)


def _stop_if_interrupted(code: int) -> None:
    if code == EXIT_INTERRUPTED:
        raise _Quit(EXIT_INTERRUPTED)


def _list(tasks_dir: Path | None) -> None:
    workspace = _workspace(tasks_dir, None, read_only=True)
    scanned = workspace.store.scan()
    for problem in scanned.problems:
        err_console.print(str(problem), markup=False)
    for r in sorted(scanned.tasks, key=lambda r: r.created_at):
        error = f"  ({r.last_error.message})" if r.last_error else ""
        out_console.print(
            f"{_(r.status.value):<10} {r.task_id or '-':<20} {r.output_path}{error}",
            markup=False,
            highlight=False,
        )


def _retry_failed(tasks_dir: Path | None) -> None:
    workspace = _workspace(tasks_dir, None)
    try:
        report = run_sync(workspace.retry(all_failed=True, on_wait=say_waiting))
    except AsyncImgError as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        return
    for taken in report.taken:
        out_console.print(taken.line(), markup=False)
    out_console.print(
        _("{submitted} resubmitted, {queued} queued, {rejected} rejected").format(
            submitted=report.submitted, queued=report.queued, rejected=report.rejected
        ),
        markup=False,
    )


def _clean(tasks_dir: Path | None, ask: Callable[[str], str]) -> None:
    workspace = _workspace(tasks_dir, None)
    count = sum(t.status is TaskState.COMPLETED for t in workspace.store.scan().tasks)
    if not count:
        out_console.print(_("no completed task records to delete"), markup=False)
        return
    question = (
        _("Delete {count} completed task record (images are kept)? [y/N]: ")
        if count == 1
        else _("Delete {count} completed task records (images are kept)? [y/N]: ")
    )
    answer = ask(question.format(count=count))
    if answer.lower() not in ("y", "yes"):
        out_console.print(_("nothing deleted"), markup=False)
        return
    removed = workspace.clean_completed()
    text = _("{n} completed records deleted (images kept)").format(n=removed)
    out_console.print(text, markup=False)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except OSError as exc:  # a folder or file it cannot use: one line, exit 2
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"asyncimg: {where}{exc.strerror or exc}", markup=False)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    set_language(lang_from_argv(list(sys.argv[1:] if argv is None else argv)))
    args = build_parser().parse_args(argv)
    tasks_dir = Path(args.tasks_dir) if args.tasks_dir else None
    if args.check_once:
        return check_once(tasks_dir)
    if args.monitor:
        return run_monitor(tasks_dir, None, args.interval)
    return interactive(tasks_dir, args.interval)


if __name__ == "__main__":
    sys.exit(main())
