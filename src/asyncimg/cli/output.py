"""What the user sees: a progress bar while monitoring, and the end-of-run summary."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TypeVar

from rich.cells import cell_len
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from asyncimg.api import Workspace
from asyncimg.cli.emit import Emitter, emit_json, style_of
from asyncimg.i18n import N_, _
from asyncimg.lifecycle.check import PassSummary
from asyncimg.lifecycle.decide import waits_for_user
from asyncimg.lifecycle.events import Event
from asyncimg.lifecycle.explain import message_of
from asyncimg.lifecycle.scheduler import SchedulerView
from asyncimg.store.index import RecordSummary
from asyncimg.store.open import describe
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

T = TypeVar("T", RecordSummary, TaskRecord)

LIST_COLUMNS = (N_("task"), N_("status"), N_("output"), N_("updated"), N_("error"))
#: The states, marked for translation (shown in counts, `list` and `show`).
STATE_NAMES = (
    N_("pending"),
    N_("unconfirmed"),
    N_("submitted"),
    N_("processing"),
    N_("completed"),
    N_("failed"),
)


class FramesBar(ProgressColumn):
    """The bar: completed frames green, failed ones red, the rest grey, so a finished
    chapter with failures never looks all green."""

    def __init__(self, width: int = 30) -> None:
        super().__init__()
        self.width = width

    def render(self, task: Task) -> Text:
        return split_bar(
            self.width,
            int(task.fields.get("ok", 0)),
            int(task.fields.get("failed", 0)),
            int(task.total or 0),
        )


def split_bar(width: int, ok: int, failed: int, total: int) -> Text:
    """`width` cells: ok green, failed red (at least one cell when any failed), rest grey."""
    bar = Text()
    if total <= 0:
        bar.append("━" * width, style="grey23")
        return bar
    red = round(width * failed / total)
    if failed and not red:
        red = 1
    green = min(width - red, round(width * ok / total))
    if ok and not green and width - red > 0:
        green = 1
    bar.append("━" * green, style="green")
    bar.append("━" * red, style="red")
    bar.append("━" * (width - green - red), style="grey23")
    return bar


class MonitorDisplay:
    """A progress bar (finished / all, failures in red) on a terminal; plain lines elsewhere.

    Set `interrupted` before leaving the block after Ctrl+C: the bar is then taken away
    instead of being drawn once more with stale counts.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.interrupted = False
        self._printed: tuple[tuple[str, int], ...] = ()
        self._stuck: str | None = None

    def __enter__(self) -> MonitorDisplay:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]" + _("frames")),
                FramesBar(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("", total=None, ok=0, failed=0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            if self.interrupted or exc_type is not None:
                self.progress.live.transient = True  # erase it: its counts are stale
            self.progress.__exit__(exc_type, exc, tb)

    def event(self, event: Event) -> None:
        self.console.print(event.text, markup=False, highlight=False, style=style_of(event))

    def update(self, summary: PassSummary | SchedulerView) -> None:
        counts = summary.counts
        total = sum(counts.values())
        ok = counts.get(TaskState.COMPLETED.value, 0)
        failed = counts.get(TaskState.FAILED.value, 0)
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task,
                total=total,
                completed=ok + failed,
                description=summary.line(),
                ok=ok,
                failed=failed,
            )
            return
        if isinstance(summary, PassSummary):
            self.console.print(
                _("pass: {line}").format(line=summary.line()), markup=False, highlight=False
            )
            return
        moved = tuple(sorted(counts.items()))
        stuck = summary.summary.stuck
        if moved != self._printed or stuck != self._stuck:  # a log gets a line when something moved
            self._printed, self._stuck = moved, stuck
            self.console.print(
                _("progress: {line}").format(line=summary.line()), markup=False, highlight=False
            )


class JsonProgress:
    """`monitor --json`: a `progress` event whenever the counts (or the stuck reason) change."""

    def __init__(self) -> None:
        self._last: tuple[object, ...] = ()

    def __call__(self, summary: PassSummary | SchedulerView) -> None:
        inner = summary.summary if isinstance(summary, SchedulerView) else summary
        key = (tuple(sorted(summary.counts.items())), inner.stuck)
        if key == self._last:
            return
        self._last = key
        out: dict[str, object] = {"event": "progress", "counts": dict(summary.counts)}
        out["stuck"] = inner.stuck
        if isinstance(summary, SchedulerView):
            out["elapsed_s"] = round(summary.elapsed, 1)
            out["eta_s"] = None if summary.eta is None else round(summary.eta, 1)
        out["message"] = summary.line()
        emit_json(out)


def frame_order(tasks: Iterable[T]) -> list[T]:
    """Frames in the order they were submitted (a batch's line order), as the user counts
    them: by creation time, then output path; never by task id."""
    return sorted(tasks, key=lambda t: (t.created_at, t.output_path))


def print_summary(
    console: Console, summary: PassSummary, workspace: Workspace, say: Emitter | None = None
) -> None:
    """Counts, the failed and unconfirmed frames (in frame order) with their reasons, and
    what to run next; with a JSON emitter, one `summary` event holding the same."""
    scanned = workspace.store.scan()
    budget = workspace.unconfirmed_budget
    failed = frame_order(t for t in scanned.tasks if t.status is TaskState.FAILED)
    waiting = frame_order(r for r in scanned.records if waits_for_user(r, budget))
    store = workspace.store
    where = f"--tasks-dir {store.root}" if isinstance(store, TaskStore) else describe(store)
    retry_all = f"asyncimg retry --failed {where}"
    if say is not None and say.as_json:
        emit_json(
            {
                "event": "summary",
                "counts": dict(summary.counts),
                "exit_code": summary.exit_code,
                "halted": summary.halted,
                "stuck": summary.stuck,
                "failed": [_failed_json(t) for t in failed],
                "unconfirmed": [_failed_json(r) for r in waiting],
                "retry_command": retry_all if failed else None,
                "kept": summary.kept,
                "message": summary.line(),
            }
        )
        return

    def say_line(text: str, style: str | None = None) -> None:
        console.print(text, markup=False, highlight=False, style=style)

    say_line(summary.line())
    if waiting:
        say_line(
            _("{n} unconfirmed (a submit's answer was lost; the task may exist):").format(
                n=len(waiting)
            )
        )
        for record in waiting:
            error = record.last_error
            why = _("answer lost")
            if error is not None:
                why = message_of(error.code, error.kind, error.message)
            say_line(f"  {record.local_id[:8]}  {record.output_path}: {why}", "yellow")
        say_line(
            _(
                "  if you find its task id: asyncimg adopt TASK_ID -o PATH {where}; "
                "to pay for it again: asyncimg retry {key} {where}"
            ).format(where=where, key=waiting[0].local_id[:8])
        )
    if not failed:
        return
    say_line(_("{n} failed:").format(n=len(failed)), "red")
    for task in failed:
        why = _("unknown reason")
        hint = ""
        if task.last_error is not None:
            why = message_of(None, task.last_error.kind, task.last_error.message)
            if task.last_error.resubmittable:
                hint = _(" (resubmitting may help)")
        name = task.task_id or task.local_id[:8]
        say_line(f"  {name}  {task.output_path}: {why}{hint}", "red")
    say_line(
        _("retry them all with: {command} (add --size or --style to fix them first)").format(
            command=retry_all
        )
    )


def _failed_json(task: RecordSummary | TaskRecord) -> dict[str, object]:
    error = task.last_error
    return {
        "output_path": task.output_path,
        "filename": task.filename,
        "task_id": task.task_id,
        "local_id": task.local_id,
        "status": task.status.value,
        "error": None
        if error is None
        else {"kind": error.kind, "message": error.message, "resubmittable": error.resubmittable},
    }


def task_table(tasks: Sequence[RecordSummary], width: int | None = None) -> str:
    """`asyncimg list`'s table: a header and one line per task, in aligned columns, each
    line at most `width` terminal columns (long output paths lose their start, long errors
    their end, marked with "…"); None: nothing is cut.

    Plain text rather than a rich Table: rich lays out every cell (about a millisecond per
    row), which made `list` over a folder of ten thousand records take seconds.
    """
    rows: list[list[str]] = [[_(name) for name in LIST_COLUMNS]]
    for t in tasks:
        cells = (
            t.task_id or _("(local {id})").format(id=t.local_id[:8]),
            _(t.status.value),
            t.output_path,
            time.strftime("%m-%d %H:%M:%S", time.localtime(t.updated_at)),
            message_of(None, t.last_error.kind, t.last_error.message) if t.last_error else "",
        )
        rows.append([_printable(cell) for cell in cells])
    widths = [max(_width(row[i]) for row in rows) for i in range(len(LIST_COLUMNS))]
    if width is not None:
        widths = fit_columns(widths, width)
        for row in rows:
            row[2] = cut_start(row[2], widths[2])
            row[4] = cut_end(row[4], widths[4])
    lines = []
    for row in rows:
        padded = [cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded[:-1], row[-1]]).rstrip())
    return "\n".join(lines)


def fit_columns(widths: list[int], total: int) -> list[int]:
    """Column widths that fit `total` terminal columns (two spaces between columns): the
    task, status and time keep theirs; the output and the error share what is left, the
    output at most half of it (at least 12 each)."""
    task, status, output, updated, error = widths
    room = total - (task + status + updated) - 2 * (len(widths) - 1)
    if output + error <= room:
        return widths
    out_w = min(output, max(12, min(room // 2, room - min(error, room // 2))))
    err_w = max(12, room - out_w)
    return [task, status, out_w, updated, min(error, err_w)]


def cut_end(text: str, width: int) -> str:
    """`text` in at most `width` columns, its end replaced by "…" if it does not fit."""
    if _width(text) <= width:
        return text
    out = ""
    for char in text:
        if _width(out + char) > width - 1:
            break
        out += char
    return out + "…"


def cut_start(text: str, width: int) -> str:
    """`text` in at most `width` columns, its start replaced by "…" (a path keeps its
    file name)."""
    if _width(text) <= width:
        return text
    out = ""
    for char in reversed(text):
        if _width(char + out) > width - 1:
            break
        out = char + out
    return "…" + out


def _width(text: str) -> int:
    """Terminal columns (a Chinese character takes two)."""
    return len(text) if text.isascii() else cell_len(text)


def _printable(text: str) -> str:
    """One table cell on one line: control characters (a newline in a message) as spaces."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)
