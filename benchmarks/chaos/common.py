"""What every part of the suite shares: the figures table, the project-folder census (frames,
images, leftovers) and the secret-key search.

The emulator-in-a-thread and the project folder (`EmulatorThread`, `E2E`) are the end-to-end
tests' own (`tests/e2e/conftest.py`): the suite drives the real commands exactly as they do.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tests.e2e.conftest import SK, EmulatorThread

# Files a tasks folder may hold besides records: anything else there is a leftover.
TASKS_DIR_OWN = {".index", ".scheduler-state", "manifest.jsonl"}
TASKS_DIR_SUBDIRS = {".locks", ".quarantine"}
FORMAT_BY_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


@dataclass
class Figure:
    """One row of the table: `value` against what is required (`want`, None: a count)."""

    part: str
    name: str
    value: Any
    want: Any = None
    note: str = ""

    @property
    def ok(self) -> bool:
        if self.want is None:
            return True
        if isinstance(self.want, tuple):  # (">=", n)
            return bool(self.value >= self.want[1])
        return bool(self.value == self.want)

    @property
    def wanted(self) -> str:
        if self.want is None:
            return ""
        if isinstance(self.want, tuple):
            return f"{self.want[0]} {self.want[1]}"
        return str(self.want)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    cases: list[Any] = field(default_factory=list)  # badinput.CaseResult
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what lies behind a missed figure

    def add(self, part: str, name: str, value: Any, want: Any = None, note: str = "") -> None:
        self.figures.append(Figure(part, name, value, want, note))

    def get(self, part: str, name: str) -> Any:
        (value,) = [f.value for f in self.figures if f.part == part and f.name == name]
        return value

    @property
    def failures(self) -> list[Figure]:
        return [f for f in self.figures if not f.ok]


def billed(emu: EmulatorThread) -> dict[str, Any]:
    """What the emulator billed, read as a user would: GET /_emulator/stats."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(f"{emu.url}/_emulator/stats", timeout=30) as reply:
        stats: dict[str, Any] = json.load(reply)
    return stats


def leftovers(tasks: Path, out: Path, images: set[str]) -> list[Path]:
    """Files nobody should find after a clean pass: temp files of interrupted writes (any
    name) in the tasks folder and beside the images, and stray files among the images."""
    found: list[Path] = []
    if tasks.is_dir():
        for path in tasks.iterdir():
            if path.is_dir():
                if path.name not in TASKS_DIR_SUBDIRS:
                    found.append(path)
                continue
            record = not path.name.startswith(".") and path.suffix in (".json", ".txt")
            if not record and path.name not in TASKS_DIR_OWN:
                found.append(path)
    if out.is_dir():
        found.extend(p for p in out.rglob("*") if p.is_file() and p.name not in images)
    return sorted(found)


def image_problem(path: Path) -> str | None:
    """None when `path` decodes whole and its format is the one its extension names."""
    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
            actual = img.format
    except Exception as exc:  # Pillow raises many kinds
        return f"{path.name}: does not decode ({exc})"
    want = FORMAT_BY_EXTENSION.get(path.suffix.lower())
    if actual != want:
        return f"{path.name}: {actual} in a {path.suffix} file"
    return None


def secret_hits(root: Path, outputs: list[str] | None = None) -> list[str]:
    """Where the secret key shows: every file under `root` and every output given."""
    needle = SK.encode()
    hits = [
        str(p)
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]
    hits.extend(f"output #{i}" for i, text in enumerate(outputs or []) if SK in text)
    return hits


def frames_census(
    records: list[dict[str, Any]], root: Path, frames: set[str]
) -> tuple[int, int, list[str]]:
    """(lost frames, frames with more than one record, image problems) for `frames`
    (output paths): a frame is lost unless exactly one record writes it, completed, with its
    image on disk."""
    per_frame = Counter(r.get("output_path") for r in records)
    completed = {r["output_path"] for r in records if r.get("status") == "completed"}
    lost = sum(1 for f in frames if f not in completed or not (root / f).is_file())
    doubled = sum(1 for f in frames if per_frame[f] > 1)
    problems = [p for f in sorted(frames) if (root / f).is_file() if (p := image_problem(root / f))]
    return lost, doubled, problems


def render(report: Report, title: str) -> str:
    """The table as Markdown (what README carries): figures, then the bad-input cases."""
    out = [
        f"### {title}",
        "",
        "| part | figure | value | wanted | ok | note |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.figures:
        mark = "" if f.want is None else ("yes" if f.ok else "**NO**")
        out.append(f"| {f.part} | {f.name} | {f.value} | {f.wanted} | {mark} | {f.note} |")
    if report.cases:
        out += ["", "| case | input | exit | one line | untouched | lost | ok | says |"]
        out.append("|---|---|---|---|---|---|---|---|")
        for c in report.cases:
            ok = "yes" if c.ok else ("**NO** (edges)" if c.needs else "**NO**")
            says = c.first_line.replace("|", "\\|")[:90]
            out.append(
                f"| {c.name} | {c.what.replace('|', '/')} | {c.exit} | "
                f"{'yes' if c.line_ok else 'no'} | {'yes' if c.untouched else 'no'} | "
                f"{c.lost} | {ok} | {says} |"
            )
    if report.seconds:
        times = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
        out += ["", f"wall time: {times}; total {sum(report.seconds.values()):.0f} s"]
    return "\n".join(out)
