"""The guide's `test_async_image.py`: submit a few sample frames with two character images.

    python test_async_image.py             # against the API configured in the environment
    python test_async_image.py --emulator  # against an in-process emulator, then checks
                                           # until the images are on disk

It draws its own character images (no files needed) into ./test_async_output/.
"""

from __future__ import annotations

import sys

from asyncimg.samples import run_sample_submission

if __name__ == "__main__":
    sys.exit(run_sample_submission(sys.argv[1:]))
