"""A sample storyboard with two recurring characters, for the demo and test_async_image.py."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from asyncimg.i18n import _, set_language
from asyncimg.lifecycle.submit import TaskRequest

CHARACTERS = {
    "lin": ("林晓 Lin Xiao", (196, 64, 84), (250, 222, 200)),
    "chen": ("陈默 Chen Mo", (52, 92, 168), (236, 208, 180)),
}

# (prompt, characters in the frame); the style alternates by scene.
SCENES: list[tuple[str, tuple[str, ...]]] = [
    ("雨夜的小巷，林晓撑着红伞回头张望 / Lin Xiao looks back under a red umbrella", ("lin",)),
    ("陈默在旧书店里翻开一本泛黄的日记 / Chen Mo opens an old diary in a bookshop", ("chen",)),
    ("林晓和陈默在桥上第一次相遇 / Lin Xiao and Chen Mo meet on a bridge", ("lin", "chen")),
    ("清晨的车站，林晓拖着行李箱 / Lin Xiao at the station at dawn", ("lin",)),
    ("陈默在天台上眺望城市的灯火 / Chen Mo watches the city lights", ("chen",)),
    ("两人在咖啡馆对坐 / the two sit facing each other in a cafe", ("lin", "chen")),
    ("林晓在图书馆寻找线索 / Lin Xiao searches the library shelves", ("lin",)),
    ("陈默骑车穿过梧桐大道 / Chen Mo cycles down a plane-tree avenue", ("chen",)),
    ("暴雨中两人躲在公交站台下 / both shelter at a bus stop in a storm", ("lin", "chen")),
    ("林晓在灯下读信 / Lin Xiao reads a letter by lamplight", ("lin",)),
    ("陈默在海边捡起一枚贝壳 / Chen Mo picks up a shell on the beach", ("chen",)),
    ("夕阳下两人并肩走向远方 / the two walk into the sunset", ("lin", "chen")),
]

STYLES = ("manga", "watercolor")


def draw_character(path: Path, key: str) -> Path:
    """A simple, recognisable figure: the same one in every frame that uses it."""
    name, cloth, skin = CHARACTERS[key]
    img = Image.new("RGB", (512, 768), (245, 245, 240))
    d = ImageDraw.Draw(img)
    d.ellipse((176, 80, 336, 240), fill=skin, outline=(40, 40, 40), width=4)
    d.rectangle((150, 250, 362, 600), fill=cloth, outline=(40, 40, 40), width=4)
    d.rectangle((170, 600, 240, 740), fill=(60, 60, 60))
    d.rectangle((272, 600, 342, 740), fill=(60, 60, 60))
    d.ellipse((210, 140, 230, 160), fill=(30, 30, 30))
    d.ellipse((282, 140, 302, 160), fill=(30, 30, 30))
    d.text((20, 20), name, fill=(20, 20, 20))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG")
    return path


def storyboard(out_dir: Path, frames: int = len(SCENES)) -> list[TaskRequest]:
    """Requests for `frames` vertical frames (1440x2560), two styles, two characters."""
    refs = {key: draw_character(out_dir / "characters" / f"{key}.png", key) for key in CHARACTERS}
    requests = []
    for i in range(frames):
        prompt, who = SCENES[i % len(SCENES)]
        style = STYLES[(i * len(STYLES)) // max(1, frames)]
        requests.append(
            TaskRequest(
                prompt=prompt,
                output_path=str(out_dir / "frames" / f"frame_{i + 1:03d}.png"),
                character_images=tuple(str(refs[k]) for k in who),
                style=style,
                size="1440x2560",
                params={"force_single": True},
            )
        )
    return requests


def run_sample_submission(argv: Sequence[str]) -> int:
    """test_async_image.py: submit three sample frames; with --emulator, also finish them."""
    parser = argparse.ArgumentParser(prog="test_async_image.py")
    parser.add_argument("--emulator", action="store_true", help="use an in-process emulator")
    parser.add_argument("--tasks-dir", default="async_tasks")
    parser.add_argument("--out", default="test_async_output")
    parser.add_argument("--lang", default=None, help="language of messages: zh or en")
    args = parser.parse_args(list(argv))
    set_language(args.lang)
    requests = storyboard(Path(args.out), frames=3)
    if args.emulator:
        from asyncimg.demo import run_demo

        return asyncio.run(run_demo(requests, Path(args.tasks_dir), concurrency=2))
    from asyncimg.api import generate_image_with_character

    ok = 0
    for r in requests:
        ok += generate_image_with_character(
            r.prompt,
            r.output_path,
            character_images=list(r.character_images),
            style=r.style,
            tasks_dir=args.tasks_dir,
            size=r.size,
            **r.params,
        )
    print(
        _("{ok}/{total} tasks submitted; next: python check_async_tasks.py --monitor").format(
            ok=ok, total=len(requests)
        )
    )
    return 0 if ok == len(requests) else 1
