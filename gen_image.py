"""The guide's `gen_image.py`: `generate_image_with_character()` now submits an async task.

    from gen_image import generate_image_with_character
    ok = generate_image_with_character("少女站在樱花树下", "frames/001.png",
                                       character_images=["chars/heroine.png"], style="manga")

`ok` is True when the task is durably recorded in async_tasks/ and accepted by the API
(or queued locally because the account is at its limit); run check_async_tasks.py to
download the images. As a script it is `asyncimg submit`:

    python gen_image.py "少女站在樱花树下" -o frames/001.png --character chars/heroine.png
"""

from __future__ import annotations

from asyncimg.api import generate_image_with_character

__all__ = ["generate_image_with_character"]

if __name__ == "__main__":
    import sys

    from asyncimg.cli.main import main

    main(["submit", *sys.argv[1:]], prog_name="gen_image.py")
