"""Monitor: check passes every `interval` seconds until nothing is left or the user stops it.

Ctrl+C / SIGTERM cancel the pass at its next network wait. Record and image writes are
synchronous and atomic, so cancellation can never leave one half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncimg.lifecycle.check import Checker, PassSummary

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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    cancels_before = current.cancelling() if current is not None else 0

    def request_stop() -> None:
        outcome.interrupted = True
        stop.set()
        if current is not None and not current.done():
            current.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, request_stop)
            installed.append(sig)
    try:
        while not stop.is_set():
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    except asyncio.CancelledError:
        if not outcome.interrupted:
            raise
        # Our own cancel from the signal handler: swallow it and report.
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    if outcome.interrupted and current is not None:
        # Take our cancel request back, also when wait_for absorbed it without raising
        # (3.11 does when the stop event fires together with the cancel): a task left
        # "cancelling" turns the caller's next TaskGroup/timeout error into CancelledError.
        while current.cancelling() > cancels_before:
            current.uncancel()
    return outcome
