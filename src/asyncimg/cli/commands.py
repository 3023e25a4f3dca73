"""`asyncimg submit | check | monitor | list | show | retry | clean | adopt`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from asyncimg.api import (
    OutputIndex,
    Refused,
    Rerun,
    RetryInvalid,
    Workspace,
    read_records,
    run_sync,
)
from asyncimg.cli.emit import (
    Emitter,
    emit_json,
    err_console,
    frame_event,
    header,
    out_console,
    say_waiting,
)
from asyncimg.cli.image_info import show_image
from asyncimg.cli.interval import interval_seconds
from asyncimg.cli.output import JsonProgress, MonitorDisplay, print_summary, task_table
from asyncimg.cli.show import describe, find_record
from asyncimg.cli.store_option import F, store_option
from asyncimg.cli.submit_report import replaces_failed, report_submit
from asyncimg.gallery.source import every_record
from asyncimg.i18n import _, language
from asyncimg.lifecycle import sizes
from asyncimg.lifecycle.config import Config, load_config
from asyncimg.lifecycle.interrupt import StopOnSignals
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED, MonitorOutcome
from asyncimg.lifecycle.ref_upload import ReferenceSender
from asyncimg.lifecycle.refmode import looks_like_url
from asyncimg.lifecycle.submit import SubmitOutcome, max_billed_images
from asyncimg.lifecycle.validate import Checked, Line, Problem, check_lines
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.open import open_store, store_location
from asyncimg.store.record import TaskRecord, reject_json_constant
from asyncimg.store.states import TaskState
from asyncimg.store.store import AmbiguousTaskKey, TaskNotFound

T = TypeVar("T")


_folder_option = click.option(
    "--tasks-dir",
    type=click.Path(path_type=Path),  # a file here is the store's one-line error, not click's
    default=None,
    help="Folder of task records (default: asyncimg.toml's tasks_dir, else async_tasks/).",
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON lines (one event per line) instead of text; see README.",
)


def tasks_dir_option(command: F) -> F:
    """`--tasks-dir D` and `--store URL` (a shared PostgreSQL store, see store_option)."""
    return _folder_option(store_option(command))


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="asyncimg.toml to use (default: $ASYNCIMG_CONFIG, else ./asyncimg.toml).",
)


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"asyncimg: {message}", markup=False)
    sys.exit(code)


def _workspace(
    tasks_dir: Path | None, config_path: Path | None, *, read_only: bool = False
) -> Workspace:
    try:
        return Workspace.open(tasks_dir, config_path=config_path, read_only=read_only)
    except AsyncImgError as exc:
        _fail(str(exc), 2)


# -- submit -------------------------------------------------------------------------------


def read_batch(path: Path) -> tuple[list[Line], list[Problem]]:
    """The frames of a JSONL or CSV file, and every line that could not be read.

    JSONL is split on "\\n" only: a U+2028 inside a prompt is text, not a line break. CSV
    goes through the csv module on the whole text, so quoted cells keep their line breaks
    and each frame is numbered by the line it starts on.
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        why = exc.strerror or exc
        return [], [Problem(source, "(file)", _("cannot read: {why}").format(why=why))]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = _("not UTF-8 text (bad byte at offset {offset})").format(offset=exc.start)
        return [], [Problem(source, "(file)", bad)]
    if path.suffix.lower() == ".csv":
        lines, problems = _csv_lines(source, text)
    else:
        lines, problems = _jsonl_lines(source, text)
    base = os.path.normpath(path.absolute().parent)  # relative paths in a batch are its own
    lines = [dataclasses.replace(line, base=base) for line in lines]
    if not lines and not problems:
        problems.append(Problem(source, "(file)", _("no frames in it")))
    return lines, problems


def _jsonl_lines(source: str, text: str) -> tuple[list[Line], list[Problem]]:
    lines: list[Line] = []
    problems: list[Problem] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        try:
            row = json.loads(raw, parse_constant=reject_json_constant)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(
                    where,
                    "(line)",
                    _("not valid JSON: {why} (column {column})").format(
                        why=exc.msg, column=exc.colno
                    ),
                )
            )
            continue
        except (ValueError, RecursionError) as exc:
            problems.append(Problem(where, "(line)", _("not valid JSON: {why}").format(why=exc)))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(where, "(line)", _("each line must be a JSON object {...}")))
            continue
        lines.append(Line(source, number, row))
    return lines, problems


def _csv_lines(source: str, text: str) -> tuple[list[Line], list[Problem]]:
    lines: list[Line] = []
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
        end = reader.line_num
        seen: set[str] = set()
        for name in header:
            if name in seen:
                problems.append(Problem(f"{source}:1", name, _("this column appears twice")))
            seen.add(name)
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                problems.append(
                    Problem(
                        f"{source}:{start}",
                        "(line)",
                        _("{cells} cells, but the header has {columns} columns").format(
                            cells=len(row), columns=len(header)
                        ),
                    )
                )
                continue
            lines.append(Line(source, start, dict(zip(header, row, strict=False)), from_csv=True))
    except StopIteration:
        pass
    except csv.Error as exc:
        problems.append(
            Problem(
                f"{source}:{reader.line_num}", "(line)", _("not valid CSV: {why}").format(why=exc)
            )
        )
    return lines, problems


def command_line(
    prompt: str,
    output_path: str,
    characters: tuple[str, ...],
    style: str | None,
    req_key: str | None,
    size: str | None,
    callback_url: str | None = None,
) -> Line:
    """A single `submit PROMPT -o OUT ...`, as one line to check like a batch line."""
    fields: dict[str, Any] = {"prompt": prompt, "output_path": output_path}
    optional = {
        "character_images": list(characters),
        "style": style,
        "req_key": req_key,
        "callback_url": callback_url,
    }
    fields.update({k: v for k, v in optional.items() if v})
    if size is not None:
        fields["size"] = size
    return Line(_("command line"), None, fields)


async def _until_signal(work: Coroutine[Any, Any, T]) -> T | None:
    """`work`'s result, or None when Ctrl+C / SIGTERM stopped it (records stay intact)."""
    with StopOnSignals():
        return await work
    return None


def print_plan(
    checked: Checked,
    index: OutputIndex,
    *,
    force: bool,
    as_json: bool = False,
    references: ReferenceSender | None = None,
) -> None:
    """`submit --dry-run`: one line per frame and the totals; nothing is sent or written.
    A frame whose references would go as URLs says so (`references` decides).
    `as_json`: a `plan` event per frame and a `summary` with `dry_run: true`."""
    to_submit = skipped = least = most = 0
    for frame in checked.frames:
        record = frame.record
        check = index.check(record, force=force)
        plan: dict[str, Any] = {"event": "plan", "where": frame.line.where}
        plan["output_path"] = record.output_path
        if check.action is Rerun.SKIP:
            skipped += 1
            text = _("{where}  {output}  skipped — {reason}").format(
                where=frame.line.where, output=record.output_path, reason=check.reason
            )
            plan.update(action="skip", reason=check.reason, message=text)
            _say_plan(plan, as_json)
            continue
        to_submit += 1
        billed = max_billed_images(record)
        least, most = least + 1, most + billed
        shown_size = sizes.describe(record.params, record.req_key)
        refs = len(record.character_images)
        note = f"  ({check.reason})" if check.reason else ""
        as_urls = refs and (
            any(looks_like_url(p) for p in record.character_images)
            or (references is not None and references.sends(record.req_key) == "url")
        )
        characters = (
            _("{n} character").format(n=refs) if refs == 1 else _("{n} characters").format(n=refs)
        ) + (_(" as URLs") if as_urls else "")
        images = _("1 image") if billed == 1 else _("up to {n} images").format(n=billed)
        text = (
            f"{frame.line.where}  {record.output_path}  {record.req_key}  {shown_size}  "
            f"{characters}  {images}{note}"
        )
        plan.update(
            action="submit",
            req_key=record.req_key,
            size=shown_size,
            characters=list(record.character_images),
            images_at_most=billed,
            reason=check.reason or None,
            message=text,
        )
        _say_plan(plan, as_json)
    images = f"{least}" if least == most else f"{least} to {most}"
    problems = _(", {n} with problems").format(n=checked.bad_lines) if checked.bad_lines else ""
    totals = _(
        "dry run: {to_submit} to submit, {skipped} skipped{problems}; "
        "images billed: {images}; nothing was submitted or written"
    ).format(to_submit=to_submit, skipped=skipped, problems=problems, images=images)
    if as_json:
        emit_json(
            {
                "event": "summary",
                "dry_run": True,
                "to_submit": to_submit,
                "skipped": skipped,
                "with_problems": checked.bad_lines,
                "images_at_least": least,
                "images_at_most": most,
                "message": totals,
            }
        )
        return
    out_console.print(totals, markup=False)


def _say_plan(plan: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(plan)
    else:
        out_console.print(plan["message"], markup=False)


@click.command()
@click.argument("prompt", required=False)
@click.option("-o", "--output", "output_path", help="Where the image is saved.")
@click.option("--character", "characters", multiple=True, help="A character reference image.")
@click.option("--style", help="Style preset (manga, realistic, watercolor, oil, or your own).")
@click.option("--req-key", help="Model (default jimeng_t2i_v40).")
@click.option(
    "--size", help="WIDTHxHEIGHT, e.g. 1440x2560; for jimeng_t2i_v40 also 2K, 4K, an area, or auto."
)
@click.option(
    "--callback-url",
    default=None,
    help="v40 callback mode: the service POSTs the result here (see `asyncimg callbacks`).",
)
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL or CSV: one frame per line.",
)
@click.option("--dry-run", is_flag=True, help="Check and print the plan; submit and write nothing.")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Submit the frames without problems even if others have some (exit status 1).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Submit frames whose output already has a queued, running or done task.",
)
@json_option
@tasks_dir_option
@config_option
def submit(
    prompt: str | None,
    output_path: str | None,
    characters: tuple[str, ...],
    style: str | None,
    req_key: str | None,
    size: str | None,
    callback_url: str | None,
    batch: Path | None,
    dry_run: bool,
    skip_invalid: bool,
    force: bool,
    as_json: bool,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Submit one frame (PROMPT -o OUT) or a whole batch (--batch FILE).

    Every frame is checked first; if any has a problem, all problems are printed and
    nothing is submitted (exit status 2) unless --skip-invalid. A frame whose output
    already has a queued, running or done task is skipped unless --force; one whose
    task failed is resubmitted in its place.
    """
    if batch is not None:
        if prompt or output_path:
            raise click.UsageError(_("give either PROMPT -o OUT or --batch FILE, not both"))
        lines, problems = read_batch(batch)
        if callback_url:  # for every line that does not name its own
            lines = [
                replace(ln, fields={"callback_url": callback_url, **ln.fields}) for ln in lines
            ]
    else:
        if not prompt or not output_path:
            raise click.UsageError(_("PROMPT and -o/--output are required (or use --batch FILE)"))
        lines = [command_line(prompt, output_path, characters, style, req_key, size, callback_url)]
        problems = []
    try:
        config = load_config(config_path)
    except AsyncImgError as exc:
        _fail(str(exc), 2)
    checked = check_lines(lines, config)
    problems += checked.problems
    if as_json:
        emit_json(header("submit"))
    for problem in problems:
        if as_json:
            emit_json(
                {
                    "event": "problem",
                    "where": problem.where,
                    "field": problem.field,
                    "message": str(problem),
                }
            )
        else:
            err_console.print(str(problem), markup=False)
    bad = len({p.where for p in problems})
    if dry_run:
        planner = ReferenceSender.from_config(config, upload=False)
        print_plan(
            checked,
            OutputIndex(_known_records(tasks_dir, config)),
            force=force,
            as_json=as_json,
            references=planner,
        )
        sys.exit(2 if problems else 0)
    if problems and not skip_invalid:
        total = len(checked.frames) + bad
        _fail(
            _(
                "{problems} problem(s) in {bad} of {total} frame(s); nothing was submitted or written. Fix and run again"  # noqa: E501
            ).format(problems=len(problems), bad=bad, total=total)
            if language() != "en"
            else (
                f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {bad} of {total} "
                f"frame{'s' if total != 1 else ''}; nothing was submitted or written. Fix "
                + ("them" if len(problems) != 1 else "it")
                + " and run again"
            )
            + (_(", or add --skip-invalid to submit the others") if checked.frames else ""),
            2,
        )
    if not checked.frames:
        _fail(_("no frame without problems: nothing was submitted"), 1)
    workspace = _workspace(tasks_dir, config_path)
    requests = [frame.request for frame in checked.frames]
    say = Emitter(out_console, as_json=as_json)

    said: set[str] = set()

    def progress(outcome: SubmitOutcome) -> None:  # each frame the moment its answer is in
        said.add(outcome.record.local_id)
        say(frame_event(outcome, replaces_failed(outcome.record)))

    try:
        report = run_sync(
            _until_signal(
                workspace.submit(
                    requests,
                    force=force,
                    on_outcome=progress,
                    on_wait=say_waiting,
                )
            )
        )
    except AsyncImgError as exc:
        _fail(str(exc), 2)
    if report is None:
        _say_interrupted(workspace)
        sys.exit(EXIT_INTERRUPTED)
    report_submit(report, invalid=bad, said=said, as_json=as_json)
    sys.exit(max(report.exit_code, 1) if problems else report.exit_code)


def _known_records(tasks_dir: Path | None, config: Config) -> list[TaskRecord]:
    """The records a dry run compares against, read without changing the folder (a shared
    store is read through its connection)."""
    location = store_location(tasks_dir, config.defaults.tasks_dir)
    if isinstance(location, Path):
        return read_records(location)
    try:
        return open_store(location).load_all().records
    except AsyncImgError as exc:
        _fail(str(exc), 2)


# -- check / monitor ----------------------------------------------------------------------


@click.command()
@json_option
@tasks_dir_option
@config_option
def check(as_json: bool, tasks_dir: Path | None, config_path: Path | None) -> None:
    """One pass: submit queued tasks, poll running ones, download finished images."""
    sys.exit(run_check(tasks_dir, config_path, as_json=as_json))


def run_check(tasks_dir: Path | None, config_path: Path | None, *, as_json: bool = False) -> int:
    workspace = _workspace(tasks_dir, config_path)
    say = Emitter(out_console, as_json=as_json)
    if as_json:
        emit_json(header("check"))
    outcome = _run_passes(workspace, interval=0, until_done=False, max_passes=1, on_event=say)
    return _finish(workspace, outcome, say)


def _say_interrupted(workspace: Workspace, say: Emitter | None = None) -> None:
    """One line, from the records as they are now on disk."""
    tasks = workspace.store.scan().tasks
    counts = {s: sum(t.status is s for t in tasks) for s in TaskState}
    shown = ", ".join(f"{n} {_(s.value)}" for s, n in counts.items() if n) or _("no tasks")
    text = _("stopped by user; every record is intact: {counts}").format(counts=shown)
    if say is not None and say.as_json:
        emit_json(
            {
                "event": "summary",
                "counts": {s.value: n for s, n in counts.items()},
                "exit_code": EXIT_INTERRUPTED,
                "interrupted": True,
                "message": text,
            }
        )
        return
    out_console.print(text, markup=False)


@click.command()
@click.option(
    "--interval",
    default=None,  # checked in the command: one line, not click's usage block
    help="Longest wait between polls of a task, in seconds, at least 1 (default: "
    "asyncimg.toml's interval, else 30).",
)
@click.option("--keep-running", is_flag=True, help="Keep watching after every task has finished.")
@json_option
@tasks_dir_option
@config_option
def monitor(
    interval: str | None,
    keep_running: bool,
    as_json: bool,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Check repeatedly until every task is completed or failed (Ctrl+C stops safely)."""
    try:
        seconds = interval_seconds(interval) if interval is not None else None
    except ValueError as exc:
        _fail(str(exc), 2)
    sys.exit(run_monitor(tasks_dir, config_path, seconds, keep_running, as_json=as_json))


def run_monitor(
    tasks_dir: Path | None,
    config_path: Path | None,
    interval: float | None,
    keep_running: bool = False,
    *,
    as_json: bool = False,
) -> int:
    workspace = _workspace(tasks_dir, config_path)
    say = Emitter(out_console, as_json=as_json)
    options: dict[str, Any] = {"interval": interval, "until_done": not keep_running}
    if as_json:
        emit_json(header("monitor"))
        result = _run_passes(workspace, on_pass=JsonProgress(), on_event=say, **options)
        return _finish(workspace, result, say)
    # The bar is closed (and, after Ctrl+C, taken away) before the summary is printed, so
    # the summary comes after the last bar and nothing redraws a stale one.
    outcome: MonitorOutcome | int | None = None
    try:
        with MonitorDisplay(out_console) as display:
            outcome = _run_passes(
                workspace, on_pass=display.update, on_event=display.event, **options
            )
            display.interrupted = outcome is None or (
                isinstance(outcome, MonitorOutcome) and _was_stopped(outcome)
            )
    except KeyboardInterrupt:  # Ctrl+C while the bar was being set up or taken down
        outcome = None
    return _finish(workspace, outcome, say)


def _run_passes(workspace: Workspace, **options: Any) -> MonitorOutcome | int | None:
    """Passes until `Workspace.monitor` returns: its outcome, None when stopped by Ctrl+C
    before it could say, or 2 after a setup problem (already printed)."""
    try:
        return run_sync(workspace.monitor(**options))
    except AsyncImgError as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        return None


def _was_stopped(outcome: MonitorOutcome) -> bool:
    return outcome.interrupted or outcome.last is None


def _finish(workspace: Workspace, outcome: MonitorOutcome | int | None, say: Emitter) -> int:
    """The summary and the exit status for check and monitor.

    0 nothing failed, 1 frames failed or wait for the user, 2 setup problem (credentials,
    clock, config, a record that cannot be written), 130 stopped by a signal.
    """
    if isinstance(outcome, int):
        return outcome
    if outcome is None or _was_stopped(outcome) or outcome.last is None:
        _say_interrupted(workspace, say)
        return EXIT_INTERRUPTED
    print_summary(out_console, outcome.last, workspace, say)
    return outcome.last.exit_code


# -- list / show --------------------------------------------------------------------------


@click.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskState]), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records.")
@click.option("--wide", is_flag=True, help="Never cut long paths and errors.")
@tasks_dir_option
@config_option
def list_(
    status: str | None,
    as_json: bool,
    wide: bool,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """List task records (long paths and errors are cut to fit the terminal)."""
    workspace = _workspace(tasks_dir, config_path, read_only=True)
    if as_json:  # whole records: read them all (every machine's, on a shared store)
        loaded = every_record(workspace.store)
        for problem in loaded.problems:
            err_console.print(str(problem), markup=False)
        records = [r for r in loaded.records if status is None or r.status.value == status]
        records.sort(key=lambda r: (r.created_at, r.local_id))
        items = [json.loads(r.model_dump_json()) for r in records]
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    scanned = workspace.store.scan()  # finished records come from the index
    for problem in scanned.problems:
        err_console.print(str(problem), markup=False)
    tasks = [t for t in scanned.tasks if status is None or t.status.value == status]
    tasks.sort(key=lambda t: (t.created_at, t.local_id))
    # Cut to the terminal; a pipe gets whole lines unless COLUMNS says how wide to be.
    fit = not wide and (out_console.is_terminal or "COLUMNS" in os.environ)
    click.echo(task_table(tasks, width=out_console.width if fit else None))
    out_console.print(_("{n} tasks").format(n=len(tasks)), markup=False)


@click.command()
@click.argument("key", metavar="TASK_ID|PATH|FILE")
@json_option
@tasks_dir_option
@config_option
def show(key: str, as_json: bool, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Show one task: its frame, times (local), error and earlier attempts; for an image
    FILE, first what is written inside it.

    Found by task id (or a prefix), output path, or file name (001.png).
    """
    shown = not as_json and Path(key).is_file() and show_image(Path(key))
    workspace = _workspace(tasks_dir, config_path, read_only=True)
    try:
        record = find_record(workspace.store, key)
    except (AsyncImgError, KeyError) as exc:
        if shown:
            return
        _fail(str(exc).strip("'\""), 1)
    if as_json:
        emit_json({"event": "task", **json.loads(record.model_dump_json())})
        return
    for line in describe(record):
        out_console.print(line, markup=False, highlight=False)


# -- retry / clean ------------------------------------------------------------------------


def _exit_code(error: AsyncImgError) -> int:
    """1 when the folder or the API refused (a task that is not failed, an unknown task, an
    id already held, a task the API no longer has); 2 for a setup or input problem."""
    return 1 if isinstance(error, Refused | TaskNotFound | AmbiguousTaskKey) else 2


@click.command()
@click.argument("task_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed task.")
@click.option(
    "--unconfirmed",
    "all_unconfirmed",
    is_flag=True,
    help="Resubmit every unconfirmed task (the service may have one already: pays again).",
)
@click.option("--size", default=None, help="Fix the size first, e.g. 1440x2560.")
@click.option("--style", default=None, help="Fix the style first.")
@click.option("--prompt", default=None, help="Replace the prompt first (one task only).")
@click.option("--req-key", default=None, help="Use another model.")
@click.option(
    "--character",
    "characters",
    multiple=True,
    help="Replace the reference images (repeat for several).",
)
@click.option(
    "-o",
    "--output",
    default=None,
    help="Save this one task's image here instead (fetched again without resubmitting "
    "while the service keeps it, ~12 h).",
)
@tasks_dir_option
@config_option
def retry(
    task_ids: tuple[str, ...],
    all_failed: bool,
    all_unconfirmed: bool,
    size: str | None,
    style: str | None,
    prompt: str | None,
    req_key: str | None,
    characters: tuple[str, ...],
    output: str | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Retry failed tasks (history is kept in the record), optionally with a fix.

    A task whose image could not be saved, or whose polls made no progress, is fetched
    again under its own task id while the service keeps it (~12 h): no new submission.
    Everything else is resubmitted. Every amended task is checked first; if any is bad,
    nothing is retried.
    """
    if not task_ids and not all_failed and not all_unconfirmed:
        raise click.UsageError(_("name TASK_ID... or use --failed / --unconfirmed"))
    several = all_failed or all_unconfirmed or len(set(task_ids)) > 1
    one = _("name a single TASK_ID (not several, nor --failed / --unconfirmed)")
    if several and prompt is not None:
        _fail(_("--prompt changes one frame's prompt: {one}").format(one=one), 2)
    if several and output is not None:
        _fail(_("--output saves one frame elsewhere: {one}").format(one=one), 2)
    workspace = _workspace(tasks_dir, config_path)
    try:
        report = run_sync(
            _until_signal(
                workspace.retry(
                    task_ids,
                    all_failed=all_failed,
                    all_unconfirmed=all_unconfirmed,
                    prompt=prompt,
                    style=style,
                    size=size,
                    req_key=req_key,
                    characters=characters or None,
                    output=output,
                    on_wait=say_waiting,
                )
            )
        )
    except RetryInvalid as exc:
        for problem in exc.problems:
            err_console.print(f"asyncimg: {problem}", markup=False)
        _fail(_("nothing was retried: fix the above, then run it again"), 2)
    except AsyncImgError as exc:
        _fail(str(exc), _exit_code(exc))
    if report is None:
        _say_interrupted(workspace)
        sys.exit(EXIT_INTERRUPTED)
    for record in report.refetched:
        out_console.print(
            _(
                "{name}: task {task_id} fetched again (no new submission); "
                "`asyncimg check` downloads it to {output}"
            ).format(name=record.filename, task_id=record.task_id, output=record.output_path),
            markup=False,
        )
    for record in report.moved_on:
        out_console.print(
            _("{name}: skipped — another asyncimg is handling it (now {status})").format(
                name=record.filename, status=_(record.status.value)
            ),
            markup=False,
        )
    for taken in report.taken:
        out_console.print(taken.line(), markup=False)
    if report.batch.outcomes:
        report_submit(report)
    elif not report.refetched and not report.moved_on and not report.taken:
        kinds = [k for k, on in (("failed", all_failed), ("unconfirmed", all_unconfirmed)) if on]
        out_console.print(
            _("no {kinds} tasks to retry").format(kinds=" / ".join(map(_, kinds)) or _("failed"))
            if language() != "en"
            else f"no {' or '.join(kinds) or 'failed'} tasks to retry",
            markup=False,
        )
    sys.exit(report.exit_code)


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' (a bare number means days) → seconds."""
    match = _AGE.match(text.lower())
    if not match:
        raise click.BadParameter(_("{text!r} is not an age like 7d, 12h or 30m").format(text=text))
    return float(match.group(1)) * _UNIT[match.group(2)]


@click.command()
@click.option("--completed", is_flag=True, help="Remove completed records.")
@click.option("--failed", is_flag=True, help="Remove failed records.")
@click.option("--older-than", default=None, help="Only records finished longer ago (7d, 12h).")
@click.option(
    "--archive",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Move the records here instead of deleting them.",
)
@tasks_dir_option
@config_option
def clean(
    completed: bool,
    failed: bool,
    older_than: str | None,
    archive: Path | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Delete (or archive) completed and/or failed records. Images are never touched."""
    if not completed and not failed:
        raise click.UsageError(_("say which records: --completed, --failed or both"))
    workspace = _workspace(tasks_dir, config_path)
    age = parse_age(older_than) if older_than else None
    report = workspace.clean(completed=completed, failed=failed, older_than=age, archive=archive)
    verb = _("archived to {folder}").format(folder=archive) if archive else _("deleted")
    if completed:
        line = _("{n} completed records {verb}").format(n=report.completed, verb=verb)
        out_console.print(line, markup=False)
    if failed:
        out_console.print(
            _("{n} failed records {verb}").format(n=report.failed, verb=verb), markup=False
        )


# -- adopt --------------------------------------------------------------------------------


@click.command()
@click.argument("task_id")
@click.option(
    "-o", "--output", "output_path", required=True, help="Where the task's image is saved."
)
@click.option(
    "--req-key",
    default=None,
    help="The task's model (default: the waiting record's, else asyncimg.toml's).",
)
@tasks_dir_option
@config_option
def adopt(
    task_id: str,
    output_path: str,
    req_key: str | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Attach an existing TASK_ID (a lost reply, an unwritten record, a task submitted by
    hand or by the old scripts) to the folder; `asyncimg check` then downloads it.

    An unconfirmed or pending record for the same output file takes the id; otherwise a new
    record is made (its prompt shows as unknown).
    """
    workspace = _workspace(tasks_dir, config_path)
    try:
        report = run_sync(
            _until_signal(workspace.adopt(task_id, output_path, req_key, on_wait=say_waiting))
        )
    except AsyncImgError as exc:
        _fail(str(exc), _exit_code(exc))
    if report is None:
        _say_interrupted(workspace)
        sys.exit(EXIT_INTERRUPTED)
    for warning in report.warnings:
        err_console.print(f"asyncimg: {_('warning')}: {warning}", markup=False)
    out_console.print(
        _("adopted {task_id} for {output}; asyncimg check downloads it").format(
            task_id=report.record.task_id, output=output_path
        ),
        markup=False,
    )


ALL_COMMANDS = (submit, check, monitor, list_, show, retry, clean, adopt)
