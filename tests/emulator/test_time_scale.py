"""`time_scale`, the `realistic` profile and per-task times in the task log (issue 7)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from asyncimg.cli import emulator_cmd
from asyncimg.emulator import EmulatorConfig

from .conftest import SUBMIT, V40, FakeClock, Start


async def test_time_scale_speeds_up_task_timing(start: Start) -> None:
    clock = FakeClock()
    emu, api = await start(clock=clock, gen_seconds=(20.0, 20.0), time_scale=20)
    t0 = emu.now()
    task_id = await api.submit()
    clock.t += 0.25  # 5 emulator seconds: still queued (the first 30 %)
    assert emu.now() == pytest.approx(t0 + 5)
    assert (await api.poll(task_id)).data["status"] == "in_queue"
    clock.t += 0.25  # 10 s
    assert (await api.poll(task_id)).data["status"] == "generating"
    clock.t += 0.5  # 20 s: done after one real second
    assert (await api.poll(task_id)).data["status"] == "done"
    assert emu.stats()["tasks_done"] == 1


async def test_time_scale_one_is_the_configured_clock(start: Start) -> None:
    clock = FakeClock()
    emu, _ = await start(clock=clock)
    assert emu.now() == emu.wall_now() == clock.t
    clock.t += 7.5
    emu.advance(3)
    assert emu.now() == emu.wall_now() == clock.t + 3
    assert emu.emulator_time(clock.t) == clock.t + 3


async def test_time_scale_scales_the_qps_window(start: Start) -> None:
    clock = FakeClock()
    _, api = await start(clock=clock, qps=2, time_scale=10)
    await api.submit()
    await api.submit()
    over = await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})
    assert over.code == 50429
    clock.t += 0.05  # half an emulator second: the window is still full
    assert (await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})).code == 50429
    clock.t += 0.051  # past one emulator second
    await api.submit()


async def test_time_scale_scales_concurrency_and_retention(start: Start) -> None:
    clock = FakeClock()
    _, api = await start(
        clock=clock,
        concurrency=1,
        gen_seconds=(10.0, 10.0),
        retention_seconds=100.0,
        time_scale=10,
    )
    first = await api.submit()
    assert (await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})).code == 50430
    clock.t += 1.0  # 10 emulator seconds: the slot is free again
    await api.submit()
    clock.t += 9.5  # 105 emulator seconds after the first: past retention
    assert (await api.poll(first)).data["status"] == "not_found"


async def test_x_date_is_checked_against_the_unscaled_clock(start: Start) -> None:
    clock = FakeClock()
    emu, api = await start(clock=clock, time_scale=100)
    clock.t += 60  # 6,000 emulator seconds: far beyond the 15-minute skew allowance
    assert emu.now() - emu.wall_now() == pytest.approx(99 * 60)
    ok = await api.call(SUBMIT, {"req_key": V40, "prompt": "x"}, now=emu.wall_now())
    assert ok.code == 10000
    refused = await api.call(SUBMIT, {"req_key": V40, "prompt": "x"}, now=emu.now())
    assert refused.status >= 400 and refused.body.get("code") != 10000


async def test_advance_under_time_scale(start: Start) -> None:
    clock = FakeClock()
    emu, api = await start(clock=clock, gen_seconds=(10.0, 10.0), time_scale=5)
    task_id = await api.submit()
    emu.advance(10)  # emulator seconds, not multiplied
    assert (await api.poll(task_id)).data["status"] == "done"
    clock.t += 2
    assert emu.emulator_time(clock.t) == pytest.approx(emu.now())
    assert emu.now() - emu.wall_now() == pytest.approx(8)


async def test_task_log_has_started_and_done_times(start: Start) -> None:
    clock = FakeClock()
    emu, api = await start(clock=clock, gen_seconds=(10.0, 10.0), time_scale=4)
    t0 = emu.now()
    task_id = await api.submit(prompt="timed")
    (entry,) = emu.task_log()
    assert entry["task_id"] == task_id
    assert entry["submitted_at"] == entry["received_at"] == t0
    assert entry["started_at"] == pytest.approx(t0 + 3)  # leaves in_queue after 30 %
    assert entry["done_at"] == pytest.approx(t0 + 10)
    # the log agrees with what a poll reports, on the emulator's clock
    clock.t += 2.9 / 4
    assert (await api.poll(task_id)).data["status"] == "in_queue"
    clock.t += 0.2 / 4
    assert (await api.poll(task_id)).data["status"] == "generating"
    clock.t += 6.8 / 4  # 9.9 s
    assert (await api.poll(task_id)).data["status"] == "generating"
    clock.t += 0.2 / 4  # 10.1 s
    assert (await api.poll(task_id)).data["status"] == "done"
    async with api.session.get(f"{emu.url}/_emulator/stats") as resp:
        (served,) = (await resp.json())["tasks"]
    assert served == entry


def test_realistic_profile() -> None:
    cfg = EmulatorConfig.realistic()
    assert (cfg.concurrency, cfg.qps, cfg.gen_seconds) == (1, 2.0, (10.0, 60.0))
    assert cfg.time_scale == 1.0 and cfg.retention_seconds == EmulatorConfig().retention_seconds
    fast = EmulatorConfig.realistic(time_scale=20, concurrency=2, seed=3)
    assert (fast.time_scale, fast.concurrency, fast.qps, fast.seed) == (20, 2, 2.0, 3)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_time_scale_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="time_scale"):
        EmulatorConfig(time_scale=bad)


def _cli_config(monkeypatch: pytest.MonkeyPatch, *args: str) -> EmulatorConfig:
    seen: list[EmulatorConfig] = []

    def fake_run_forever(config: EmulatorConfig, on_ready: Any = None) -> None:
        seen.append(config)

    monkeypatch.setattr(emulator_cmd, "run_forever", fake_run_forever)
    result = CliRunner().invoke(emulator_cmd.emulator, list(args))
    assert result.exit_code == 0, result.output
    (config,) = seen
    return config


def test_cli_profile_realistic(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cli_config(monkeypatch, "--profile", "realistic", "--time-scale", "20")
    assert (cfg.concurrency, cfg.qps, cfg.gen_seconds, cfg.time_scale) == (
        1,
        2.0,
        (10.0, 60.0),
        20.0,
    )
    # a flag given explicitly wins over the profile
    cfg = _cli_config(monkeypatch, "--profile", "realistic", "--concurrency", "3")
    assert (cfg.concurrency, cfg.qps, cfg.gen_seconds) == (3, 2.0, (10.0, 60.0))
    # without a profile, today's defaults
    cfg = _cli_config(monkeypatch)
    assert (cfg.concurrency, cfg.qps, cfg.gen_seconds, cfg.time_scale) == (
        None,
        None,
        (2.0, 6.0),
        1.0,
    )
