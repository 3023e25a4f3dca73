"""What the user sees: a progress bar while monitoring, and the end-of-run summary."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from asyncimg.api import Workspace
from asyncimg.lifecycle.check import PassSummary
from asyncimg.lifecycle.decide import waits_for_user
from asyncimg.lifecycle.scheduler import SchedulerView
from asyncimg.store.states import TaskState


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
    records = workspace.store.load_all().records
    budget = workspace.unconfirmed_budget
    failed = [r for r in records if r.status is TaskState.FAILED]
    waiting = [r for r in records if waits_for_user(r, budget)]
    root = workspace.store.root

    def say(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    if waiting:
        say(f"{len(waiting)} unconfirmed (a submit's answer was lost; the task may exist):")
        for record in waiting:
            reason = record.last_error.message if record.last_error else "answer lost"
            say(f"  {record.local_id[:8]}  {record.output_path}: {reason}")
        say(
            f"  if you find its task id: asyncimg adopt TASK_ID -o PATH --tasks-dir {root}; "
            f"to pay for it again: asyncimg retry {waiting[0].local_id[:8]} --tasks-dir {root}"
        )
    if not failed:
        return
    say(f"{len(failed)} failed:")
    for record in failed:
        reason = record.last_error.message if record.last_error else "unknown reason"
        hint = ""
        if record.last_error is not None and record.last_error.resubmittable:
            hint = " (resubmitting may help)"
        say(f"  {record.task_id or record.local_id[:8]}  {record.output_path}: {reason}{hint}")
    say(
        f"retry them all with: asyncimg retry --failed --tasks-dir {root}"
        " (add --size or --style to fix them first)"
    )
