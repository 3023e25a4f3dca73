"""A local emulator of Volcengine's asynchronous visual API, for tests and demos."""

from asyncimg.emulator.config import EmulatorConfig
from asyncimg.emulator.faults import FaultKind
from asyncimg.emulator.server import Emulator, run_forever

__all__ = ["Emulator", "EmulatorConfig", "FaultKind", "run_forever"]
