"""A local emulator of Volcengine's asynchronous visual API, for tests and demos.

`Emulator` and `run_forever` (the server: aiohttp's web side, Pillow's drawing) are imported
on first use, so a command that only names the emulator's settings (`asyncimg --help`, every
CLI start) does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asyncimg.emulator.config import EmulatorConfig
from asyncimg.emulator.faults import FaultKind

if TYPE_CHECKING:
    from asyncimg.emulator.server import Emulator, run_forever

__all__ = ["Emulator", "EmulatorConfig", "FaultKind", "run_forever"]


def __getattr__(name: str) -> Any:
    if name in ("Emulator", "run_forever"):
        from asyncimg.emulator import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
