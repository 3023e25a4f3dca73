"""What `submit` and `retry` print after sending: each frame not said yet, the frames
skipped or refused, warnings and the totals (as lines, or JSON lines)."""

from __future__ import annotations

from asyncimg.api import SubmitReport
from asyncimg.cli.emit import (
    Emitter,
    emit_json,
    err_console,
    frame_event,
    out_console,
    skipped_json,
)
from asyncimg.i18n import N_, _
from asyncimg.lifecycle.events import Event, error_fields
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState

FORCE_HINT = N_(" (use --force to submit again)")


def replaces_failed(record: TaskRecord) -> str:
    """ " (replaces failed task T)" when this submit took a failed frame's place."""
    if not record.history or record.history[-1].status is not TaskState.FAILED:
        return ""  # submit sends new records, and failed ones it put back in the queue
    last = record.history[-1]
    name = (
        _("task {id}").format(id=last.task_id)
        if last.task_id
        else _("local task {id}").format(id=record.local_id[:8])
    )
    return _(" (replaces failed {name})").format(name=name)


def report_submit(
    report: SubmitReport,
    *,
    invalid: int = 0,
    said: set[str] | None = None,
    as_json: bool = False,
) -> None:
    """One line per frame (but those `said` already, by local id, as their answers came:
    the rest were left in the queue unsent), then the totals; `invalid` frames were refused
    before submitting. `as_json`: JSON lines instead."""
    say = Emitter(out_console, as_json=as_json)
    if not as_json:
        for warning in report.warnings:
            err_console.print(f"asyncimg: {_('warning')}: {warning}", markup=False)
    else:
        for warning in report.warnings:
            say(Event("warning", warning))
    for outcome in report.batch.outcomes:
        if said is not None and outcome.record.local_id in said:
            continue
        replaced = report.replaced.get(outcome.record.local_id)
        extra = _(" (replaces failed {name})").format(name=replaced) if replaced else ""
        say(frame_event(outcome, extra))
    for left in report.skipped:
        if as_json:
            emit_json(skipped_json(str(left.request.output_path), left.reason, left.previous))
        else:
            say.line(left.line(_(FORCE_HINT)))
    for rejected in report.invalid:
        text = _("{output}: rejected — {error}").format(
            output=rejected.request.output_path, error=rejected.error
        )
        if as_json:
            emit_json(
                {
                    "event": "frame",
                    "outcome": "rejected",
                    "output_path": str(rejected.request.output_path),
                    "error": error_fields(rejected.error),
                    "message": text,
                }
            )
        else:
            say.line(text, "failed")
    for outcome in report.batch.outcomes:
        if outcome.warning:
            say(Event("warning", f"{outcome.record.filename}: {outcome.warning}", outcome.record))
    unconfirmed = _(", {n} unconfirmed").format(n=report.unconfirmed) if report.unconfirmed else ""
    skipped = _(", {n} skipped").format(n=len(report.skipped)) if report.skipped else ""
    totals = _(
        "{submitted} submitted, {queued} queued locally{unconfirmed}, {rejected} rejected{skipped}"
    ).format(
        submitted=report.submitted,
        queued=report.queued,
        unconfirmed=unconfirmed,
        rejected=report.rejected + invalid,
        skipped=skipped,
    )
    if as_json:
        emit_json(
            {
                "event": "summary",
                "submitted": report.submitted,
                "queued": report.queued,
                "unconfirmed": report.unconfirmed,
                "rejected": report.rejected + invalid,
                "skipped": len(report.skipped),
                "halted": str(report.batch.halted) if report.batch.halted else None,
                "message": totals,
            }
        )
        return
    say.line(totals)
    if report.batch.halted is not None:
        err_console.print(
            "asyncimg: "
            + _("stopped before sending the rest: {error}").format(error=report.batch.halted)
            + (f" — {_(report.batch.halted.hint)}" if report.batch.halted.hint else ""),
            markup=False,
        )
    elif report.queued or report.unconfirmed:
        out_console.print(
            _("Queued tasks are submitted by `asyncimg check` / `asyncimg monitor`."), markup=False
        )
