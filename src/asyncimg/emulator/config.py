"""The emulator's settings."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncimg import constants
from asyncimg.emulator.faults import DEFAULT_KINDS, FaultKind

# Public on purpose: the emulator is local, and these let a demo run without real keys.
DEMO_ACCESS_KEY = "AKLTemulatordemo"
DEMO_SECRET_KEY = "emulator-demo-secret"

#: `--profile realistic`: public evidence (``../shared/spec/``) points to about one unfinished
#: task per account and about one or two submits per second; 2K frames take 10-60 s.
REALISTIC: dict[str, Any] = {"concurrency": 1, "qps": 2.0, "gen_seconds": (10.0, 60.0)}
PROFILES: dict[str, dict[str, Any]] = {"realistic": REALISTIC}


def _env_access_key() -> str:
    return os.environ.get(constants.ENV_ACCESS_KEY) or DEMO_ACCESS_KEY


def _env_secret_key() -> str:
    return os.environ.get(constants.ENV_SECRET_KEY) or DEMO_SECRET_KEY


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told; `clock` is injectable so tests can jump time.

    `gen_seconds` bounds each task's duration (drawn with the seeded RNG), `qps` applies per
    action and `concurrency` to the account's unfinished tasks; `retention_seconds` and
    `expire_seconds` turn old tasks into `not_found` and `expired`.

    `time_scale` runs the emulator's own clock (task timing, retention and expiry, the QPS
    and concurrency windows) that many times faster than `clock`: at 20, a 10-60 s task
    takes 0.5-3 real seconds and `qps=2` admits 40 requests per real second. The gateway's
    X-Date check keeps the unscaled clock, since clients sign with the real time.
    `EmulatorConfig.realistic()` is the shape of a real account.
    """

    host: str = "127.0.0.1"
    port: int = 0
    access_key: str = field(default_factory=_env_access_key)
    secret_key: str = field(default_factory=_env_secret_key, repr=False)
    session_token: str | None = field(default=None, repr=False)
    gen_seconds: tuple[float, float] = (2.0, 6.0)
    qps: float | None = None
    concurrency: int | None = None
    retention_seconds: float = 12 * 3600
    expire_seconds: float | None = None
    fault_rate: float = 0.0
    # Image downloads get injected faults only, unless this draws some at random too.
    image_fault_rate: float = 0.0
    fault_kinds: frozenset[FaultKind] = DEFAULT_KINDS
    seed: int | None = None
    images_per_task: int = 1
    slow_seconds: float = 3.0
    # Added to every API reply: a stand-in for the round trip to Beijing in benchmarks.
    latency_seconds: float = 0.0
    clock: Callable[[], float] = time.time
    max_clock_skew: float = constants.MAX_CLOCK_SKEW_S
    time_scale: float = 1.0
    # The real service most likely ignores body fields it does not know (research §5); the
    # default profile does too. `strict` refuses them with 50215, naming the field.
    strict: bool = False
    # Models whose submit refuses `binary_data_base64` references with 50215, as the real
    # jimeng_t2i_v40 may (its docs list only image_urls; research discrepancy 1).
    reject_base64_references: frozenset[str] = frozenset()
    # Callback mode: a failed delivery is tried again after each of these (emulator s).
    callback_retry_seconds: tuple[float, ...] = (1.0, 5.0, 30.0)

    @classmethod
    def realistic(cls, **overrides: Any) -> EmulatorConfig:
        """The shape of a real account (``--profile realistic``): one unfinished task at a
        time, about 2 requests per second per action, 10-60 s per task (a 2K frame).
        Everything else as the defaults; `overrides` win (e.g. ``time_scale=20``)."""
        settings: dict[str, Any] = dict(REALISTIC)
        settings.update(overrides)
        return cls(**settings)

    def __post_init__(self) -> None:
        lo, hi = self.gen_seconds
        if lo < 0 or hi < lo:
            raise ValueError("gen_seconds must be (min, max) with 0 <= min <= max")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be within [0, 1]")
        if not 0.0 <= self.image_fault_rate <= 1.0:
            raise ValueError("image_fault_rate must be within [0, 1]")
        if self.qps is not None and self.qps <= 0:
            raise ValueError("qps must be positive")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if not self.time_scale > 0:
            raise ValueError("time_scale must be positive")
        if self.images_per_task < 1:
            raise ValueError("images_per_task must be at least 1")
        self.fault_kinds = frozenset(FaultKind(k) for k in self.fault_kinds)
