"""Where events go: coloured lines for people, or JSON lines (`--json`) for programs.

The JSON lines are documented in README "Machine-readable output"; every line is one
object with an `event` field (see :data:`asyncimg.lifecycle.events.KINDS`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

from asyncimg.i18n import _
from asyncimg.lifecycle.decide import is_setup_problem
from asyncimg.lifecycle.events import EVENTS_VERSION, Event, frame_fields, stuck_reason
from asyncimg.lifecycle.explain import plain
from asyncimg.lifecycle.submit import SubmitOutcome

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

#: The colour of a line, by event kind (a terminal only; NO_COLOR and pipes get none).
STYLES = {
    "failed": "red",
    "halted": "bold red",
    "problem": "red",
    "unconfirmed": "yellow",
    "stuck": "yellow",
    "warning": "yellow",
    "completed": "green",
}


def say_waiting(line: str) -> None:
    """A command waiting for another's lock on its output files says so once (stderr)."""
    err_console.print(line, markup=False, highlight=False)


def style_of(event: Event) -> str | None:
    if event.kind == "frame":
        status = dict(event.fields).get("outcome")
        return {"rejected": "red", "unconfirmed": "yellow", "queued": "yellow"}.get(str(status))
    return STYLES.get(event.kind)


class Emitter:
    """Prints events: a line each (coloured by kind on a terminal), or a JSON object each."""

    def __init__(self, console: Console, *, as_json: bool = False) -> None:
        self.console = console
        self.as_json = as_json

    def __call__(self, event: Event) -> None:
        if self.as_json:
            emit_json(event.to_json())
        else:
            self.console.print(event.text, markup=False, highlight=False, style=style_of(event))

    def line(self, text: str, kind: str = "info") -> None:
        """A line for people only (nothing in JSON mode)."""
        if not self.as_json:
            self.console.print(text, markup=False, highlight=False, style=STYLES.get(kind))


def emit_json(obj: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed (a reader sees each frame as it happens)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def frame_line(outcome: SubmitOutcome) -> str:
    """`submit`'s line for one frame; a queued frame says why it waits."""
    record = outcome.record
    name = record.filename
    if outcome.accepted:
        return _("{name}: submitted as {task_id}").format(name=name, task_id=record.task_id)
    if outcome.queued:
        why = ""
        if outcome.error is not None and is_setup_problem(outcome.error):
            why = ""  # the line that stops the batch names it, once
        elif outcome.error is not None:
            why = f" — {stuck_reason(outcome.error) or plain(outcome.error)}"
        elif record.last_error is not None:
            why = f" ({record.last_error.message})"
        return _("{name}: queued locally{why}").format(name=name, why=why)
    if outcome.unconfirmed:
        return _(
            "{name}: unconfirmed — {error}; the service may have created (and billed) it; "
            "`asyncimg check` resubmits it at most once"
        ).format(name=name, error=outcome.error)
    error = plain(outcome.error) if outcome.error is not None else ""
    return _("{output}: rejected — {error}").format(output=name, error=error)


def outcome_name(outcome: SubmitOutcome) -> str:
    if outcome.accepted:
        return "submitted"
    if outcome.queued:
        return "queued"
    if outcome.unconfirmed:
        return "unconfirmed"
    return "rejected"


def frame_event(outcome: SubmitOutcome, extra: str = "") -> Event:
    return Event(
        "frame",
        frame_line(outcome) + extra,
        outcome.record,
        outcome.error,
        (("outcome", outcome_name(outcome)),),
    )


def skipped_json(output_path: str, why: str, previous: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event": "frame", "outcome": "skipped", "output_path": output_path}
    out["previous"] = frame_fields(previous)
    out["message"] = _("{output}: skipped — {reason}").format(output=output_path, reason=why)
    return out


def header(command: str) -> dict[str, Any]:
    """The first line of every `--json` stream: what made it and in which format."""
    return {"event": "start", "command": command, "version": EVENTS_VERSION}
