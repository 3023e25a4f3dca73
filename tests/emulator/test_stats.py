"""Counters at /_emulator/stats and Emulator.stats()."""

from __future__ import annotations

from asyncimg.protocol.signing import Credentials

from .conftest import AK, SUBMIT, V40, Start


async def test_stats(start: Start) -> None:
    emu, api = await start(gen_seconds=(10.0, 10.0))
    first = await api.submit()
    emu.advance(4)
    await api.submit()
    await api.submit()
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
        "errors": {"50200": 1, "SignatureDoesNotMatch": 1},
        "image_downloads": 2,
        "tasks_submitted": 3,
        "tasks_done": 1,
        "tasks_unfinished": 2,
        "peak_unfinished": 3,
        "faults_fired": {},
    }
    assert emu.stats() == expected
    async with api.session.get(f"{emu.url}/_emulator/stats") as resp:
        assert resp.status == 200
        assert await resp.json() == expected
    emu.advance(10)
    assert (emu.stats()["tasks_done"], emu.stats()["tasks_unfinished"]) == (3, 0)
