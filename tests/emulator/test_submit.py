"""Submit validation: every rejection is a business error with data null (spec §3, §5)."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from .conftest import SUBMIT, V40, Start, png_b64


def _gif_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "GIF")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        (b"not json", 50215, "JSON"),
        (b"[1, 2]", 50215, "object"),
        ({"prompt": "x"}, 50215, "req_key"),
        ({"req_key": 7, "prompt": "x"}, 50215, "req_key"),
        ({"req_key": "no_such_model", "prompt": "x"}, 50400, "req_key"),
        ({"req_key": V40}, 50215, "prompt"),
        ({"req_key": V40, "prompt": "x" * 801}, 50215, "prompt"),
        ({"req_key": V40, "prompt": "x", "width": 2048}, 50215, "width"),
        ({"req_key": V40, "prompt": "x", "width": 720, "height": 1280}, 50215, "width x height"),
        ({"req_key": V40, "prompt": "x", "size": 512 * 512}, 50215, "size"),
        ({"req_key": V40, "prompt": "x", "scale": 2}, 50215, "scale"),
        ({"req_key": V40, "prompt": "x", "force_single": "yes"}, 50215, "force_single"),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": ["@@@"]},
            50215,
            "binary_data_base64[0]",
        ),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": ["data:image/png;base64,AAAA"]},
            50215,
            "binary_data_base64[0]",
        ),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": [png_b64(), "aGVsbG8="]},
            50215,
            "binary_data_base64[1]",
        ),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": [_gif_b64()]},
            50215,
            "binary_data_base64[0]",
        ),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": [png_b64((400, 100))]},
            50215,
            "aspect",
        ),
        (
            {"req_key": V40, "prompt": "x", "binary_data_base64": [png_b64()] * 11},
            50215,
            "binary_data_base64",
        ),
        (
            {"req_key": "jimeng_t2i_v31", "prompt": "x", "binary_data_base64": [png_b64()]},
            50215,
            "binary_data_base64",
        ),
        ({"req_key": "jimeng_i2i_v30", "prompt": "x"}, 50215, "binary_data_base64"),
    ],
)
async def test_submit_rejected(start: Start, body: Any, code: int, needle: str) -> None:
    emu, api = await start()
    reply = await api.call(SUBMIT, body)
    assert (reply.status, reply.code, reply.body["status"]) == (400, code, code), reply
    assert reply.data is None
    assert needle in reply.body["message"]
    assert reply.body["request_id"]
    assert emu.stats()["tasks_submitted"] == 0
    assert emu.stats()["errors"] == {str(code): 1}


@pytest.mark.parametrize(
    "body",
    [
        {"req_key": V40, "prompt": "一只在雪地里的红狐狸"},
        {"req_key": V40, "prompt": "x", "width": 1440, "height": 2560, "scale": 0.7},
        {"req_key": V40, "prompt": "x", "binary_data_base64": [png_b64(), png_b64((80, 40))]},
        {"req_key": "jimeng_t2i_v31", "prompt": "x", "width": 1328, "height": 1328},
        {"req_key": "jimeng_i2i_v30", "prompt": "x", "binary_data_base64": [png_b64()]},
    ],
)
async def test_submit_accepted(start: Start, body: dict[str, Any]) -> None:
    _, api = await start()
    reply = await api.call(SUBMIT, body)
    assert (reply.status, reply.code, reply.body["message"]) == (200, 10000, "Success"), reply
    task_id = reply.data["task_id"]
    assert isinstance(task_id, str) and len(task_id) == 19 and task_id.isdigit()
    assert reply.body["time_elapsed"].endswith("ms")
