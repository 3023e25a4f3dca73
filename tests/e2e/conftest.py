"""End-to-end fixtures: a real emulator on 127.0.0.1 and the real commands as subprocesses.

The emulator runs on an asyncio loop in a background thread of the test process, so tests
can inject faults and read stats directly (every call is marshalled onto the emulator's
loop). The commands run as child processes with `cwd=tmp_path`, configured only through
the environment, exactly as a user would run them.

Every command run through :class:`E2E` is checked for the secret key in its output, and
at teardown every file under tmp_path is checked for it too.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASYNCIMG = BIN / "asyncimg"

AK = "AKLTe2eAccessKeyForTests"
# Distinctive, so a search of every output and file for it cannot match by accident.
SK = "e2e-Secret-Key-7f3QzX-must-never-leak"
SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT

# Fast tasks by default; tests that need slow ones ask for them.
FAST = (0.2, 0.5)


class EmulatorThread:
    """An :class:`Emulator` serving on its own event loop in a daemon thread."""

    def __init__(self, **overrides: Any) -> None:
        settings: dict[str, Any] = {
            "access_key": AK,
            "secret_key": SK,
            "gen_seconds": FAST,
            "seed": 7,
        }
        settings.update(overrides)
        self.config = EmulatorConfig(**settings)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="emulator", daemon=True)
        self.thread.start()
        self.emu: Emulator = self._call(self._start())

    async def _start(self) -> Emulator:
        emu = Emulator(self.config)
        await emu.start()
        return emu

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self._call(run())

    @property
    def url(self) -> str:
        return self.emu.url

    def inject(self, kind: str, count: int = 1, action: str | None = None) -> None:
        self._on_loop(lambda: self.emu.inject(kind, count, action))

    def release_slow(self) -> None:
        """Let every request a `slow` fault holds go on now (see `Emulator.release_slow`)."""
        self._on_loop(self.emu.release_slow)

    def stats(self) -> dict[str, Any]:
        return self._on_loop(self.emu.stats)

    def task_log(self) -> list[dict[str, Any]]:
        return self._on_loop(self.emu.task_log)

    def settle(self, seconds: float = 0.05) -> None:
        """Give the emulator's loop some turns and `seconds` to take in what already reached
        its sockets (a request a just-killed child sent), before the caller reads its log."""

        async def turns() -> None:
            for _ in range(20):
                await asyncio.sleep(0)
            await asyncio.sleep(seconds)
            for _ in range(20):
                await asyncio.sleep(0)

        self._call(turns())

    def wait_idle(self, submitted: int, timeout: float = 20) -> dict[str, Any]:
        """Until the emulator has accepted `submitted` tasks and finished all of them."""
        return wait_for(
            lambda: (
                s
                if (s := self.stats())["tasks_submitted"] >= submitted
                and s["tasks_unfinished"] == 0
                else None
            ),
            timeout,
            f"emulator to finish {submitted} tasks",
        )

    def close(self) -> None:
        try:
            self._call(self.emu.close())
            self._call(_cancel_leftover_tasks())  # e.g. handlers still in a `slow` fault
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


async def _cancel_leftover_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Ran:
    """A finished command."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n-> {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def assert_no_secret(text: str, where: str) -> None:
    assert SK not in text, f"the secret key appears in {where}"


class E2E:
    """One user's project folder (tmp_path) talking to one emulator."""

    def __init__(self, root: Path, emu: EmulatorThread) -> None:
        self.root = root
        self.emu = emu
        self.tasks = root / "async_tasks"

    def env(self, **changes: str | None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VOLC_", "ASYNCIMG_")) and "proxy" not in k.lower()
        }
        env.update(
            {
                constants.ENV_ENDPOINT: self.emu.url,
                constants.ENV_ACCESS_KEY: AK,
                constants.ENV_SECRET_KEY: SK,
                "COLUMNS": "200",
                "NO_COLOR": "1",
                "PYTHONUNBUFFERED": "1",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def argv_for(self, program: str, *args: str) -> list[str]:
        if program == "asyncimg":
            return [str(ASYNCIMG), *args]
        return [sys.executable, str(REPO / program), *args]

    def run(
        self,
        program: str,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        umask: int = -1,
    ) -> Ran:
        """Run `asyncimg ARGS` or a root script (`check_async_tasks.py`, ...) to the end."""
        argv = self.argv_for(program, *args)
        proc = subprocess.run(
            argv,
            cwd=self.root,
            env=env if env is not None else self.env(),
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            umask=umask,
        )
        ran = Ran(argv, proc.returncode, proc.stdout, proc.stderr)
        assert_no_secret(ran.output, f"the output of {program} {' '.join(args)}")
        return ran

    def run_in(
        self, cwd: Path, env: dict[str, str], *args: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `asyncimg ARGS` in another folder (another machine's) with `env`, to the end;
        no traceback."""
        done = subprocess.run(
            self.argv_for("asyncimg", *args),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def asyncimg(self, *args: str, **kwargs: Any) -> Ran:
        return self.run("asyncimg", *args, **kwargs)

    def ok(self, program: str, *args: str, **kwargs: Any) -> Ran:
        """Run and require exit status 0 and no traceback."""
        return self.exits(0, program, *args, **kwargs)

    def exits(self, code: int, program: str, *args: str, **kwargs: Any) -> Ran:
        """Run and require exit status `code` (0 done, 1 frames failed, 2 setup or input,
        130 interrupted) and no traceback."""
        ran = self.run(program, *args, **kwargs)
        assert ran.returncode == code, str(ran)
        assert "Traceback" not in ran.stderr, str(ran)
        return ran

    def popen(self, program: str, *args: str, input: str | None = None) -> subprocess.Popen[str]:
        """Start a command; `input` (typed answers) is written to its stdin at once (closed by
        `communicate`)."""
        proc = subprocess.Popen(
            self.argv_for(program, *args),
            cwd=self.root,
            env=self.env(),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        if input is not None:
            assert proc.stdin is not None
            proc.stdin.write(input)
            proc.stdin.flush()
        return proc

    # -- looking at the results ------------------------------------------------------------

    def record_files(self, tasks_dir: str | Path = "async_tasks") -> list[Path]:
        folder = self.root / tasks_dir
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix in (".json", ".txt")
        )

    def records(self, tasks_dir: str | Path = "async_tasks") -> list[dict[str, Any]]:
        """Every record file's JSON, oldest first. Safe to call while a command runs: a
        file removed between the listing and its reading (the `pending-*.json` a submit
        deletes once the record is saved under its task id) is left out, not an error."""
        items = []
        for path in self.record_files(tasks_dir):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            items.append(json.loads(raw.decode("utf-8")))
        return sorted(items, key=lambda r: (r.get("created_at") or 0, r.get("local_id") or ""))

    def by_output(self, tasks_dir: str | Path = "async_tasks") -> dict[str, dict[str, Any]]:
        return {r["output_path"]: r for r in self.records(tasks_dir)}

    def character(self, name: str = "lin.png", color: tuple[int, int, int] = (200, 60, 80)) -> Path:
        """A small character reference image drawn with Pillow."""
        path = self.root / "chars" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (256, 384), (245, 245, 240))
        img.paste(color, (64, 96, 192, 320))
        img.save(path)
        return path

    def write_batch(self, name: str, rows: Sequence[dict[str, Any]]) -> Path:
        path = self.root / name
        lines = [json.dumps(row, ensure_ascii=False) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def submit_frames(self, count: int, *extra: str, name: str = "frame") -> Ran:
        """`asyncimg submit --batch` of `count` plain frames out/<name>_NN.png; must exit 0."""
        rows = [
            {
                "prompt": f"{name} {i}: a lighthouse at dusk",
                "output_path": f"out/{name}_{i:02d}.png",
            }
            for i in range(1, count + 1)
        ]
        batch = self.write_batch(f"{name}.jsonl", rows)
        return self.ok("asyncimg", "submit", "--batch", batch.name, *extra)


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorThread]]:
    """`start_emulator(concurrency=2, gen_seconds=(1, 2))`: EmulatorConfig overrides."""
    running: list[EmulatorThread] = []

    def _start(**overrides: Any) -> EmulatorThread:
        emu = EmulatorThread(**overrides)
        running.append(emu)
        return emu

    yield _start
    for emu in running:
        emu.close()


def scan_for_secret(root: Path) -> None:
    needle = SK.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert needle not in path.read_bytes(), f"the secret key is written in {path}"


@pytest.fixture
def make_e2e(
    tmp_path: Path, start_emulator: Callable[..., EmulatorThread]
) -> Iterator[Callable[..., E2E]]:
    """`make_e2e(**emulator_overrides)`: a project folder in tmp_path and its emulator."""
    made: list[E2E] = []

    def _make(**overrides: Any) -> E2E:
        assert not made, "one project per test"
        e2e = E2E(tmp_path, start_emulator(**overrides))
        made.append(e2e)
        return e2e

    yield _make
    scan_for_secret(tmp_path)


@pytest.fixture
def e2e(make_e2e: Callable[..., E2E]) -> E2E:
    """A project folder with a fast emulator (tasks take 0.2-0.5 s)."""
    return make_e2e()


@pytest.fixture
def e2e_slow(make_e2e: Callable[..., E2E]) -> E2E:
    """Tasks take 1.5-2.5 s: a monitor needs several passes."""
    return make_e2e(gen_seconds=(1.5, 2.5))


def serve_live(e2e: E2E, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`asyncimg serve` on a free port (looking every 0.2 s); the process and its URL."""
    proc = e2e.popen("asyncimg", "serve", "--port", "0", "--interval", "0.2", *extra)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    out = proc.stdout
    threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        proc.kill()
        pytest.fail("asyncimg serve printed nothing in 30 s")
    assert first.startswith("serving "), (first, proc.poll())
    return proc, first.split(" at ", 1)[1].split()[0]


def reap(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` and wait for it if it still runs: a test that failed half-way (a
    `finally:`) leaves no child behind."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl+C to a running command; what it printed after (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
