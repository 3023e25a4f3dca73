"""`asyncimg gallery | serve | sheet | manifest`: looking at a chapter, and handing it on.

All four read the tasks folder or the shared store (`--store URL` / `$ASYNCIMG_STORE`;
`--tasks-dir` wins), every machine's records, and only read: a folder's records are read
through a read-only store (nothing there is created, moved or indexed). They write only
the file they are asked for: beside the tasks folder by default, in the current folder
for a shared store (it has no folder of its own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path

import click
from aiohttp import web

from asyncimg.cli.commands import _fail, config_option, tasks_dir_option
from asyncimg.fileio import atomic_write
from asyncimg.gallery.frames import Frame
from asyncimg.gallery.live import LiveGallery, start
from asyncimg.gallery.manifest import MANIFEST_NAME, manifest_text, write_manifest
from asyncimg.gallery.page import file_linker, render_page
from asyncimg.gallery.sheet import contact_sheet, write_sheet
from asyncimg.gallery.source import Chapter, every_record
from asyncimg.gallery.thumbs import Thumbnails
from asyncimg.i18n import _
from asyncimg.lifecycle.config import load_config
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.open import open_store, store_location


def _write(target: Path, failed: str, write: Callable[[], object]) -> None:
    """Run `write` and print `target`; if it fails, `failed` (with {target} and {why}) as
    one line, exit 2."""
    try:
        write()
    except OSError as exc:
        _fail(failed.format(target=target, why=exc.strerror or exc), 2)
    click.echo(str(target))


def open_chapter(tasks_dir: Path | None, config_path: Path | None) -> Chapter:
    """The folder or shared store to read; exit 2 with one line when there is none."""
    try:
        location = store_location(tasks_dir, load_config(config_path).defaults.tasks_dir)
        if isinstance(location, Path) and not location.is_dir():
            _fail(
                _(
                    "{folder}: no tasks folder here (submit some frames, or give --tasks-dir)"
                ).format(folder=location),
                2,
            )
        return Chapter.of(open_store(location, read_only=True))
    except AsyncImgError as exc:
        _fail(str(exc), 2)


def read_frames(chapter: Chapter) -> list[Frame]:
    """Every machine's frames; records that cannot be read are named on stderr, one line
    each (they are left where they are)."""
    try:
        loaded = every_record(chapter.store)
    except OSError as exc:  # a shared store that stopped answering
        _fail(str(exc), 2)
    for problem in loaded.problems:
        click.echo(str(problem), err=True)
    return chapter.frames_of(loaded.records)


def write_gallery(chapter: Chapter, target: Path, frames: list[Frame] | None = None) -> None:
    """The gallery page of `chapter`, written to `target` (OSError if not)."""
    page = render_page(
        frames if frames is not None else chapter.frames(),
        Thumbnails(),
        title=chapter.title,
        link=file_linker(target),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, page.encode("utf-8"), mode=0o644)


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write (default: gallery.html beside the tasks folder; in the "
    "current folder for a shared store).",
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
    chapter = open_chapter(tasks_dir, config_path)
    frames = read_frames(chapter)
    target = out if out is not None else chapter.default_target("gallery.html")
    _write(
        target,
        _("{target}: cannot write the gallery ({why})"),
        lambda: write_gallery(chapter, target, frames),
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
    help="Seconds between looks at the tasks folder or store.",
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
    chapter = open_chapter(tasks_dir, config_path)
    extend = None
    if with_callbacks:  # the page stays read-only; callbacks complete this store's tasks
        from asyncimg.cli.callbacks_cmd import mount_callbacks
        from asyncimg.cli.commands import _workspace

        workspace = _workspace(tasks_dir, config_path)
        try:
            workspace.client_factory()  # credentials checked before listening
        except AsyncImgError as exc:
            _fail(str(exc), 2)

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
    try:
        live = LiveGallery(chapter, watch_interval=interval)
    except OSError as exc:  # a shared store that stopped answering
        _fail(str(exc), 2)

    async def run() -> None:
        try:
            runner, url = await start(live, host, port, extend)
        except OSError as exc:
            _fail(
                _("cannot listen on {host}:{port} ({why})").format(
                    host=host, port=port, why=exc.strerror or exc
                ),
                2,
            )
        click.echo(
            _("serving {root} at {url} (read-only; Ctrl+C stops)").format(
                root=chapter.name, url=url
            )
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
    help="PNG or JPEG to write (default: contact_sheet.jpg beside the tasks folder; in the "
    "current folder for a shared store).",
)
@click.option(
    "--columns", type=click.IntRange(1, 50), default=6, show_default=True, help="Frames per row."
)
@tasks_dir_option
@config_option
def sheet(out: Path | None, columns: int, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Write a contact sheet: every frame in one image, to share in a chat."""
    chapter = open_chapter(tasks_dir, config_path)
    target = out if out is not None else chapter.default_target("contact_sheet.jpg")
    if target.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        _fail(_("{target}: a contact sheet is .png, .jpg or .jpeg").format(target=target), 2)
    image = contact_sheet(read_frames(chapter), columns=columns)
    _write(
        target,
        _("{target}: cannot write the contact sheet ({why})"),
        lambda: write_sheet(image, target),
    )


@click.command()
@click.option(
    "--out",
    default=None,
    help=f"File to write, or - for standard output (default: {MANIFEST_NAME} in the tasks "
    "folder; in the current folder for a shared store).",
)
@tasks_dir_option
@config_option
def manifest(out: str | None, tasks_dir: Path | None, config_path: Path | None) -> None:
    """Write the manifest: one JSON line per frame (id, output path, status, task id,
    sha256, width, height, prompt, style, characters), in batch order."""
    chapter = open_chapter(tasks_dir, config_path)
    frames = read_frames(chapter)
    if out == "-":
        click.echo(manifest_text(frames), nl=False)
        return
    target = Path(out) if out is not None else chapter.manifest_path()
    _write(
        target,
        _("{target}: cannot write the manifest ({why})"),
        lambda: write_manifest(frames, target),
    )


GALLERY_COMMANDS = (gallery, serve, sheet, manifest)
