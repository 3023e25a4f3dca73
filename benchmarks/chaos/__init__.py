"""The reliability suite (issue 8, "a hostile and clumsy world"): `make chaos` runs it whole,
`tests/e2e/test_chaos.py` runs the short version inside `make test`; both call :func:`run`.

Parts, each driving the real `asyncimg` commands as subprocesses against the emulator on
127.0.0.1 (the end-to-end tests' harness, `tests/e2e/conftest.py`):

- `kills`   random SIGKILLs over `submit --batch`, `check`, `monitor`, then a clean run;
- `crowd`   four concurrent checkers plus a concurrent `submit --batch`;
- `faults`  20 % injected faults on every API request and image download;
- `input`   the bad-input table: each case a one-line error, a sane exit code, the other
  frames untouched, nothing lost;
- the secret key is searched for in every output and every file each part wrote.

Every figure is counted, never asserted here: :class:`common.Report` holds the table, and
callers decide (the CLI exits 1 when a figure misses what it wants, the tests assert each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.conftest import EmulatorThread

from . import badinput, crowd, faults, kills
from .common import Report

PARTS = ("kills", "crowd", "faults", "input")


@dataclass(frozen=True)
class Size:
    kills: int
    crowd_frames: int
    fault_frames: int
    input_cases: tuple[str, ...]  # the bad-input cases to run; () all


FULL = Size(kills=200, crowd_frames=24, fault_frames=40, input_cases=())
SHORT = Size(kills=30, crowd_frames=12, fault_frames=12, input_cases=badinput.SHORT_CASES)


@contextmanager
def emulators() -> Iterator[Callable[..., EmulatorThread]]:
    running: list[EmulatorThread] = []

    def start(**overrides: Any) -> EmulatorThread:
        emu = EmulatorThread(**overrides)
        running.append(emu)
        return emu

    try:
        yield start
    finally:
        for emu in running:
            emu.close()


def run(
    root: Path,
    size: Size = SHORT,
    seed: int = kills.SEED,
    parts: tuple[str, ...] = PARTS,
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Run `parts` in folders under `root` (which must exist); the figures, in order."""
    report = Report()
    for part in parts:
        began = time.monotonic()
        progress(f"chaos: {part} ...")
        with emulators() as start:
            if part == "kills":
                kills.report(
                    report, kills.run_kills(root / part, start, size.kills, seed), size.kills
                )
            elif part == "crowd":
                merge(report, crowd.run_crowd(root / part, start, size.crowd_frames, seed))
            elif part == "faults":
                merge(report, faults.run_faults(root / part, start, size.fault_frames, seed))
            elif part == "input":
                merge(report, badinput.run_cases(root / part, start, seed, size.input_cases))
            else:
                raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")
        report.seconds[part] = time.monotonic() - began
    return report


def merge(into: Report, part: Report) -> None:
    into.figures.extend(part.figures)
    into.cases.extend(part.cases)
    into.problems.extend(part.problems)
