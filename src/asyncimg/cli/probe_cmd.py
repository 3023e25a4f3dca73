"""`asyncimg probe`: a few paid requests to the live service, compared with the emulator."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from asyncimg.api import run_sync
from asyncimg.cli.commands import (
    _exit_code,
    _fail,
    config_option,
    tasks_dir_option,
)
from asyncimg.cli.emit import err_console, out_console
from asyncimg.emulator.config import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, EmulatorConfig
from asyncimg.fileio import atomic_write
from asyncimg.i18n import _
from asyncimg.lifecycle import probe as probing
from asyncimg.lifecycle.config import load_config
from asyncimg.lifecycle.explain import plain
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.protocol.signing import Credentials
from asyncimg.store.store import TaskStore

REPORT_NAME = "probe-report.json"


@click.command()
@click.option("--yes", is_flag=True, help="Send without asking (the requests may be billed).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"The JSON report (default ./{REPORT_NAME}); the text summary goes beside it (.txt).",
)
@click.option("--wait", type=float, default=180.0, show_default=True, help="Seconds to wait for "
              "the tasks it creates to finish.")  # fmt: skip
@click.option("--poll-every", type=float, default=3.0, show_default=True, hidden=True)
@tasks_dir_option
@config_option
def probe(
    yes: bool,
    out: Path | None,
    wait: float,
    poll_every: float,
    tasks_dir: Path | None,
    config_path: Path | None,
) -> None:
    """Check what the emulator assumes against the live service, once.

    Sends a few small jimeng_t2i_v40 requests (a base64 reference, an unknown field, an
    out-of-range size, three quick submits, a made-up task id, the oldest known task) and
    writes a report comparing each answer with the emulator's.
    """
    try:
        config = load_config(config_path)
        client = VisualClient.from_env(validate=False, max_attempts=1)
    except AsyncImgError as exc:
        _fail(str(exc), _exit_code(exc))
    folder = tasks_dir if tasks_dir is not None else Path(config.defaults.tasks_dir)
    checks = probing.plan()
    billed = sum(c.billed for c in checks)
    out_console.print(
        _("asyncimg probe will send to {endpoint}:").format(endpoint=client.endpoint), markup=False
    )
    for check in checks:
        out_console.print(f"  {check.name}: {_(check.question)}", markup=False)
        for line in check.shown():
            out_console.print(f"    {line}", markup=False)
    out_console.print(
        _(
            "At most {billed} images can be billed ({billed} tasks of one 1024x1024 image on "
            "{model}); polls and the made-up task id cost nothing."
        ).format(billed=billed, model=probing.V40),
        markup=False,
    )
    if not yes and not click.confirm(_("Send them?"), default=False, err=True):
        err_console.print("asyncimg: " + _("nothing was sent"), markup=False)
        sys.exit(1)
    target = out or Path.cwd() / REPORT_NAME
    candidates = _earlier_tasks(target, folder)

    async def run() -> dict[str, Any]:
        async with client:
            live = await probing.run_checks(client, checks, wait=wait, poll_every=poll_every)
            retention = await probing.retention_check(client, candidates, time.time())
        emulated = await _emulated(checks)
        rows = probing.compare(checks, live, emulated)
        report = probing.report_json(
            rows,
            live,
            emulated,
            endpoint=client.endpoint,
            retention=retention,
            created_at=time.time(),
        )
        report["summary"] = probing.summary_text(
            rows, client.endpoint, probing.retention_line(retention)
        )
        return report

    try:
        report = run_sync(run())
    except AsyncImgError as exc:
        _fail(_("the probe stopped: {error}").format(error=plain(exc)), 2)
    text = str(report.pop("summary"))
    summary_path = target.with_suffix(".txt")
    body = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    atomic_write(target, body.encode("utf-8"), mode=0o644)
    atomic_write(summary_path, text.encode("utf-8"), mode=0o644)
    out_console.print(text, markup=False)
    out_console.print(
        _("report: {report}\nsummary: {summary}").format(report=target, summary=summary_path),
        markup=False,
    )


async def _emulated(checks: list[probing.Check]) -> list[probing.CheckResult]:
    """The same checks against the emulator's default profile, in-process."""
    from asyncimg.emulator.server import Emulator

    config = EmulatorConfig(
        access_key=DEMO_ACCESS_KEY, secret_key=DEMO_SECRET_KEY, gen_seconds=(0.0, 0.0)
    )
    async with Emulator(config) as emulator:
        credentials = Credentials(DEMO_ACCESS_KEY, DEMO_SECRET_KEY)
        async with VisualClient(
            credentials, endpoint=emulator.url, validate=False, max_attempts=1
        ) as client:
            return await probing.run_checks(client, checks, wait=5.0, poll_every=0.05)


def _earlier_tasks(report: Path, folder: Path) -> list[tuple[str, str, float]]:
    """Tasks whose retention can be checked: a previous report's, else the tasks folder's
    (read only if it exists: the probe creates nothing there)."""
    found: list[tuple[str, str, float]] = []
    try:
        previous = json.loads(report.read_text(encoding="utf-8"))
        created = float(previous["created_at"])
        found += [(str(t), probing.V40, created) for t in previous["task_ids"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if found or not folder.is_dir():
        return found
    store = TaskStore(folder)
    for summary in store.scan().tasks:
        if summary.task_id:
            record = store.get(summary.local_id)
            if record.task_id and record.submit_time:
                found.append((record.task_id, record.req_key, record.submit_time))
    return found
