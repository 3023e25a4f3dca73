"""`asyncimg emulator`: serve the local Volcengine emulator until Ctrl+C."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig, run_forever
from asyncimg.emulator.config import DEMO_ACCESS_KEY, DEMO_SECRET_KEY


def _parse_gen_seconds(value: str) -> tuple[float, float]:
    lo, sep, hi = value.partition("-")
    try:
        low = float(lo)
        high = float(hi) if sep else low
    except ValueError:
        raise click.BadParameter("expected MIN-MAX or one number of seconds") from None
    if low < 0 or high < low:
        raise click.BadParameter("expected 0 <= MIN <= MAX")
    return low, high


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--access-key", default=None, help=f"Default: ${constants.ENV_ACCESS_KEY}, else a demo key."
)
@click.option(
    "--secret-key", default=None, help=f"Default: ${constants.ENV_SECRET_KEY}, else a demo key."
)
@click.option("--gen-seconds", default="2-6", show_default=True, help="Task duration MIN-MAX.")
@click.option("--qps", type=float, default=None, help="Requests per second per action (50429).")
@click.option("--concurrency", type=int, default=None, help="Unfinished tasks allowed (50430).")
@click.option("--retention-seconds", type=float, default=12 * 3600, show_default=True)
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Replays task ids, durations and faults.")
def emulator(
    host: str,
    port: int,
    access_key: str | None,
    secret_key: str | None,
    gen_seconds: str,
    qps: float | None,
    concurrency: int | None,
    retention_seconds: float,
    fault_rate: float,
    seed: int | None,
) -> None:
    """Run a local emulator of Volcengine's asynchronous visual API."""
    access_key = access_key or os.environ.get(constants.ENV_ACCESS_KEY) or None
    secret_key = secret_key or os.environ.get(constants.ENV_SECRET_KEY) or None
    config = EmulatorConfig(
        host=host,
        port=port,
        access_key=access_key or DEMO_ACCESS_KEY,
        secret_key=secret_key or DEMO_SECRET_KEY,
        gen_seconds=_parse_gen_seconds(gen_seconds),
        qps=qps,
        concurrency=concurrency,
        retention_seconds=retention_seconds,
        fault_rate=fault_rate,
        seed=seed,
    )

    def ready(emu: Emulator) -> None:
        click.echo(f"asyncimg emulator listening on {emu.url}")
        # Only the public demo keys are ever shown; keys from flags or the environment are not.
        if access_key is None:
            click.echo(f"demo access key: {DEMO_ACCESS_KEY}")
        if secret_key is None:
            click.echo(f"demo secret key: {DEMO_SECRET_KEY}")
        click.echo("Ctrl+C stops it.")
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        run_forever(config, on_ready=ready)
    click.echo("asyncimg emulator stopped")
