"""Callback mode: v40 frames carry `callback_url` (and the callback-only fields); the emulator
POSTs the GetResult envelope plus task_id when a task finishes, retrying failed deliveries;
the receiver completes this folder's task at once and refuses anyone else's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from asyncimg.cli.main import cli
from asyncimg.constants import ACTION_GET_RESULT
from asyncimg.lifecycle.callbacks import add_callback_routes, callback_task_id
from asyncimg.lifecycle.validate import Line, check_lines
from asyncimg.protocol.errors import InvalidInput
from asyncimg.protocol.models import validate_fields
from asyncimg.store.states import TaskState

if TYPE_CHECKING:
    from conftest import Start

V40 = "jimeng_t2i_v40"
Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`url = await serve(app)`: run an aiohttp app on a free 127.0.0.1 port."""
    runners: list[web.AppRunner] = []

    async def _serve(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield _serve
    for runner in runners:
        await runner.cleanup()


# -- the fields ------------------------------------------------------------------------------


def test_callback_fields_are_checked() -> None:
    ok: dict[str, Any] = {
        "prompt": "p",
        "callback_url": "https://example.com/cb",
        "return_url": True,
        "logo_info": json.dumps({"add_logo": True, "position": 0}),
        "aigc_meta": json.dumps({"producer_id": "x"}, ensure_ascii=False),
    }
    validate_fields(V40, ok)
    bad = [
        ({"callback_url": "example.com/cb"}, "callback_url"),
        ({"callback_url": "https://h/cb", "logo_info": {"add_logo": True}}, "logo_info"),
        ({"callback_url": "https://h/cb", "aigc_meta": "not json"}, "aigc_meta"),
        ({"callback_url": "https://h/cb", "return_url": "yes"}, "return_url"),
        ({"callback_url": "https://h/cb", "return_url": 1}, "return_url"),
        ({"logo_info": "{}"}, "logo_info"),  # callback-only, without a callback_url
    ]
    for fields, name in bad:
        with pytest.raises(InvalidInput) as caught:
            validate_fields(V40, {"prompt": "p", **fields})
        assert caught.value.field == name
    with pytest.raises(InvalidInput, match="does not take this field"):
        validate_fields("jimeng_t2i_v31", {"prompt": "p", "callback_url": "https://h/cb"})


def test_batch_line_takes_callback_fields(chdir_tmp: Path) -> None:
    from asyncimg.lifecycle.config import Config

    line = Line(
        "b.jsonl",
        1,
        {
            "prompt": "p",
            "output_path": "o.png",
            "callback_url": "https://example.com/cb",
            "logo_info": {"add_logo": True, "logo_text_content": "林晓"},
        },
    )
    checked = check_lines([line], Config())
    assert checked.problems == []
    params = checked.frames[0].record.params
    assert params["callback_url"] == "https://example.com/cb"
    assert json.loads(params["logo_info"]) == {"add_logo": True, "logo_text_content": "林晓"}
    assert "林晓" in params["logo_info"]  # kept as typed
    other = Line("b.jsonl", 2, {"prompt": "p", "output_path": "q.png", "callback_url": "x"})
    (problem,) = check_lines([other], Config()).problems
    assert (problem.where, problem.field) == ("b.jsonl:2", "callback_url")


def test_submit_callback_url_option(chdir_tmp: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(
        cli, ["submit", "p", "-o", "o.png", "--callback-url", "https://h/cb", "--dry-run"]
    )
    assert good.exit_code == 0, good.output
    bad = runner.invoke(
        cli,
        ["submit", "p", "-o", "o.png", "--callback-url", "https://h/cb", "--dry-run",
         "--req-key", "jimeng_t2i_v31"],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "command line: callback_url: " in bad.output


def test_callback_task_id() -> None:
    assert callback_task_id({"task_id": "7392616336519610409"}) == "7392616336519610409"
    assert callback_task_id({"task_id": 7392616336519610409}) == "7392616336519610409"
    for body in ({"task_id": True}, {"task_id": "../x"}, {}, [], "x"):
        assert callback_task_id(body) is None


# -- the emulator delivers ------------------------------------------------------------------


async def test_emulator_posts_the_envelope_and_retries(start: Start, serve: Serve) -> None:
    env = await start(callback_retry_seconds=(5.0, 5.0))
    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=500 if len(got) == 1 else 200)

    app = web.Application()
    app.router.add_post("/cb", receive)
    url = await serve(app) + "/cb"
    ws = env.workspace()
    report = await ws.submit([env.request("001", params={"callback_url": url, "return_url": True})])
    (outcome,) = report.batch.outcomes
    task_id = outcome.record.task_id
    assert task_id is not None
    env.advance(5)
    await env.emu.deliver_callbacks()
    assert got == []  # not done yet
    env.advance(6)
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["last_status"] == "500")
    assert len(got) == 1
    env.advance(5)
    # The receiver has the body before it answers; the emulator marks the delivery once
    # the answer is back: wait for that, not for the body.
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["delivered"])
    assert len(got) == 2
    body = got[1]
    assert body["task_id"] == task_id and body["code"] == 10000
    assert body["data"]["status"] == "done" and len(body["data"]["image_urls"]) == 1
    assert body["message"] == "Success" and body["request_id"]
    (delivery,) = env.emu.stats()["callbacks"]
    assert delivery["delivered"] and delivery["attempts"] == 2
    env.advance(60)
    await env.emu.deliver_callbacks()
    assert len(got) == 2  # delivered once: never again


async def test_emulator_gives_up_after_its_retries(start: Start) -> None:
    env = await start(callback_retry_seconds=(1.0,))
    dead = "http://127.0.0.1:9/cb"  # discard port: nothing listens
    await env.workspace().submit([env.request("001", params={"callback_url": dead})])
    env.advance(11)
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["last_status"] is not None)
    assert env.emu.stats()["callbacks"][0]["attempts"] == 1
    env.advance(2)
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["gave_up"])
    assert env.emu.stats()["callbacks"][0]["attempts"] == 2


# -- the receiver ---------------------------------------------------------------------------


async def test_callback_completes_the_task_at_once(start: Start, serve: Serve) -> None:
    env = await start()
    lines: list[str] = []
    ws = env.workspace()
    app = web.Application()
    receiver = add_callback_routes(
        app,
        store=ws.store,
        client_factory=env.new_client,
        make_checker=lambda client: env.checker(client),
        report=lines.append,
    )
    base = await serve(app)
    report = await ws.submit([env.request("001", params={"callback_url": base + "/callbacks"})])
    (outcome,) = report.batch.outcomes
    polls_before = env.emu.stats()["requests"].get(ACTION_GET_RESULT, 0)
    env.advance(11)  # done on the service; no check pass, no monitor runs
    await env.wait_until(lambda: receiver.completed == 1)
    (record,) = env.load_all()
    assert record.status is TaskState.COMPLETED
    assert (env.out_dir / "001.png").is_file()
    assert env.emu.stats()["requests"][ACTION_GET_RESULT] == polls_before + 1
    # The frame is completed before the receiver answers the POST; the emulator marks the
    # delivery only once that answer is back.
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["delivered"])
    assert any(outcome.record.task_id in line and "completed" in line for line in lines)

    # A retried delivery after completion is answered, and changes nothing.
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/callbacks", json={"task_id": record.task_id, "code": 10000}) as resp,
    ):
        assert resp.status == 200 and (await resp.json())["status"] == "completed"


async def test_callback_for_a_foreign_task_is_refused(start: Start, serve: Serve) -> None:
    env = await start()
    ws = env.workspace()
    await ws.submit([env.request("001")])
    app = web.Application()
    add_callback_routes(
        app, store=ws.store, client_factory=env.new_client, make_checker=env.checker
    )
    base = await serve(app)
    before = sorted((p.name, p.read_bytes()) for p in env.tasks_dir.glob("*.json"))
    polls = env.emu.stats()["requests"].get(ACTION_GET_RESULT, 0)
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/callbacks", json={"task_id": "1234567890123456789"}) as r:
            assert r.status == 404 and "not a task of this folder" in (await r.json())["error"]
        async with http.post(base + "/callbacks", data=b"{nope") as r:
            assert r.status == 400
        async with http.post(base + "/callbacks", json={"code": 10000}) as r:
            assert r.status == 400
    assert sorted((p.name, p.read_bytes()) for p in env.tasks_dir.glob("*.json")) == before
    assert env.emu.stats()["requests"].get(ACTION_GET_RESULT, 0) == polls


async def test_a_missed_callback_is_caught_by_polling(start: Start) -> None:
    env = await start(callback_retry_seconds=())
    ws = env.workspace()
    await ws.submit([env.request("001", params={"callback_url": "http://127.0.0.1:9/cb"})])
    env.advance(11)
    await env.wait_until(lambda: env.emu.stats()["callbacks"][0]["gave_up"])
    summary = await env.run_pass()
    assert summary.completed == 1
