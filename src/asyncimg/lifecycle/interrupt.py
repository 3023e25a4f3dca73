"""Ctrl+C and SIGTERM as a clean stop: the running task is cancelled at its next await.

Record and image writes are synchronous and atomic, so a cancel can never land inside one;
an in-flight submit shields itself (see submit.py) so its task id is still written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from types import TracebackType


class StopOnSignals:
    """`with StopOnSignals() as stop:` inside a coroutine; `stop.interrupted` says whether
    a signal ended the block. The cancel it caused is swallowed and taken back on exit."""

    def __init__(self) -> None:
        self.interrupted = False
        self._installed: list[signal.Signals] = []
        self._task: asyncio.Task[object] | None = None
        self._cancels_before = 0

    def __enter__(self) -> StopOnSignals:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._cancels_before = self._task.cancelling() if self._task is not None else 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop)
                self._installed.append(sig)
        return self

    def _stop(self) -> None:
        self.interrupted = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        if self.interrupted and self._task is not None:
            # A task left "cancelling" would turn the caller's next TaskGroup or timeout
            # error into CancelledError.
            while self._task.cancelling() > self._cancels_before:
                self._task.uncancel()
        return self.interrupted and exc_type is asyncio.CancelledError
