"""`asyncimg emulator`: serve the local Volcengine emulator until Ctrl+C."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from asyncimg import constants
from asyncimg.emulator.config import DEMO_ACCESS_KEY, DEMO_SECRET_KEY, PROFILES, EmulatorConfig
from asyncimg.emulator.faults import DEFAULT_KINDS, FaultKind
from asyncimg.i18n import _
from asyncimg.protocol.models import PROFILES as MODEL_PROFILES

if TYPE_CHECKING:
    from asyncimg.emulator.server import Emulator


def run_forever(config: EmulatorConfig, on_ready: Callable[[Emulator], None]) -> None:
    """Serve until Ctrl+C. The server (aiohttp's web side, Pillow's drawing) is imported
    here, when the emulator runs, not at every start of the CLI."""
    from asyncimg.emulator.server import run_forever as serve

    serve(config, on_ready)


def _parse_gen_seconds(value: str) -> tuple[float, float]:
    lo, sep, hi = value.partition("-")
    try:
        low = float(lo)
        high = float(hi) if sep else low
    except ValueError:
        raise click.BadParameter(_("expected MIN-MAX or one number of seconds")) from None
    if low < 0 or high < low:
        raise click.BadParameter(_("expected 0 <= MIN <= MAX"))
    return low, high


def _parse_fault_kinds(value: str | None) -> frozenset[FaultKind]:
    if not value:
        return DEFAULT_KINDS
    kinds = set()
    for name in value.split(","):
        try:
            kinds.add(FaultKind(name.strip()))
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise click.BadParameter(
                _("{name!r} is not a fault kind ({known})").format(name=name.strip(), known=known)
            ) from None
    return frozenset(kinds)


def _parse_retry_seconds(value: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(_("expected seconds separated by commas, e.g. 1,5,30")) from None
    if any(d < 0 for d in delays):
        raise click.BadParameter(_("delays must not be negative"))
    return delays


def _check_models(names: tuple[str, ...]) -> frozenset[str]:
    for name in names:
        if name not in MODEL_PROFILES:
            known = ", ".join(sorted(MODEL_PROFILES))
            raise click.BadParameter(
                _("{name!r} is not a model ({known})").format(name=name, known=known)
            )
    return frozenset(names)


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--access-key", default=None, help=f"Default: ${constants.ENV_ACCESS_KEY}, else a demo key."
)
@click.option(
    "--secret-key", default=None, help=f"Default: ${constants.ENV_SECRET_KEY}, else a demo key."
)
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default=None,
    help="A preset; flags given explicitly win. realistic: concurrency 1, 2 QPS, 10-60 s.",
)
@click.option("--gen-seconds", default="2-6", show_default=True, help="Task duration MIN-MAX.")
@click.option("--qps", type=float, default=None, help="Requests per second per action (50429).")
@click.option("--concurrency", type=int, default=None, help="Unfinished tasks allowed (50430).")
@click.option("--retention-seconds", type=float, default=12 * 3600, show_default=True)
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--seed", type=int, default=None, help="Replays task ids, durations and faults.")
@click.option(
    "--fault-kinds",
    default=None,
    help="Comma-separated kinds --fault-rate draws from (default all but late_invalid and "
    "review_internal_error): " + ", ".join(k.value for k in FaultKind),
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse body fields a model does not document (50215); the default ignores them, "
    "as the real service most likely does.",
)
@click.option("--expire-seconds", type=float, default=None, help="Results report `expired` after.")
@click.option("--images-per-task", type=int, default=1, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Added per reply.")
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Run task timing, retention and the limits' windows this many times faster.",
)
@click.option(
    "--reject-base64-references",
    "reject_base64",
    multiple=True,
    metavar="MODEL",
    help="This model refuses binary_data_base64 references with 50215, as the real "
    "jimeng_t2i_v40 may (repeatable).",
)
@click.option(
    "--callback-retry-seconds",
    default="1,5,30",
    show_default=True,
    help="Callback mode: wait this long before each retry of a failed delivery.",
)
@click.pass_context
def emulator(
    ctx: click.Context,
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
    fault_kinds: str | None,
    expire_seconds: float | None,
    images_per_task: int,
    latency_ms: float,
    profile: str | None,
    time_scale: float,
    strict: bool,
    reject_base64: tuple[str, ...],
    callback_retry_seconds: str,
) -> None:
    """Run a local emulator of Volcengine's asynchronous visual API."""
    access_key = access_key or os.environ.get(constants.ENV_ACCESS_KEY) or None
    secret_key = secret_key or os.environ.get(constants.ENV_SECRET_KEY) or None
    settings: dict[str, Any] = dict(PROFILES[profile]) if profile is not None else {}
    flags: dict[str, Any] = {
        "gen_seconds": _parse_gen_seconds(gen_seconds),
        "qps": qps,
        "concurrency": concurrency,
        "retention_seconds": retention_seconds,
        "fault_rate": fault_rate,
        "seed": seed,
        "expire_seconds": expire_seconds,
        "images_per_task": images_per_task,
        "time_scale": time_scale,
    }
    for name, value in flags.items():
        given = ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        if given or name not in settings:
            settings[name] = value
    try:
        config = EmulatorConfig(
            host=host,
            port=port,
            access_key=access_key or DEMO_ACCESS_KEY,
            secret_key=secret_key or DEMO_SECRET_KEY,
            fault_kinds=_parse_fault_kinds(fault_kinds),
            latency_seconds=latency_ms / 1000,
            strict=strict,
            reject_base64_references=_check_models(reject_base64),
            callback_retry_seconds=_parse_retry_seconds(callback_retry_seconds),
            **settings,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(emu: Emulator) -> None:
        click.echo(_("asyncimg emulator listening on {url}").format(url=emu.url))
        # Only the public demo keys are ever shown; keys from flags or the environment are not.
        if access_key is None:
            click.echo(_("demo access key: {key}").format(key=DEMO_ACCESS_KEY))
        if secret_key is None:
            click.echo(_("demo secret key: {key}").format(key=DEMO_SECRET_KEY))
        click.echo(_("Ctrl+C stops it."))
        sys.stdout.flush()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_forever(config, on_ready=ready)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        click.echo(
            "asyncimg: "
            + _(
                "port {port} on {host} is already in use: stop what listens there, "
                "or give another --port"
            ).format(port=port, host=host),
            err=True,
        )
        sys.exit(2)
    click.echo(_("asyncimg emulator stopped"))
