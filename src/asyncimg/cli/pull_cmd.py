"""`asyncimg pull`: write this machine's frames kept in object storage (see lifecycle/pull.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asyncimg.cli.commands import _fail, _workspace, config_option, tasks_dir_option
from asyncimg.cli.emit import err_console, out_console
from asyncimg.i18n import _
from asyncimg.lifecycle.monitor import EXIT_INTERRUPTED
from asyncimg.lifecycle.pull import Pulled, pull
from asyncimg.lifecycle.refmode import ENV_STORAGE_BUCKET, ENV_STORAGE_ENDPOINT
from asyncimg.protocol.errors import AsyncImgError


@click.command("pull")
@tasks_dir_option
@config_option
def pull_cmd(tasks_dir: Path | None, config_path: Path | None) -> None:
    """Write this machine's frames kept in object storage ([storage]) that are not on disk:
    frames that finished while this machine was off (kept by another machine's monitor),
    and finished frames whose file is missing. Nothing is submitted, nothing is billed.
    Exit 0 when every such frame was written, 1 when some could not be, 2 on a setup
    problem (no [storage], its keys, the bucket)."""
    workspace = _workspace(tasks_dir, config_path)
    bucket = workspace.frames
    if bucket is None:
        _fail(
            _(
                "pull needs object storage: set [storage] endpoint and bucket in asyncimg.toml "
                "(or ${endpoint} / ${bucket})"
            ).format(endpoint=ENV_STORAGE_ENDPOINT, bucket=ENV_STORAGE_BUCKET),
            2,
        )

    def say(frame: Pulled) -> None:
        name = frame.record.output_path
        if frame.problem is None:
            line = _("{output}: written from storage").format(output=name)
            out_console.print(line, markup=False, highlight=False)
        else:
            line = _("{output}: not pulled — {reason}").format(output=name, reason=frame.problem)
            err_console.print(f"asyncimg: {line}", markup=False, highlight=False)

    try:
        report = pull(workspace.store, bucket, clock=workspace.clock, on_frame=say)
    except AsyncImgError as exc:
        _fail(str(exc), 2)
    except KeyboardInterrupt:
        err_console.print(
            "asyncimg: " + _("stopped by user; every file written is whole"), markup=False
        )
        sys.exit(EXIT_INTERRUPTED)
    for warning in report.warnings:
        err_console.print(f"asyncimg: {_('warning')}: {warning}", markup=False)
    pulled, failed = len(report.pulled), len(report.failed)
    if not pulled and not failed:
        summary = _("nothing to pull: every kept frame of this machine is on disk")
    elif failed:
        summary = _("{pulled} frames written from storage, {failed} could not be").format(
            pulled=pulled, failed=failed
        )
    else:
        summary = _("{pulled} frames written from storage").format(pulled=pulled)
    out_console.print(summary, markup=False, highlight=False)
    sys.exit(report.exit_code)
