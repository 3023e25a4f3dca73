"""Command-line interfaces: `asyncimg` (click) and the guide's `check_async_tasks.py` flags."""
