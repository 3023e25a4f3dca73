"""`asyncimg submit | check | monitor | list | show | retry | clean`."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from asyncimg.api import SubmitReport, Workspace, outcome_line, run_sync
from asyncimg.cli.output import MonitorDisplay, print_summary, task_table
from asyncimg.lifecycle.interrupt import StopOnSignals
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.lifecycle.submit import TaskRequest
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.states import TaskState

T = TypeVar("T")

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

tasks_dir_option = click.option(
    "--tasks-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of task records (default: asyncimg.toml's tasks_dir, else async_tasks/).",
)
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


def _workspace(tasks_dir: Path | None, config_path: Path | None) -> Workspace:
    try:
        return Workspace.open(tasks_dir, config_path=config_path)
    except AsyncImgError as exc:
        _fail(str(exc), 2)


# -- submit -------------------------------------------------------------------------------

BATCH_FIELDS = {"prompt", "output_path", "output", "character_images", "style", "req_key", "size"}


def read_batch(path: Path) -> Iterator[TaskRequest]:
    """Requests from a JSONL or CSV file; every problem names the file and line."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows: Iterator[tuple[int, dict[str, Any]]] = (
            (i + 2, dict(row)) for i, row in enumerate(csv.DictReader(text.splitlines()))
        )
    else:
        rows = _jsonl_rows(path, text)
    for line_no, row in rows:
        yield _request_from_row(path, line_no, row)


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise click.UsageError(f"{path}:{i}: each line must be a JSON object")
        yield i, row


def _request_from_row(path: Path, line_no: int, row: dict[str, Any]) -> TaskRequest:
    where = f"{path}:{line_no}"
    prompt = row.get("prompt")
    output = row.get("output_path") or row.get("output")
    if not isinstance(prompt, str) or not prompt.strip():
        raise click.UsageError(f"{where}: prompt is missing")
    if not isinstance(output, str) or not output.strip():
        raise click.UsageError(f"{where}: output_path is missing")
    refs = row.get("character_images") or []
    if isinstance(refs, str):
        refs = [p for p in re.split(r"[;|]", refs) if p.strip()]
    if not isinstance(refs, list) or not all(isinstance(p, str) for p in refs):
        raise click.UsageError(f"{where}: character_images must be a list of paths")
    params = {k: v for k, v in row.items() if k not in BATCH_FIELDS and v not in (None, "")}
    params = {k: _coerce(v) for k, v in params.items()}
    return TaskRequest(
        prompt=prompt,
        output_path=output,
        character_images=tuple(p.strip() for p in refs),
        style=row.get("style") or None,
        req_key=row.get("req_key") or None,
        size=row.get("size") or None,
        params=params,
    )


def _coerce(value: Any) -> Any:
    """CSV cells are strings: read numbers and booleans as such."""
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


async def _until_signal(work: Coroutine[Any, Any, T]) -> T | None:
    """`work`'s result, or None when Ctrl+C / SIGTERM stopped it (records stay intact)."""
    with StopOnSignals():
        return await work
    return None


def report_submit(report: SubmitReport) -> None:
    for warning in report.warnings:
        err_console.print(f"asyncimg: warning: {warning}", markup=False)
    for outcome in report.batch.outcomes:
        out_console.print(outcome_line(outcome), markup=False)
    for rejected in report.invalid:
        out_console.print(
            f"{rejected.request.output_path}: rejected — {rejected.error}", markup=False
        )
    for outcome in report.batch.outcomes:
        if outcome.warning:
            out_console.print(f"{outcome.record.filename}: {outcome.warning}", markup=False)
    unconfirmed = f", {report.unconfirmed} unconfirmed" if report.unconfirmed else ""
    out_console.print(
        f"{report.submitted} submitted, {report.queued} queued locally{unconfirmed}, "
        f"{report.rejected} rejected",
        markup=False,
    )
    if report.batch.halted is not None:
        err_console.print(
            f"asyncimg: stopped before sending the rest: {report.batch.halted}"
            f"{' — ' + report.batch.halted.hint if report.batch.halted.hint else ''}",
            markup=False,
        )
    elif report.queued or report.unconfirmed:
        out_console.print(
            "Queued tasks are submitted by `asyncimg check` / `asyncimg monitor`.", markup=False
        )


@click.command()
@click.argument("prompt", required=False)
@click.option("-o", "--output", "output_path", help="Where the image is saved.")
@click.option("--character", "characters", multiple=True, help="A character reference image.")
@click.option("--style", help="Style preset (manga, realistic, watercolor, oil, or your own).")
@click.option("--req-key", help="Model (default jimeng_t2i_v40).")
@click.option("--size", help="WIDTHxHEIGHT, e.g. 1440x2560.")
@click.option(
    "--batch",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL or CSV: one frame per line.",
)
@tasks_dir_option
@config_option
def submit(
    prompt: str | None,
    output_path: str | None,
    characters: tuple[str, ...],
    style: str | None,
    req_key: str | None,
    size: str | None,
    batch: Path | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Submit one frame (PROMPT -o OUT) or a whole batch (--batch FILE)."""
    if batch is not None:
        if prompt or output_path:
            raise click.UsageError("give either PROMPT -o OUT or --batch FILE, not both")
        requests = list(read_batch(batch))
    else:
        if not prompt or not output_path:
            raise click.UsageError("PROMPT and -o/--output are required (or use --batch FILE)")
        requests = [TaskRequest(prompt, output_path, characters, style, req_key, size)]
    workspace = _workspace(tasks_dir, config_path)
    try:
        report = run_sync(_until_signal(workspace.submit(requests)))
    except AsyncImgError as exc:
        _fail(str(exc), 2)
    if report is None:
        _say_interrupted(workspace)
        sys.exit(EXIT_INTERRUPTED)
    report_submit(report)
    sys.exit(report.exit_code)


# -- check / monitor ----------------------------------------------------------------------


@click.command()
@tasks_dir_option
@config_option
def check(tasks_dir: Path | None, config_path: Path | None) -> None:
    """One pass: submit queued tasks, poll running ones, download finished images."""
    sys.exit(run_check(tasks_dir, config_path))


def run_check(tasks_dir: Path | None, config_path: Path | None) -> int:
    workspace = _workspace(tasks_dir, config_path)
    return _run_passes(workspace, interval=0, until_done=False, max_passes=1, report=_event)


def _say_interrupted(workspace: Workspace) -> None:
    """One line, from the records as they are now on disk."""
    tasks = workspace.store.scan().tasks
    counts = {s: sum(t.status is s for t in tasks) for s in TaskState}
    shown = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no tasks"
    out_console.print(f"stopped by user; every record is intact: {shown}", markup=False)


def _event(line: str) -> None:
    out_console.print(line, markup=False)


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds between passes (default 30).",
)
@click.option("--keep-running", is_flag=True, help="Keep watching after every task has finished.")
@tasks_dir_option
@config_option
def monitor(
    interval: float | None,
    keep_running: bool,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Check repeatedly until every task is completed or failed (Ctrl+C stops safely)."""
    sys.exit(run_monitor(tasks_dir, config_path, interval, keep_running))


def run_monitor(
    tasks_dir: Path | None,
    config_path: Path | None,
    interval: float | None,
    keep_running: bool = False,
) -> int:
    workspace = _workspace(tasks_dir, config_path)
    with MonitorDisplay(out_console) as display:
        return _run_passes(
            workspace,
            interval=interval,
            until_done=not keep_running,
            on_pass=display.update,
            report=display.event,
        )


def _run_passes(workspace: Workspace, **options: Any) -> int:
    """Passes until `Workspace.monitor` returns; the exit status for check and monitor.

    0 nothing failed, 1 frames failed or wait for the user, 2 setup problem (credentials,
    clock, config, a record that cannot be written), 130 stopped by a signal.
    """
    try:
        outcome = run_sync(workspace.monitor(**options))
    except AsyncImgError as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        outcome = None
    if outcome is None or outcome.interrupted or outcome.last is None:
        _say_interrupted(workspace)
        return EXIT_INTERRUPTED
    print_summary(out_console, outcome.last, workspace)
    return outcome.last.exit_code


# -- list / show --------------------------------------------------------------------------


@click.command("list")
@click.option("--status", type=click.Choice([s.value for s in TaskState]), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records.")
@tasks_dir_option
@config_option
def list_(
    status: str | None, as_json: bool, tasks_dir: Path | None, config_path: Path | None
) -> None:
    """List task records."""
    workspace = _workspace(tasks_dir, config_path)
    if as_json:  # whole records: read them all
        loaded = workspace.store.load_all()
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
    click.echo(task_table(tasks))
    out_console.print(f"{len(tasks)} tasks", markup=False)


@click.command()
@click.argument("task_id")
@tasks_dir_option
@config_option
def show(task_id: str, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Show one task record in full."""
    workspace = _workspace(tasks_dir, config_path)
    try:
        record = workspace.store.get(task_id)
    except (AsyncImgError, KeyError) as exc:
        _fail(str(exc).strip("'\""), 1)
    click.echo(json.dumps(json.loads(record.model_dump_json()), ensure_ascii=False, indent=2))


# -- retry / clean ------------------------------------------------------------------------


@click.command()
@click.argument("task_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed task.")
@click.option("--size", default=None, help="Fix the size first, e.g. 1440x2560.")
@click.option("--style", default=None, help="Fix the style first.")
@click.option("--prompt", default=None, help="Replace the prompt first.")
@click.option("--req-key", default=None, help="Use another model.")
@tasks_dir_option
@config_option
def retry(
    task_ids: tuple[str, ...],
    all_failed: bool,
    size: str | None,
    style: str | None,
    prompt: str | None,
    req_key: str | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Resubmit failed tasks (history is kept in the record), optionally with a fix."""
    if not task_ids and not all_failed:
        raise click.UsageError("name TASK_ID... or use --failed")
    workspace = _workspace(tasks_dir, config_path)
    try:
        report = run_sync(
            _until_signal(
                workspace.retry(
                    task_ids,
                    all_failed=all_failed,
                    prompt=prompt,
                    style=style,
                    size=size,
                    req_key=req_key,
                )
            )
        )
    except (AsyncImgError, KeyError) as exc:
        _fail(str(exc).strip("'\""), 1)
    if report is None:
        _say_interrupted(workspace)
        sys.exit(EXIT_INTERRUPTED)
    if not report.batch.outcomes:
        out_console.print("no failed tasks to retry", markup=False)
        return
    report_submit(report)
    sys.exit(report.exit_code)


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """'7d', '12h', '30m', '90s', '2w' (a bare number means days) → seconds."""
    match = _AGE.match(text.lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not an age like 7d, 12h or 30m")
    return float(match.group(1)) * _UNIT[match.group(2)]


@click.command()
@click.option("--completed", is_flag=True, required=True, help="Remove completed records.")
@click.option("--older-than", default=None, help="Only records completed longer ago (7d, 12h).")
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
    older_than: str | None,
    archive: Path | None,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Delete (or archive) finished records. Images are never touched."""
    workspace = _workspace(tasks_dir, config_path)
    age = parse_age(older_than) if older_than else None
    removed = workspace.clean_completed(older_than=age, archive=archive)
    verb = f"archived to {archive}" if archive else "deleted"
    out_console.print(f"{removed} completed records {verb}", markup=False)


ALL_COMMANDS = (submit, check, monitor, list_, show, retry, clean)
