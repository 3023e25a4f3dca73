"""`asyncimg callbacks`: receive callback-mode POSTs for this folder's tasks until Ctrl+C."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from aiohttp import web

from asyncimg.api import Workspace
from asyncimg.cli.commands import _fail, _workspace, config_option, tasks_dir_option
from asyncimg.i18n import _
from asyncimg.lifecycle.callbacks import (
    CALLBACK_PATH,
    CallbackReceiver,
    Reporter,
    add_callback_routes,
)
from asyncimg.lifecycle.interrupt import StopOnSignals
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.protocol.errors import AsyncImgError


def mount_callbacks(
    app: web.Application,
    workspace: Workspace,
    *,
    path: str = CALLBACK_PATH,
    report: Reporter | None = None,
) -> CallbackReceiver:
    """Receive callbacks for `workspace`'s tasks on `app` (e.g. `asyncimg serve --callbacks`)."""
    return add_callback_routes(
        app,
        store=workspace.store,
        client_factory=workspace.client_factory,
        make_checker=workspace.checker,
        path=path,
        report=report,
    )


@click.command("callbacks")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8090, show_default=True, help="0 picks a free port.")
@click.option("--path", "path", default=CALLBACK_PATH, show_default=True, help="URL path.")
@tasks_dir_option
@config_option
def callbacks(
    host: str, port: int, path: str, tasks_dir: Path | None, config_path: Path | None
) -> None:
    """Complete tasks the moment the service calls back (frames with a callback_url).

    Each POST names a task; one of this folder's tasks in flight is polled at once with
    your credentials and downloaded; any other is refused (404). Put this behind the
    public address you give as callback_url. `check`/`monitor` still poll as a fallback.
    """
    workspace = _workspace(tasks_dir, config_path)
    try:
        workspace.client_factory()  # credentials checked before listening
    except AsyncImgError as exc:
        _fail(str(exc), 2)
    if not path.startswith("/"):
        _fail(_("--path {path!r} must start with '/'").format(path=path), 2)

    def say(line: str) -> None:
        click.echo(line)
        sys.stdout.flush()

    async def serve() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        mount_callbacks(app, workspace, path=path, report=say)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0][1]
            say(
                _(
                    "receiving callbacks at {url} for the tasks in {root}; give the public "
                    "address that forwards here as callback_url. Ctrl+C stops."
                ).format(url=f"http://{host}:{bound}{path}", root=workspace.store.root)
            )
            with StopOnSignals():
                await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except OSError as exc:
        _fail(
            _("cannot listen on {host}:{port} ({why})").format(
                host=host, port=port, why=exc.strerror or exc
            ),
            2,
        )
    say(_("stopped receiving callbacks"))
    sys.exit(EXIT_INTERRUPTED)
