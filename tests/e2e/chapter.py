"""A small chapter left in every state a user meets, made with the real commands.

Six frames of `chapter01.jsonl` against an account that runs two tasks at a time:
frames 1, 2 and 4 completed (001 and 004 PNG, 002 JPEG), frame 3 failed (the service's
image review refused it), frames 5 and 6 submitted (their records say so until the next
`asyncimg check`). Frames 1, 3 and 5 carry their own `id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Chapter:
    e2e: E2E
    batch: Path

    def finish_the_rest(self) -> None:
        """Let frames 5 and 6 finish at the emulator and download them (`asyncimg check`)."""
        self.e2e.emu.wait_idle(6, timeout=30)
        self.e2e.ok("asyncimg", "check")


def make_chapter(e2e: E2E) -> Chapter:
    """The chapter above, in `e2e`'s project folder (emulator: concurrency 2)."""
    e2e.character("lin.png", (200, 60, 80))
    e2e.character("chen.png", (40, 90, 200))
    batch = e2e.write_batch(BATCH, ROWS)
    e2e.ok("asyncimg", "submit", "--batch", BATCH)  # 1, 2 accepted; the rest queued locally
    e2e.emu.wait_idle(2)
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.ok("asyncimg", "check")  # 1, 2 downloaded; 3 (refused at review) and 4 submitted
    e2e.emu.wait_idle(4)
    e2e.exits(1, "asyncimg", "check")  # 3 failed, 4 downloaded; 5 and 6 submitted
    return Chapter(e2e, batch)
