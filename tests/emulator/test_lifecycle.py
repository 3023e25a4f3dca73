"""Task timing, retention, the poll's req_json and the two ways images come back (spec §4)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image

from asyncimg.emulator.render import background

from .conftest import RESULT, V40, FakeClock, Start, png_b64


def _data(status: str) -> dict[str, Any]:
    """A status-only `data` as the service sends it: both image keys null, extra keys."""
    return {
        "status": status,
        "image_urls": None,
        "binary_data_base64": None,
        "algorithm_base_resp": {"status_code": 0, "status_message": "Success"},
        "resp_data": "",
    }


async def test_status_sequence(start: Start) -> None:
    clock = FakeClock()
    _, api = await start(clock=clock, gen_seconds=(10.0, 10.0))
    base = clock.t
    task_id = await api.submit()
    seen = []
    for t in (0.0, 2.9, 3.1, 9.9, 10.0, 3600.0):
        clock.t = base + t
        reply = await api.poll(task_id)
        assert (reply.status, reply.code) == (200, 10000), reply
        seen.append(reply.data["status"])
    assert seen == ["in_queue", "in_queue", "generating", "generating", "done", "done"]


async def test_durations_drawn_within_bounds(start: Start) -> None:
    emu, api = await start(gen_seconds=(2.0, 6.0), seed=3)
    ids = [await api.submit(size=1024 * 1024) for _ in range(6)]
    emu.advance(1.99)
    assert {(await api.poll(i)).data["status"] for i in ids} <= {"in_queue", "generating"}
    emu.advance(4.02)
    assert {(await api.poll(i)).data["status"] for i in ids} == {"done"}


async def test_advance_sugar(start: Start) -> None:
    emu, api = await start(gen_seconds=(5.0, 5.0))
    task_id = await api.submit()
    assert (await api.poll(task_id)).data["status"] == "in_queue"
    emu.advance(5)
    assert (await api.poll(task_id)).data["status"] == "done"


async def test_not_found(start: Start) -> None:
    emu, api = await start(retention_seconds=100.0)
    task_id = await api.submit()
    for reply in (
        await api.poll("1234567890123456789"),
        await api.poll(task_id, req_key="jimeng_t2i_v31"),
    ):
        assert (reply.status, reply.code, reply.data) == (200, 10000, _data("not_found"))
    emu.advance(99)
    assert (await api.poll(task_id)).data["status"] == "done"
    emu.advance(2)
    assert (await api.poll(task_id)).data == _data("not_found")
    status, _, _ = await api.get(f"/_emulator/images/{task_id}/0.png")
    assert status == 404


async def test_expired_then_not_found(start: Start) -> None:
    emu, api = await start(expire_seconds=50.0, retention_seconds=100.0)
    task_id = await api.submit()
    emu.advance(49)
    assert (await api.poll(task_id)).data["status"] == "done"
    emu.advance(2)
    assert (await api.poll(task_id)).data == _data("expired")
    emu.advance(50)
    assert (await api.poll(task_id)).data == _data("not_found")


@pytest.mark.parametrize(
    "extra",
    [
        {"req_json": {"return_url": True}},
        {"req_json": "{not json"},
        {"req_json": "[1]"},
        {"task_id": 12},
        {"task_id": None},
        {"req_key": None},
    ],
)
async def test_poll_rejected(start: Start, extra: dict[str, Any]) -> None:
    _, api = await start()
    body = {"req_key": V40, "task_id": "1234567890123456789", **extra}
    body = {k: v for k, v in body.items() if v is not None}
    reply = await api.call(RESULT, body)
    assert (reply.status, reply.code, reply.data) == (400, 50215, None), reply


async def test_poll_unknown_req_key(start: Start) -> None:
    _, api = await start()
    reply = await api.call(RESULT, {"req_key": "nope", "task_id": "1"})
    assert (reply.status, reply.code, reply.data) == (400, 50400, None), reply


async def test_base64_reply(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit(width=1440, height=2560)
    emu.advance(10)
    for reply in (await api.poll(task_id), await api.poll(task_id, return_url=False)):
        assert reply.code == 10000
        assert reply.data["image_urls"] is None  # both keys, one null (research S2-S5)
        (encoded,) = reply.data["binary_data_base64"]
        img = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert (img.format, img.size) == ("PNG", (1440, 2560))
    assert emu.stats()["image_downloads"] == 0


async def test_url_reply(start: Start) -> None:
    emu, api = await start(images_per_task=3)
    task_id = await api.submit(width=1024, height=1024)
    status, _, _ = await api.get(f"/_emulator/images/{task_id}/0.png")
    assert status == 404
    emu.advance(10)
    reply = await api.poll(task_id, return_url=True)
    assert reply.data["binary_data_base64"] is None
    urls = reply.data["image_urls"]
    assert urls == [f"{emu.url}/_emulator/images/{task_id}/{n}.png" for n in range(3)]
    frames = []
    for url in urls:
        status, data, content_type = await api.get(url)
        assert (status, content_type) == (200, "image/png")
        img = Image.open(io.BytesIO(data))
        img.load()
        assert (img.format, img.size) == ("PNG", (1024, 1024))
        frames.append(data)
    assert len(set(frames)) == 3
    assert (await api.get(f"/_emulator/images/{task_id}/3.png"))[0] == 404
    assert (await api.get(f"/_emulator/images/{task_id}/0.jpg"))[0] == 404
    assert emu.stats()["image_downloads"] == 3


@pytest.mark.parametrize(
    ("req_key", "fields", "fmt", "size"),
    [
        (V40, {"prompt": "a wide shot, 16:9"}, "PNG", (2736, 1536)),
        (V40, {"width": 2560, "height": 1440}, "PNG", (2560, 1440)),
        (V40, {"size": 1536 * 1536, "prompt": "portrait 9:16"}, "PNG", (1152, 2048)),
        (V40, {"size": 1024 * 1024, "prompt": "square 1:1"}, "PNG", (1024, 1024)),
        ("jimeng_t2i_v31", {}, "JPEG", (1328, 1328)),
        ("jimeng_t2i_v30", {"width": 1024, "height": 768}, "JPEG", (1024, 768)),
        (
            "jimeng_i2i_v30",
            {"binary_data_base64": [png_b64()], "width": 600, "height": 900},
            "JPEG",
            (608, 896),
        ),
        ("jimeng_i2i_v30", {"binary_data_base64": [png_b64()]}, "JPEG", (1328, 1328)),
        (
            "jimeng_i2i_v30",
            {"binary_data_base64": [png_b64()], "width": 2016, "height": 864},
            "JPEG",
            (1536, 656),
        ),
        ("seededit_v3.0", {"binary_data_base64": [png_b64((600, 800))]}, "JPEG", (600, 800)),
    ],
)
async def test_image_format_and_size(
    start: Start, req_key: str, fields: dict[str, Any], fmt: str, size: tuple[int, int]
) -> None:
    emu, api = await start()
    task_id = await api.submit(req_key, **fields)
    emu.advance(10)
    (url,) = (await api.poll(task_id, req_key, return_url=True)).data["image_urls"]
    assert url.endswith(".png" if fmt == "PNG" else ".jpg")
    status, data, content_type = await api.get(url)
    assert status == 200
    assert content_type == ("image/png" if fmt == "PNG" else "image/jpeg")
    img = Image.open(io.BytesIO(data))
    img.load()
    assert (img.format, img.size) == (fmt, size)


@pytest.mark.parametrize(
    ("images_per_task", "fields", "expected"),
    [
        (4, {}, 4),
        (4, {"force_single": True}, 1),
        (20, {}, 15),
        (20, {"binary_data_base64": [png_b64()] * 3}, 12),
    ],
)
async def test_image_count(
    start: Start, images_per_task: int, fields: dict[str, Any], expected: int
) -> None:
    emu, api = await start(images_per_task=images_per_task)
    task_id = await api.submit(size=1024 * 1024, **fields)
    emu.advance(10)
    assert len((await api.poll(task_id, return_url=True)).data["image_urls"]) == expected


async def test_text_only_models_return_one_image(start: Start) -> None:
    emu, api = await start(images_per_task=4)
    task_id = await api.submit("jimeng_t2i_v31")
    emu.advance(10)
    reply = await api.poll(task_id, "jimeng_t2i_v31", return_url=True)
    assert len(reply.data["image_urls"]) == 1


async def _frame(start: Start, **fields: Any) -> Image.Image:
    emu, api = await start()
    task_id = await api.submit(width=1024, height=1024, **fields)
    emu.advance(10)
    (encoded,) = (await api.poll(task_id)).data["binary_data_base64"]
    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")


async def test_prompts_give_different_images(start: Start) -> None:
    fox = await _frame(start, prompt="a red fox in the snow")
    cat = await _frame(start, prompt="一只在窗台上睡觉的猫")
    assert fox.getpixel((512, 1000)) == background("a red fox in the snow")
    assert cat.getpixel((512, 1000)) == background("一只在窗台上睡觉的猫")
    assert fox.getpixel((512, 1000)) != cat.getpixel((512, 1000))
    # The prompt is drawn: the frame holds more than the background and the border colour.
    assert len(fox.getcolors(1 << 20) or []) > 10


async def test_reference_thumbnails_are_drawn(start: Start) -> None:
    green = (0, 255, 0)
    frame = await _frame(start, binary_data_base64=[png_b64((200, 200), green)])
    plain = await _frame(start)
    assert green not in {c for _, c in plain.getcolors(1 << 20) or []}
    assert green in {c for _, c in frame.getcolors(1 << 20) or []}


async def test_req_json_other_options_accepted(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit()
    emu.advance(10)
    options = {"return_url": True, "logo_info": {"add_logo": False}, "aigc_meta": {}}
    reply = await api.call(
        RESULT, {"req_key": V40, "task_id": task_id, "req_json": json.dumps(options)}
    )
    assert reply.code == 10000 and len(reply.data["image_urls"]) == 1
