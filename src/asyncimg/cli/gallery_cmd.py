"""`asyncimg gallery | serve | sheet | manifest`: looking at a chapter, and handing it on.

All four only read the tasks folder (records are read as `submit --dry-run` reads them:
nothing there is created, moved or indexed); they write only the file they are asked for.
Messages are whole sentences with named placeholders, ready to be wrapped for translation.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click
from aiohttp import web

from asyncimg.api import read_records
from asyncimg.cli.commands import config_option, tasks_dir_option
from asyncimg.fileio import atomic_write
from asyncimg.gallery.frames import Frame, frames_of
from asyncimg.gallery.live import LiveGallery, start
from asyncimg.gallery.manifest import MANIFEST_NAME, manifest_text, write_manifest
from asyncimg.gallery.page import file_linker, render_page
from asyncimg.gallery.sheet import contact_sheet, write_sheet
from asyncimg.gallery.thumbs import Thumbnails
from asyncimg.i18n import _
from asyncimg.lifecycle.config import load_config
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.protocol.errors import AsyncImgError


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"asyncimg: {message}", err=True)
    sys.exit(code)


def _write(target: Path, failed: str, write: Callable[[], object]) -> None:
    """Run `write` and print `target`; if it fails, `failed` (with {target} and {why}) as
    one line, exit 2."""
    try:
        write()
    except OSError as exc:
        _fail(failed.format(target=target, why=exc.strerror or exc))
    click.echo(str(target))


def tasks_folder(tasks_dir: Path | None, config_path: Path | None) -> Path:
    """The tasks folder to read; exit 2 with one line when there is none."""
    if tasks_dir is None:
        try:
            tasks_dir = Path(load_config(config_path).defaults.tasks_dir)
        except AsyncImgError as exc:
            _fail(str(exc))
    if not tasks_dir.is_dir():
        _fail(
            _("{folder}: no tasks folder here (submit some frames, or give --tasks-dir)").format(
                folder=tasks_dir
            )
        )
    return tasks_dir


def read_frames(root: Path) -> list[Frame]:
    return frames_of(read_records(root), str(root))


def chapter_title(root: Path) -> str:
    """The project's folder name: the tasks folder usually lives in it."""
    project = root.absolute().parent.name or str(root)
    return f"{project} — asyncimg"


def _beside(root: Path, name: str) -> Path:
    return root.parent / name


def write_gallery(root: Path, target: Path) -> None:
    """The gallery page of the tasks folder `root`, written to `target` (OSError if not)."""
    page = render_page(
        read_frames(root), Thumbnails(), title=chapter_title(root), link=file_linker(target)
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, page.encode("utf-8"), mode=0o644)


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write (default: gallery.html beside the tasks folder).",
)
@click.option("--open", "open_it", is_flag=True, help="Open it in the web browser.")
@tasks_dir_option
@config_option
def gallery(
    out: Path | None, open_it: bool, tasks_dir: Path | None, config_path: Path | None
) -> None:
    """Write one self-contained HTML page of every frame, in batch order.

    Thumbnails, prompts, styles, character images and status; failed frames show the
    error and the exact command that retries them.
    """
    root = tasks_folder(tasks_dir, config_path)
    target = out if out is not None else _beside(root, "gallery.html")
    _write(
        target, _("{target}: cannot write the gallery ({why})"), lambda: write_gallery(root, target)
    )
    if open_it:
        webbrowser.open(target.absolute().as_uri())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="0: any free port.",
)
@click.option("--open", "open_it", is_flag=True, help="Open it in the web browser.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between looks at the tasks folder.",
)
@click.option(
    "--callbacks",
    "with_callbacks",
    is_flag=True,
    help="Also receive callback-mode POSTs at /callbacks (see `asyncimg callbacks`).",
)
@tasks_dir_option
@config_option
def serve(
    host: str,
    port: int,
    open_it: bool,
    interval: float,
    with_callbacks: bool,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Serve the gallery live (read-only): frames appear as they finish, no reload needed.

    Listens on 127.0.0.1 only unless --host says otherwise. Ctrl+C stops it (exit 130).
    """
    root = tasks_folder(tasks_dir, config_path)
    extend = None
    if with_callbacks:  # the page stays read-only; callbacks complete this folder's tasks
        from asyncimg.cli.callbacks_cmd import mount_callbacks
        from asyncimg.cli.commands import _workspace

        workspace = _workspace(tasks_dir, config_path)
        try:
            workspace.client_factory()  # credentials checked before listening
        except AsyncImgError as exc:
            _fail(str(exc))

        def extend(app: web.Application) -> object:
            return mount_callbacks(app, workspace)

    if not _loopback(host):
        click.echo(
            "asyncimg: "
            + _(
                "warning: listening on {host}: anyone who can reach it sees every prompt and image"
            ).format(host=host),
            err=True,
        )
    live = LiveGallery(root, chapter_title(root), watch_interval=interval)

    async def run() -> None:
        try:
            runner, url = await start(live, host, port, extend)
        except OSError as exc:
            _fail(
                _("cannot listen on {host}:{port} ({why})").format(
                    host=host, port=port, why=exc.strerror or exc
                )
            )
        click.echo(
            _("serving {root} at {url} (read-only; Ctrl+C stops)").format(root=root, url=url)
        )
        if open_it:
            webbrowser.open(url)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        click.echo(_("stopped serving"))
        sys.exit(EXIT_INTERRUPTED)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG or JPEG to write (default: contact_sheet.jpg beside the tasks folder).",
)
@click.option(
    "--columns", type=click.IntRange(1, 50), default=6, show_default=True, help="Frames per row."
)
@tasks_dir_option
@config_option
def sheet(out: Path | None, columns: int, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Write a contact sheet: every frame in one image, to share in a chat."""
    root = tasks_folder(tasks_dir, config_path)
    target = out if out is not None else _beside(root, "contact_sheet.jpg")
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        _fail(_("{target}: a contact sheet is .png, .jpg or .jpeg").format(target=target))
    image = contact_sheet(read_frames(root), columns=columns)
    _write(
        target,
        _("{target}: cannot write the contact sheet ({why})"),
        lambda: write_sheet(image, target),
    )


@click.command()
@click.option(
    "--out",
    default=None,
    help=f"File to write, or - for standard output (default: {MANIFEST_NAME} in the tasks folder).",
)
@tasks_dir_option
@config_option
def manifest(out: str | None, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Write the manifest: one JSON line per frame (id, output path, status, task id,
    sha256, width, height, prompt, style, characters), in batch order."""
    root = tasks_folder(tasks_dir, config_path)
    frames = read_frames(root)
    if out == "-":
        click.echo(manifest_text(frames), nl=False)
        return
    target = Path(out) if out is not None else root / MANIFEST_NAME
    _write(
        target,
        _("{target}: cannot write the manifest ({why})"),
        lambda: write_manifest(frames, target),
    )


GALLERY_COMMANDS = (gallery, serve, sheet, manifest)
