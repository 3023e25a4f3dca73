"""QPS (50429) and account concurrency (50430) limits (spec §5, §6)."""

from __future__ import annotations

from .conftest import FakeClock, Start


async def test_qps_per_action(start: Start) -> None:
    clock = FakeClock()
    _, api = await start(clock=clock, qps=2)
    first = await api.submit()
    await api.submit()
    over = await api.call("CVSync2AsyncSubmitTask", {"req_key": "jimeng_t2i_v40", "prompt": "x"})
    assert (over.status, over.code, over.body["status"], over.data) == (429, 50429, 50429, None)
    # GetResult has its own window.
    assert (await api.poll(first)).code == 10000
    assert (await api.poll(first)).code == 10000
    over = await api.poll(first)
    assert (over.status, over.code, over.data) == (429, 50429, None)
    clock.t += 0.5
    assert (await api.poll(first)).code == 50429
    clock.t += 0.51
    assert (await api.poll(first)).code == 10000
    await api.submit()


async def test_qps_window_slides(start: Start) -> None:
    clock = FakeClock()
    _, api = await start(clock=clock, qps=3)
    task_id = await api.submit()
    codes = []
    for _ in range(8):
        codes.append((await api.poll(task_id)).code)
        clock.t += 0.25
    # 3 allowed in any 1 s window: requests at 0, .25, .5 pass; .75 fails; 1.0 passes (0 left).
    assert codes == [10000, 10000, 10000, 50429, 10000, 10000, 10000, 50429]


async def test_concurrency_limit(start: Start) -> None:
    emu, api = await start(concurrency=2, gen_seconds=(10.0, 10.0))
    await api.submit()
    emu.advance(5)
    await api.submit()
    reply = await api.call("CVSync2AsyncSubmitTask", {"req_key": "jimeng_t2i_v40", "prompt": "x"})
    assert (reply.status, reply.code, reply.data) == (429, 50430, None)
    assert emu.stats()["tasks_submitted"] == 2
    emu.advance(5)  # the first task is done now
    await api.submit()
    assert (
        await api.call("CVSync2AsyncSubmitTask", {"req_key": "jimeng_t2i_v40", "prompt": "x"})
    ).code == 50430
    stats = emu.stats()
    assert (stats["peak_unfinished"], stats["tasks_done"], stats["tasks_unfinished"]) == (2, 1, 2)
    assert stats["errors"] == {"50430": 2}


async def test_no_limits_by_default(start: Start) -> None:
    _, api = await start()
    for _ in range(25):
        await api.submit()
