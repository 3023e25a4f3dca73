"""A hostile and clumsy world, through the real commands: a tasks folder shared with the
user, leftovers of killed writers, long names, odd batch lines, tight intervals, the
guide's menu, a busy emulator port. Each test reproduces a problem seen on an earlier main.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from asyncimg.fileio import temp_name

from .conftest import E2E, RESULT

USER_FILES = {
    "package.json": b'{"name": "novel", "version": "1.0.0"}\n',
    "requirements.txt": b"aiohttp>=3.9\npillow\n",
    "notes.txt": "第一章的分镜笔记\n".encode(),
}


def one_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1, text
    return lines[0]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- own only what is ours --------------------------------------------------------------------


def test_a_tasks_folder_shared_with_the_users_files(e2e: E2E) -> None:
    """`--tasks-dir .` once moved package.json & co. to .quarantine/ and chmodded the folder."""
    for name, data in USER_FILES.items():
        (e2e.root / name).write_bytes(data)
        os.utime(e2e.root / name, (1.0, 1.0))
    e2e.root.chmod(0o755)
    e2e.ok("asyncimg", "list", "--tasks-dir", ".")
    e2e.ok("asyncimg", "submit", "a lighthouse at dusk", "-o", "out/001.png", "--tasks-dir", ".")
    e2e.emu.wait_idle(1)
    ran = e2e.ok("asyncimg", "check", "--tasks-dir", ".")
    assert "quarantine" not in ran.output, ran
    for name, data in USER_FILES.items():
        assert (e2e.root / name).read_bytes() == data
    assert not (e2e.root / ".quarantine").exists()
    assert stat.S_IMODE(e2e.root.stat().st_mode) == 0o755
    [record] = [json.loads(p.read_bytes()) for p in e2e.root.glob("[0-9]*.json")]
    assert record["status"] == "completed"


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("list", "--tasks-dir", "async_taks"),
        ("list", "--json", "--tasks-dir", "async_taks"),
        ("show", "7392", "--tasks-dir", "async_taks"),
    ],
    ids=["list", "list-typo", "list-json-typo", "show-typo"],
)
def test_commands_that_only_look_create_nothing(e2e: E2E, args: tuple[str, ...]) -> None:
    before = files_under(e2e.root)
    ran = e2e.run("asyncimg", *args)
    assert ran.returncode in (0, 1) and "Traceback" not in ran.stderr, ran
    assert files_under(e2e.root) == before


def test_list_and_show_never_move_a_record(e2e: E2E) -> None:
    e2e.submit_frames(1)
    bad = e2e.tasks / "7000000000000000001.json"
    bad.write_text('{"task_id": "7000000000000000001", "status": ', encoding="utf-8")
    os.utime(bad, (1.0, 1.0))
    before = files_under(e2e.root)
    ran = e2e.ok("asyncimg", "list")
    assert "7000000000000000001.json: not valid JSON" in ran.stderr, ran
    [record] = [json.loads(p.read_bytes()) for p in e2e.record_files() if p != bad]
    e2e.ok("asyncimg", "show", record["task_id"])
    assert files_under(e2e.root) == before


@contextlib.contextmanager
def being_written(path: Path) -> Iterator[None]:
    """Another program writing `path` meanwhile: its mtime stays within a fraction of a
    second of now, however long the command under test takes to start."""
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            os.utime(path)
            stop.wait(0.2)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join()


def test_a_record_another_program_is_writing_is_left_alone(e2e: E2E) -> None:
    """The old scripts (or an editor) write in place: half a record must not vanish.
    "Being written" is a change in the last 5 s (store.RECENT_S); a check that took longer
    than that to start under load saw a file written once as abandoned, so the writer
    keeps writing while the check runs."""
    e2e.submit_frames(1)
    half = e2e.tasks / "7000000000000000002.json"
    half.write_text('{"task_id": "7000000000000000002", "status": ', encoding="utf-8")
    with being_written(half):
        ran = e2e.ok("asyncimg", "check")
    assert "left alone" in ran.output and half.exists(), ran
    assert not (e2e.tasks / ".quarantine").exists()
    os.utime(half, (time.time() - 60, time.time() - 60))  # the writer is long gone
    ran = e2e.ok("asyncimg", "check")
    assert not half.exists() and (e2e.tasks / ".quarantine" / half.name).is_file(), ran


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("asyncimg", ("monitor",)),
        ("asyncimg", ("list",)),
        ("gen_image.py", ("a fox", "-o", "out/1.png")),
        ("check_async_tasks.py", ("--check-once",)),
    ],
    ids=["monitor", "list", "gen_image", "check-once"],
)
def test_a_file_named_async_tasks_is_one_line(
    e2e: E2E, program: str, args: tuple[str, ...]
) -> None:
    (e2e.root / "async_tasks").write_text("my notes", encoding="utf-8")
    ran = e2e.exits(2, program, *args)
    line = one_line(ran.stderr)
    assert "async_tasks: is a file, not a folder" in line and "--tasks-dir" in line, ran
    assert (e2e.root / "async_tasks").read_text(encoding="utf-8") == "my notes"
    assert e2e.emu.stats()["tasks_submitted"] == 0


def test_generate_image_with_character_says_the_folder_is_a_file(e2e: E2E) -> None:
    (e2e.root / "async_tasks").write_text("my notes", encoding="utf-8")
    code = (
        "from gen_image import generate_image_with_character as g\nprint(g('a fox', 'out/1.png'))"
    )
    env = e2e.env(PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=e2e.root, env=env, capture_output=True, text=True
    )
    assert proc.stdout.strip() == "False" and "Traceback" not in proc.stderr, proc
    assert "async_tasks: is a file, not a folder" in one_line(proc.stderr)


# -- no leftovers -----------------------------------------------------------------------------


def test_one_pass_removes_what_killed_writers_left(
    e2e: E2E, dead_writer_temp: Callable[[Path, str], Path]
) -> None:
    e2e.submit_frames(1)
    (e2e.root / "out").mkdir()
    dead_part = dead_writer_temp(e2e.root / "out", ".part")
    dead_tmp = dead_writer_temp(e2e.tasks, ".tmp")
    live = e2e.root / "out" / temp_name(".part")  # this test process is still running
    live.write_bytes(b"being written")
    e2e.emu.wait_idle(1)
    e2e.ok("asyncimg", "check")
    assert not dead_part.exists() and not dead_tmp.exists()
    assert live.exists()
    live.unlink()
    left = [p.name for p in (e2e.root / "out").iterdir()] + [
        p.name for p in e2e.tasks.iterdir() if p.name.endswith((".tmp", ".part"))
    ]
    assert left == ["frame_01.png"]


def test_a_250_byte_output_name_saves(e2e: E2E) -> None:
    """The temp name no longer contains the output name, so names up to 252 bytes save."""
    name = "长" * 82 + ".png"  # 82 x 3 + 4 = 250 bytes
    assert len(name.encode()) == 250
    e2e.ok("asyncimg", "submit", "a lighthouse at dusk", "-o", f"out/{name}")
    e2e.emu.wait_idle(1)
    e2e.ok("asyncimg", "check")
    with Image.open(e2e.root / "out" / name) as img:
        img.verify()


# -- shapes and intervals ---------------------------------------------------------------------


def test_an_integer_size_in_a_batch_is_the_area_form(e2e: E2E) -> None:
    batch = e2e.write_batch(
        "b.jsonl", [{"prompt": "a fox in snow", "output_path": "out/a.png", "size": 4194304}]
    )
    e2e.ok("asyncimg", "submit", "--batch", batch.name)
    [record] = e2e.records()
    assert record["params"]["size"] == 4194304 and "width" not in record["params"]
    e2e.emu.wait_idle(1)
    e2e.ok("asyncimg", "check")
    assert e2e.records()[0]["status"] == "completed"


def test_a_wrongly_typed_batch_field_is_one_line_naming_line_and_field(e2e: E2E) -> None:
    batch = e2e.write_batch(
        "b.jsonl",
        [
            {"prompt": "ok", "output_path": "out/1.png"},
            {"prompt": "x", "output_path": "out/2.png", "style": ["manga"]},
        ],
    )
    ran = e2e.exits(2, "asyncimg", "submit", "--batch", batch.name)
    assert "b.jsonl:2: style: ['manga'] is a list; it must be text" in ran.stderr, ran
    assert not e2e.tasks.exists()


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("asyncimg", ("monitor", "--interval", "0")),
        ("asyncimg", ("monitor", "--interval", "0.5")),
        ("check_async_tasks.py", ("--monitor", "--interval", "-1")),
    ],
    ids=["zero", "half", "legacy-negative"],
)
def test_an_interval_below_one_second_is_refused(
    e2e: E2E, program: str, args: tuple[str, ...]
) -> None:
    """`--interval 0` polled in a tight loop (333 polls in 3 s)."""
    ran = e2e.exits(2, program, *args, timeout=20)
    assert "interval" in ran.stderr.lower(), ran
    assert e2e.emu.stats()["requests"].get(RESULT, 0) == 0


def test_an_interval_below_one_second_in_the_config_is_refused(e2e: E2E) -> None:
    (e2e.root / "asyncimg.toml").write_text("[defaults]\ninterval = 0\n", encoding="utf-8")
    ran = e2e.exits(2, "asyncimg", "monitor", timeout=20)
    assert "interval" in one_line(ran.stderr), ran


# -- the guide's menu -------------------------------------------------------------------------


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, seen
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, seen
        seen += chunk
    return seen


def _until_reading_stdin(pid: int, timeout: float = 20) -> None:
    """Until the process sleeps in its read of stdin. A SIGINT that lands between the
    prompt and the read() is only seen once the read returns (CPython runs handlers
    between bytecodes), so a signal sent any earlier could wait for input for ever."""
    deadline = time.monotonic() + timeout
    while not any(k in Path(f"/proc/{pid}/wchan").read_text() for k in ("pipe", "wait_woken")):
        assert time.monotonic() < deadline, "the menu never waited for input"
        time.sleep(0.02)


# The script as a shell in a terminal starts it: SIGINT at its default. A process started in
# the background by a non-interactive shell (as a CI job may be) inherits SIGINT ignored,
# and Python then installs no handler for it.
_AS_IN_A_TERMINAL = (
    "import runpy, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_menu_ctrl_c_at_the_prompt_is_one_line_and_130(e2e: E2E) -> None:
    script = e2e.argv_for("check_async_tasks.py")[-1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_IN_A_TERMINAL, script],
        cwd=e2e.root,
        env=e2e.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    try:
        _read_until(proc, b"Choose [0-6]: ")
        _until_reading_stdin(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)  # stdin stays open: only the signal can end the prompt
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        proc.kill()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 130, (out, err)
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err
    assert out.decode().endswith("\nstopped by user (Ctrl+C); every record is intact\n"), out


def test_menu_end_of_input_ends_the_prompt_line(e2e: E2E) -> None:
    ran = e2e.ok("check_async_tasks.py", input="", timeout=30)
    assert ran.stdout.endswith("Choose [0-6]: \nend of input: quit\n"), ran


def test_menu_uses_the_config(e2e: E2E) -> None:
    (e2e.root / "asyncimg.toml").write_text(
        '[defaults]\ntasks_dir = "frames_tasks"\ninterval = 5\n', encoding="utf-8"
    )
    ran = e2e.ok("check_async_tasks.py", input="0\n", timeout=30)
    assert "asyncimg task checker (frames_tasks)" in ran.stdout, ran
    assert "2) monitor until all finish (every 5 s)" in ran.stdout, ran


def test_menu_asks_before_deleting_records(e2e: E2E) -> None:
    e2e.submit_frames(2)
    e2e.emu.wait_idle(2)
    e2e.ok("asyncimg", "check")
    ran = e2e.ok("check_async_tasks.py", input="6\nn\n0\n", timeout=30)
    assert "Delete 2 completed task records (images are kept)? [y/N]" in ran.stdout, ran
    assert "nothing deleted" in ran.stdout and len(e2e.records()) == 2
    ran = e2e.ok("check_async_tasks.py", input="6\n", timeout=30)  # end of input: no
    assert len(e2e.records()) == 2, ran
    ran = e2e.ok("check_async_tasks.py", input="6\ny\n0\n", timeout=30)
    assert "2 completed records deleted (images kept)" in ran.stdout and e2e.records() == []
    assert len(list((e2e.root / "out").glob("*.png"))) == 2


# -- the emulator -----------------------------------------------------------------------------


def test_the_emulator_on_a_busy_port_is_one_line(e2e: E2E) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ran = e2e.exits(2, "asyncimg", "emulator", "--port", str(port), timeout=30)
    line = one_line(ran.stderr)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line, ran
    assert json.dumps(ran.stdout) == '""'


def test_the_image_cap_comes_from_the_config(e2e: E2E) -> None:
    (e2e.root / "asyncimg.toml").write_text("[defaults]\nmax_image_mb = 0.01\n", encoding="utf-8")
    e2e.submit_frames(1)
    e2e.emu.wait_idle(1)
    ran = e2e.ok("asyncimg", "check")
    [record] = e2e.records()
    assert record["status"] in ("submitted", "processing"), ran
    assert "larger than 0.01 MB (max_image_mb in asyncimg.toml)" in record["last_error"]["message"]
    assert not (e2e.root / "out" / "frame_01.png").exists()
