"""What the user sees: a progress bar while monitoring, and the end-of-run summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType

from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from asyncimg.api import Workspace
from asyncimg.lifecycle.check import PassSummary
from asyncimg.lifecycle.decide import waits_for_user
from asyncimg.lifecycle.scheduler import SchedulerView
from asyncimg.store.index import RecordSummary
from asyncimg.store.open import describe
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

LIST_COLUMNS = ("task", "status", "output", "updated", "error")


class MonitorDisplay:
    """A progress bar (finished / all) on a terminal; plain lines elsewhere."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self._printed: tuple[tuple[str, int], ...] = ()

    def __enter__(self) -> MonitorDisplay:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]frames"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("", total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.__exit__(exc_type, exc, tb)

    def event(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def update(self, summary: PassSummary | SchedulerView) -> None:
        total = sum(summary.counts.values())
        finished = summary.counts.get(TaskState.COMPLETED.value, 0) + summary.counts.get(
            TaskState.FAILED.value, 0
        )
        if self.progress is not None and self.task is not None:
            self.progress.update(
                self.task, total=total, completed=finished, description=summary.line()
            )
            return
        if isinstance(summary, PassSummary):
            self.console.print(f"pass: {summary.line()}", markup=False, highlight=False)
            return
        counts = tuple(sorted(summary.counts.items()))
        if counts != self._printed:  # a log or a pipe gets a line when something moved
            self._printed = counts
            self.console.print(f"progress: {summary.line()}", markup=False, highlight=False)


def print_summary(console: Console, summary: PassSummary, workspace: Workspace) -> None:
    """Counts, the failed and unconfirmed frames with their reasons, and what to run next."""
    console.print(summary.line(), markup=False, highlight=False)
    scanned = workspace.store.scan()
    budget = workspace.unconfirmed_budget
    failed = [t for t in scanned.tasks if t.status is TaskState.FAILED]
    waiting = [r for r in scanned.records if waits_for_user(r, budget)]
    store = workspace.store
    where = f"--tasks-dir {store.root}" if isinstance(store, TaskStore) else describe(store)

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    if waiting:
        say(f"{len(waiting)} unconfirmed (a submit's answer was lost; the task may exist):")
        for record in waiting:
            reason = record.last_error.message if record.last_error else "answer lost"
            say(f"  {record.local_id[:8]}  {record.output_path}: {reason}")
        say(
            f"  if you find its task id: asyncimg adopt TASK_ID -o PATH {where}; "
            f"to pay for it again: asyncimg retry {waiting[0].local_id[:8]} {where}"
        )
    if not failed:
        return
    say(f"{len(failed)} failed:")
    for task in failed:
        reason = task.last_error.message if task.last_error else "unknown reason"
        hint = ""
        if task.last_error is not None and task.last_error.resubmittable:
            hint = " (resubmitting may help)"
        say(f"  {task.task_id or task.local_id[:8]}  {task.output_path}: {reason}{hint}")
    say(
        f"retry them all with: asyncimg retry --failed {where}"
        " (add --size or --style to fix them first)"
    )


def task_table(tasks: Sequence[RecordSummary]) -> str:
    """`asyncimg list`'s table: a header and one line per task, in aligned columns.

    Plain text rather than a rich Table: rich lays out every cell (about a millisecond per
    row), which made `list` over a folder of ten thousand records take seconds.
    """
    rows: list[list[str]] = [list(LIST_COLUMNS)]
    for t in tasks:
        cells = (
            t.task_id or f"(local {t.local_id[:8]})",
            t.status.value,
            t.output_path,
            time.strftime("%m-%d %H:%M:%S", time.localtime(t.updated_at)),
            t.last_error.message if t.last_error else "",
        )
        rows.append([_printable(cell) for cell in cells])
    widths = [max(_width(row[i]) for row in rows) for i in range(len(LIST_COLUMNS) - 1)]
    lines = []
    for row in rows:
        padded = [cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _width(text: str) -> int:
    """Terminal columns (a Chinese character takes two)."""
    return len(text) if text.isascii() else cell_len(text)


def _printable(text: str) -> str:
    """One table cell on one line: control characters (a newline in a message) as spaces."""
    return text if text.isprintable() else "".join(c if c.isprintable() else " " for c in text)
