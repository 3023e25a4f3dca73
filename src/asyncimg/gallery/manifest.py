"""`manifest.jsonl`: one JSON line per frame, linking each batch line to its image.

What the editing step reads: the frame's id, where its image is, whether it is done, and
what made it. The keys are stable (documented in the README); new keys may be added at
the end, never renamed or removed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asyncimg.fileio import atomic_write
from asyncimg.gallery.frames import Frame
from asyncimg.store.machine import machine_of

MANIFEST_NAME = "manifest.jsonl"


def manifest_line(frame: Frame) -> dict[str, Any]:
    """One frame as the manifest's object (keys in a fixed order)."""
    record = frame.record
    first = record.results[0] if record.results else None
    line: dict[str, Any] = {
        "id": frame.frame_id,
        "output_path": record.output_path,
        "status": record.status.value,
        "task_id": record.task_id,
        "sha256": first.sha256 if first else None,
        "width": first.width if first else None,
        "height": first.height if first else None,
        "prompt": record.prompt,
        "style": record.style,
        "characters": list(record.character_images),
        "batch_file": record.batch_file,
        "batch_line": record.batch_line,
        "error": frame.error,
    }
    if len(record.results) > 1:
        line["extra_images"] = [
            {"path": r.path, "sha256": r.sha256, "width": r.width, "height": r.height}
            for r in record.results[1:]
        ]
    machine = machine_of(record)
    if machine is not None:  # a shared store's frame: whose disk the image is on
        line["machine"] = machine
    return line


def manifest_text(frames: Sequence[Frame]) -> str:
    """The whole file: UTF-8 JSON lines, Chinese as typed."""
    return "".join(
        json.dumps(manifest_line(f), ensure_ascii=False, allow_nan=False) + "\n" for f in frames
    )


def write_manifest(frames: Sequence[Frame], path: Path) -> None:
    """Write it atomically (a reader never sees half a manifest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, manifest_text(frames).encode("utf-8"), mode=0o644)
