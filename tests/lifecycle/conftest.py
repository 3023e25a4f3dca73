"""Fixtures for the lifecycle tests: the real client against the real emulator on a socket.

The emulator runs on a clock the test moves (`env.advance(s)`), so "generation" takes no
real time; the client signs with that same clock, and records are stamped with it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from asyncimg.api import Workspace
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.config import Config, config_from_mapping
from asyncimg.lifecycle.submit import TaskRequest, build_record
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.signing import Credentials
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

AK = "AKLTlifecycletestkey"
SK = "lifecycle-test-secret"
# Output size for test frames: the smallest area jimeng_t2i_v40 accepts, quick to render.
SIZE = "1024x1024"


class FakeClock:
    """Starts at the real time so signed X-Dates look normal; moves only when told."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@dataclass
class Env:
    """One emulator, one client, one tasks folder, one config."""

    emu: Emulator
    client: VisualClient
    store: TaskStore
    config: Config
    root: Path
    _clients: list[VisualClient] = field(default_factory=list)

    @property
    def tasks_dir(self) -> Path:
        return self.store.root

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    def now(self) -> float:
        return self.emu.now()

    def advance(self, seconds: float) -> None:
        self.emu.advance(seconds)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Yield to the loop (where the emulator runs) until `condition` holds (5 s at most)."""
        for _ in range(2500):
            if condition():
                return
            await asyncio.sleep(0.002)
        raise AssertionError("condition not reached within 5 s")

    def new_client(self, **kwargs: Any) -> VisualClient:
        """Another client on this emulator (e.g. with a short read timeout)."""
        client = make_client(self.emu, **kwargs)
        self._clients.append(client)
        return client

    def request(
        self, name: str, prompt: str = "a red fox in the snow", **kwargs: Any
    ) -> TaskRequest:
        kwargs.setdefault("size", SIZE)
        kwargs.setdefault("output_path", str(self.out_dir / f"{name}.png"))
        return TaskRequest(prompt=prompt, **kwargs)

    def add(self, name: str, prompt: str = "a red fox in the snow", **kwargs: Any) -> TaskRecord:
        """A pending record on disk, as `asyncimg submit` leaves it before the API call."""
        record = build_record(self.request(name, prompt, **kwargs), self.config, now=self.now())
        self.store.save(record)
        return record

    async def failed_by_review(
        self, *names: str, refs: dict[str, list[str]] | None = None
    ) -> list[TaskRecord]:
        """Frames the API accepted (billed) whose output failed review: failed,
        resubmittable, a second apart in the folder's order. A name may repeat (two
        records of one output file, as `--force` leaves them); `refs` gives a frame its
        character images."""
        self.emu.inject("review_failure", count=len(names))
        refs = refs or {}
        records = []
        for name in names:
            records.append(self.add(name, character_images=refs.get(name, [])))
            self.advance(1)
        await self.run_pass()
        self.advance(10)
        await self.run_pass()
        failed = [self.load(r) for r in records]
        assert all(r.status is TaskState.FAILED and r.task_id for r in failed)
        return failed

    def checker(self, client: VisualClient | None = None, **kwargs: Any) -> Checker:
        return Checker(self.store, client or self.client, clock=self.now, **kwargs)

    async def run_pass(self, **kwargs: Any) -> PassSummary:
        return await self.checker(**kwargs).run_pass()

    def load(self, record: TaskRecord) -> TaskRecord:
        """The record as a fresh process would read it from disk."""
        return TaskStore(self.tasks_dir).get(record.local_id)

    def load_all(self) -> list[TaskRecord]:
        report = TaskStore(self.tasks_dir).load_all()
        assert report.problems == []
        return report.records

    def workspace(self, config: Config | None = None) -> Workspace:
        return Workspace(self.store, config or self.config, self.new_client, clock=self.now)

    def image(
        self,
        name: str,
        size: tuple[int, int] = (256, 256),
        color: tuple[int, int, int] = (200, 40, 40),
        fmt: str = "PNG",
    ) -> Path:
        """A character reference image made with Pillow."""
        path = self.root / "chars" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, color).save(path, fmt)
        return path


Start = Callable[..., Awaitable[Env]]


def make_client(emu: Emulator, **kwargs: Any) -> VisualClient:
    """The real client, signing with the emulator's clock, retrying without delay."""
    kwargs.setdefault("endpoint", emu.url)
    kwargs.setdefault("clock", lambda: datetime.fromtimestamp(emu.now(), UTC))
    kwargs.setdefault("retry_base_delay", 0)
    return VisualClient(Credentials(AK, SK), **kwargs)


def leftovers(*folders: Path) -> list[Path]:
    """Temp files a write could leave behind (record `.x.tmp`, image `.x.part`)."""
    found: list[Path] = []
    for folder in folders:
        if folder.exists():
            found += [p for p in folder.rglob(".*") if p.suffix in (".tmp", ".part")]
    return found


@pytest.fixture
def no_leftovers() -> Callable[..., list[Path]]:
    return leftovers


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """`env = await start(concurrency=2, ...)`: EmulatorConfig overrides; FakeClock by default."""
    running: list[Emulator] = []
    envs: list[Env] = []

    async def _start(*, config: dict[str, Any] | None = None, **overrides: Any) -> Env:
        settings: dict[str, Any] = {
            "access_key": AK,
            "secret_key": SK,
            "gen_seconds": (10.0, 10.0),
            "clock": FakeClock(),
            "seed": 7,
        }
        settings.update(overrides)
        emu = Emulator(EmulatorConfig(**settings))
        await emu.start()
        running.append(emu)
        root = tmp_path / f"env{len(running)}" if running[1:] else tmp_path
        client = make_client(emu)
        env = Env(
            emu=emu,
            client=client,
            store=TaskStore(root / "async_tasks", clock=emu.now),
            config=config_from_mapping(config or {}),
            root=root,
            _clients=[client],
        )
        envs.append(env)
        return env

    yield _start
    for env in envs:
        for client in env._clients:
            await client.close()
    for emu in running:
        await emu.close()


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in tmp_path with no config file around (load_config looks in the cwd)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASYNCIMG_CONFIG", raising=False)
    yield tmp_path
