"""Counters at /_emulator/stats and Emulator.stats()."""

from __future__ import annotations

import time

from asyncimg.protocol.signing import Credentials

from .conftest import AK, SUBMIT, V40, Start

PROMPT = "a red fox in the snow"  # Api.submit's default


def _entry(task_id: str, t: float, prompt: str) -> dict[str, object]:
    """A 10 s task submitted at `t`: queued for 3 s, done after 10."""
    return {
        "task_id": task_id,
        "received_at": t,
        "submitted_at": t,
        "started_at": t + 3,
        "done_at": t + 10,
        "prompt": prompt,
    }


async def test_stats(start: Start) -> None:
    emu, api = await start(gen_seconds=(10.0, 10.0))
    t0 = emu.now()
    first = await api.submit()
    emu.advance(4)
    second = await api.submit(prompt="two")
    third = await api.submit(prompt="three")
    await api.call(SUBMIT, {"req_key": V40})
    await api.call(SUBMIT, {"req_key": V40, "prompt": "x"}, credentials=Credentials(AK, "no"))
    emu.advance(6)
    await api.poll(first)
    (url,) = (await api.poll(first, return_url=True)).data["image_urls"]
    await api.get(url)
    await api.get(url)
    await api.poll("1")

    expected = {
        "requests": {"CVSync2AsyncSubmitTask": 5, "CVSync2AsyncGetResult": 3},
        "errors": {"50215": 1, "SignatureDoesNotMatch": 1},
        "rate_limited": {},
        "image_downloads": 2,
        "image_downloads_by_task": {first: 2},
        "tasks_submitted": 3,
        "tasks_done": 1,
        "tasks_unfinished": 2,
        "peak_unfinished": 3,
        "faults_fired": {},
        "reference_fetches": [],
        "callbacks": [],
        "tasks": [
            _entry(first, t0, PROMPT),
            _entry(second, t0 + 4, "two"),
            _entry(third, t0 + 4, "three"),
        ],
    }
    stats = emu.stats()
    # Real seconds, when each answered poll of a known task came: two polls of `first`.
    polled = stats.pop("polled_at_by_task")
    assert list(polled) == [first] and len(polled[first]) == 2
    assert polled[first][0] <= polled[first][1]
    assert stats == expected
    async with api.session.get(f"{emu.url}/_emulator/stats") as resp:
        assert resp.status == 200
        served = await resp.json()
        assert served.pop("polled_at_by_task") == polled
        assert served == expected
    emu.advance(10)
    assert (emu.stats()["tasks_done"], emu.stats()["tasks_unfinished"]) == (3, 0)


async def test_task_log_says_when_the_request_arrived_and_when_the_task_was_made(
    start: Start,
) -> None:
    """With latency, a submit is received before its task exists: a client killed in
    between still gets billed, and the log shows both times (the kill-anywhere test
    attributes such tasks by `received_at`)."""
    emu, api = await start(latency_seconds=0.05, clock=time.time)
    before = time.time()
    task_id = await api.submit(prompt="late")
    (entry,) = emu.task_log()
    assert entry["task_id"] == task_id and entry["prompt"] == "late"
    assert before <= entry["received_at"] < entry["submitted_at"] <= time.time()
    assert entry["submitted_at"] - entry["received_at"] >= 0.04  # the latency, give or take
    assert emu.stats()["tasks"] == [entry]
