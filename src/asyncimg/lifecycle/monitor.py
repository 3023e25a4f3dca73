"""Monitor: check passes every `interval` seconds until nothing is left or the user stops it.

Ctrl+C / SIGTERM cancel the pass at its next network wait. Record and image writes are
synchronous and atomic, so cancellation can never leave one half-written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.interrupt import StopOnSignals

EXIT_INTERRUPTED = 130


@dataclass
class MonitorOutcome:
    passes: int = 0
    interrupted: bool = False
    last: PassSummary | None = None
    summaries: list[PassSummary] = field(default_factory=list)


async def monitor(
    checker: Checker,
    *,
    interval: float,
    until_done: bool = True,
    on_pass: Callable[[PassSummary], None] | None = None,
    max_passes: int | None = None,
) -> MonitorOutcome:
    """Run passes until no task is unfinished (with `until_done`), or until interrupted."""
    outcome = MonitorOutcome()
    with StopOnSignals() as stop:
        while True:
            summary = await checker.run_pass()
            outcome.passes += 1
            outcome.last = summary
            outcome.summaries.append(summary)
            if on_pass is not None:
                on_pass(summary)
            if until_done and summary.unfinished == 0:
                break
            if summary.halted:  # credentials or clock: another pass cannot do better
                break
            if max_passes is not None and outcome.passes >= max_passes:
                break
            await asyncio.sleep(interval)
    outcome.interrupted = stop.interrupted
    return outcome
