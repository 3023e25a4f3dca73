"""The guide's `check_async_tasks.py`: --check-once, --monitor, --interval N, --tasks-dir D,
or an interactive menu with no arguments. A thin shim over `asyncimg.cli.legacy`."""

from __future__ import annotations

import sys

from asyncimg.cli.legacy import main

if __name__ == "__main__":
    sys.exit(main())
