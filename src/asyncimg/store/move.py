"""Moving records between stores (`asyncimg migrate`): nothing resubmitted, nothing lost.

Each record is moved under its lock in the source: written to the destination first, then
removed from the source, so a crash in between leaves it in both, never in neither; a
second run finds it in the destination and only removes the source copy. States, task ids
and history move as they are: a task in flight is polled by the destination's monitors.
`asyncimg.api.migrate_records` runs this under the destination's lock on the output files, with
the rerun check as `admit` (a frame is paid for at most once in the destination).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from asyncimg.store.base import Store
from asyncimg.store.record import TaskRecord


@dataclass
class MoveReport:
    moved: int = 0
    already_there: int = 0
    busy: list[str] = field(default_factory=list)
    """Records another process held: left in the source; run again when it is idle."""
    problems: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    """Records `admit` kept out of the destination ("name: why"): left in the source."""


def records_to_move(source: Store, *, every_machine: bool) -> tuple[list[TaskRecord], list[str]]:
    """The records `migrate` moves from `source`, and the files it could not read."""
    report = source.load_everything() if every_machine else source.load_all()
    return list(report.records), [str(p) for p in report.problems]


def move_records(
    source: Store,
    dest: Store,
    records: Iterable[TaskRecord],
    *,
    admit: Callable[[TaskRecord], str | None] | None = None,
) -> MoveReport:
    """Move `records` (`records_to_move`) from `source` to `dest`. `admit` hears each
    record, as read under its lock, before it is written to `dest`: why it must stay in
    the source (reported in `refused`), or None to move it."""
    report = MoveReport()
    for record in records:
        name = record.task_id or record.local_id
        with source.lock(record) as held:
            current = source.reload(record) if held else None
            if current is None:
                report.busy.append(name)
                continue
            if dest.reload(current) is not None:
                report.already_there += 1  # an earlier run copied it, then stopped
            else:
                why = admit(current) if admit is not None else None
                if why is not None:
                    report.refused.append(f"{name}: {why}")
                    continue
                dest.save(current)
                report.moved += 1
            source.delete(current)
    return report
