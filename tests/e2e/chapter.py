"""A small chapter left in every state a user meets, made with the real commands.

Six frames of `chapter01.jsonl`: frames 1, 2 and 4 completed (001 and 004 PNG, 002 JPEG),
frame 3 failed (the service's image review refused it), frames 5 and 6 still generating.
Frames 1, 3 and 5 carry their own `id`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import E2E, SUBMIT

ROWS = [
    {
        "id": "c01-001",
        "prompt": "雨夜的小巷，林晓撑着红伞回头张望",
        "output_path": "frames/001.png",
        "character_images": ["chars/lin.png"],
        "style": "manga",
    },
    {
        "prompt": "清晨的码头，陈默望着远处的渔船",
        "output_path": "frames/002.jpg",
        "character_images": ["chars/chen.png"],
        "style": "watercolor",
    },
    {
        "id": "c01-003",
        "prompt": "林晓和陈默在天台上争吵",
        "output_path": "frames/003.png",
        "character_images": ["chars/lin.png", "chars/chen.png"],
        "style": "manga",
    },
    {
        "prompt": "a lighthouse at dusk, seen from the cliffs",
        "output_path": "frames/004.png",
        "style": "realistic",
    },
    {
        "id": "c01-005",
        "prompt": "夜市的灯笼下，林晓买了一串糖葫芦",
        "output_path": "frames/005.png",
        "character_images": ["chars/lin.png"],
        "style": "manga",
    },
    {
        "prompt": "黎明时分，两人并肩走向车站",
        "output_path": "frames/006.png",
        "character_images": ["chars/lin.png", "chars/chen.png"],
        "style": "manga",
    },
]
BATCH = "chapter01.jsonl"
#: Every task takes this long at the emulator, on its clock, which only the test moves.
GEN_SECONDS = 10.0


class Clock:
    """The emulator's clock: the real time when made, then only moved by `advance`
    (close enough to the real time for the clients' signatures)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def emulator_settings(clock: Clock) -> dict[str, Any]:
    """EmulatorConfig overrides for a chapter (pass to `make_e2e` / `EmulatorThread`)."""
    return {"clock": clock, "gen_seconds": (GEN_SECONDS, GEN_SECONDS)}


@dataclass
class Chapter:
    e2e: E2E
    batch: Path
    clock: Clock

    def finish_the_rest(self) -> None:
        """Frames 5 and 6 finish at the emulator and are downloaded (`asyncimg check`)."""
        self.clock.advance(GEN_SECONDS + 1)
        self.e2e.exits(1, "asyncimg", "check")  # 3 is still failed


def make_chapter(e2e: E2E, clock: Clock) -> Chapter:
    """The chapter above, in `e2e`'s project folder; `e2e`'s emulator runs on `clock`.

    The batch file grows as a user's would, and each `submit --batch` of the whole file
    sends only its new lines (a rerun skips frames already submitted): so exactly one
    known frame meets the review failure. Frame 3 fails only at the last `check`, after
    the last submit (a rerun would resubmit a failed frame in its place).
    """
    e2e.character("lin.png", (200, 60, 80))
    e2e.character("chen.png", (40, 90, 200))
    batch = e2e.write_batch(BATCH, ROWS[:2])
    e2e.ok("asyncimg", "submit", "--batch", BATCH)
    e2e.write_batch(BATCH, ROWS[:3])
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.ok("asyncimg", "submit", "--batch", BATCH)  # only line 3 is new: it meets the fault
    e2e.write_batch(BATCH, ROWS[:4])
    e2e.ok("asyncimg", "submit", "--batch", BATCH)
    clock.advance(GEN_SECONDS + 1)  # frames 1-4 are done at the emulator
    e2e.write_batch(BATCH, ROWS)
    e2e.ok("asyncimg", "submit", "--batch", BATCH)  # 5 and 6: generating
    e2e.exits(1, "asyncimg", "check")  # 1, 2, 4 completed; 3 failed
    return Chapter(e2e, batch, clock)
