"""`asyncimg cancel TASK...`: withdraw frames; queued ones are cancelled on the service."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asyncimg.api import run_sync
from asyncimg.cli.commands import (
    _exit_code,
    _fail,
    _until_signal,
    _workspace,
    config_option,
    tasks_dir_option,
)
from asyncimg.cli.emit import err_console, out_console
from asyncimg.lifecycle.cancel import Outcome, cancel_tasks
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.protocol.errors import AsyncImgError


@click.command()
@click.argument("keys", nargs=-1, required=True)
@tasks_dir_option
@config_option
def cancel(keys: tuple[str, ...], tasks_dir: Path | None, config_path: Path | None) -> None:
    """Cancel tasks (task ids, or any key `show` accepts).

    A task the service still has `in_queue` is cancelled there (CVCancelTask); one already
    generating cannot be, and the refusal is recorded on it. A frame not yet sent is
    withdrawn here. Cancelled frames are `failed`; `asyncimg retry` submits them again.
    Exit 0 when every task was cancelled, 1 when some were not, 2 when the service could
    not be asked.
    """
    workspace = _workspace(tasks_dir, config_path)
    try:
        client = workspace.client_factory()
    except AsyncImgError as exc:
        _fail(str(exc), _exit_code(exc))

    async def run() -> list[Outcome]:
        async with client:
            return await cancel_tasks(workspace.store, client, keys, clock=workspace.clock)

    outcomes = run_sync(_until_signal(run()))
    if outcomes is None:
        sys.exit(EXIT_INTERRUPTED)
    for outcome in outcomes:
        console = out_console if outcome.cancelled else err_console
        console.print(outcome.line, markup=False)
    if any(o.could_not_ask for o in outcomes):
        sys.exit(2)
    sys.exit(0 if all(o.cancelled for o in outcomes) else 1)
