"""`make chaos`: the whole reliability suite, then its table; exit 1 if a figure misses.

.venv/bin/python -m benchmarks.chaos [--short] [--seed N] [--parts kills,crowd,...]
    [--keep DIR] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from . import FULL, PARTS, SHORT, run
from .common import render
from .kills import SEED


def main() -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the size `make test` runs")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated")
    parser.add_argument("--keep", type=Path, help="run in this (new) folder and keep it")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    size = SHORT if args.short else FULL

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.keep is not None:
        args.keep.mkdir(parents=True)
        report = run(args.keep, size, args.seed, parts, progress)
    else:
        with tempfile.TemporaryDirectory(prefix="asyncimg-chaos-") as tmp:
            report = run(Path(tmp), size, args.seed, parts, progress)
    title = f"make chaos ({'short' if args.short else 'full'}, seed {args.seed})"
    table = render(report, title)
    print(table)
    if args.markdown is not None:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    for problem in report.problems:
        print(problem, file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
