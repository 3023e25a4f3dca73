"""The bad-input table: odd and hostile input, each met with a one-line error and a sane exit
code, the other frames untouched and nothing lost.

Every case runs in its own copy of one baseline project: two frames already done (records
and images), a character image, a user's own files beside them. A case writes its input
(a batch file, a record, an env, an emulator fault), runs one command, and is judged on:

- exit: the code is one the case allows (README "Exit codes");
- lines: no traceback, and an error case prints exactly one line on stderr, naming what the
  case says it must (the file and line, the field, the folder);
- untouched: every baseline file (records, images, the user's files) is byte for byte what
  it was, and nothing appeared outside the project folder;
- lost: what the case must keep is still there (a frame's record, a bad record moved to
  `.quarantine/` rather than deleted, a folder not created by a read-only command).

A case the `edges` branch (issue 8's other items) fixes names it in `needs`; the tests mark
exactly those as expected failures until it is merged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tests.e2e.conftest import E2E, RESULT, SK, SUBMIT, EmulatorThread

from asyncimg import constants
from asyncimg.emulator import FaultKind
from asyncimg.emulator.faults import HOSTILE_RESULTS, HOSTILE_TASK_IDS

from .common import Report, image_problem, secret_hits

GOOD = {"prompt": "good frame: a tram in the rain", "output_path": "out/new-good.png"}
WORKERS = 3  # one runs the serial cases; on 2 cores the commands mostly wait for imports
USER_FILES = {"package.json": '{"name": "novel"}\n', "notes.txt": "chapter 3 draft\n"}


@dataclass
class Ctx:
    """One case's project folder and emulator."""

    e2e: E2E
    emu: EmulatorThread

    @property
    def root(self) -> Path:
        return self.e2e.root

    def batch(self, *lines: str | bytes, name: str = "bad.jsonl") -> str:
        """A JSONL file: a good line, then `lines` as given (str: a JSON text, bytes: raw)."""
        data = json.dumps(GOOD, ensure_ascii=False).encode() + b"\n"
        for line in lines:
            data += (line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
        (self.root / name).write_bytes(data)
        return name

    def line(self, **fields: Any) -> str:
        row = {"prompt": "bad frame: a lantern", "output_path": "out/new-bad.png", **fields}
        return json.dumps({k: v for k, v in row.items() if v is not ...}, ensure_ascii=False)

    def record(self, name: str, data: bytes) -> None:
        (self.root / "async_tasks" / name).write_bytes(data)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    setup: Callable[[Ctx], list[str]]  # writes the input; the argv (program, args...)
    exits: frozenset[int]
    # Exactly one line of the output must contain it ({port}: the emulator's); None: no
    # error expected (and no warning on stderr).
    names: str | None = None
    keep_records: tuple[str, ...] = ()  # frames (output paths) that must have a record
    keep_files: tuple[str, ...] = ()  # files that must survive, in place or in .quarantine/
    absent: tuple[str, ...] = ()  # paths that must not exist afterwards
    env: dict[str, str | None] = field(default_factory=dict)
    needs: str | None = None  # the edges-branch item this case waits for
    timeout: float = 60.0
    # Run after the command (the fault gone): these frames must then be completed.
    then: tuple[str, ...] = ()
    completes: tuple[str, ...] = ()
    cwd: str = "."  # where the command runs, inside the project
    serial: bool = False  # changes the emulator's state: runs alone on its own emulator


@dataclass
class CaseResult:
    name: str
    what: str
    exit: int | None
    exit_ok: bool
    lines: int
    line_ok: bool
    untouched: bool
    lost: int
    first_line: str
    needs: str | None
    seconds: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.exit_ok and self.line_ok and self.untouched and self.lost == 0


def _two(ctx: Ctx, line: str | bytes) -> list[str]:
    return ["asyncimg", "submit", "--batch", ctx.batch(line)]


def _bomb(ctx: Ctx) -> list[str]:
    path = ctx.root / "chars" / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # 12000x12000 px, a few kB on disk
    return _two(ctx, ctx.line(character_images=["chars/bomb.png"]))


def _junk_character(ctx: Ctx) -> list[str]:
    (ctx.root / "chars" / "junk.png").write_bytes(os.urandom(4096))
    return _two(ctx, ctx.line(character_images=["chars/junk.png"]))


def _fifo_character(ctx: Ctx) -> list[str]:
    os.mkfifo(ctx.root / "chars" / "pipe.png")
    return _two(ctx, ctx.line(character_images=["chars/pipe.png"]))


def _dangling_character(ctx: Ctx) -> list[str]:
    (ctx.root / "chars" / "gone.png").symlink_to(ctx.root / "nowhere.png")
    return _two(ctx, ctx.line(character_images=["chars/gone.png"]))


def _csv_multiline(ctx: Ctx) -> list[str]:
    text = 'prompt,output_path\n"first line\nsecond line",out/new-csv.png\n'
    (ctx.root / "multi.csv").write_text(text, encoding="utf-8")
    return ["asyncimg", "submit", "--batch", "multi.csv"]


def _hostile_id(index: int) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        def arm() -> None:  # this case's value, whichever cases ran before
            ctx.emu.emu._faults.hostile_next = index
            ctx.emu.emu.inject(FaultKind.HOSTILE_TASK_ID, 1, SUBMIT)

        ctx.emu._on_loop(arm)
        return ["asyncimg", "submit", "hostile id frame", "-o", f"out/new-hostile-{index}.png"]

    return setup


def _tasks_dir_file(ctx: Ctx) -> list[str]:
    (ctx.root / "elsewhere").mkdir()
    (ctx.root / "elsewhere" / "async_tasks").write_text("not a folder\n", encoding="utf-8")
    return ["asyncimg", "check"]


def _hostile_result(index: int) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        frame = f"out/new-result-{index}.png"
        ctx.e2e.ok("asyncimg", "submit", "hostile result frame", "-o", frame)
        deadline = time.monotonic() + 30
        while ctx.emu.stats()["tasks_unfinished"] and time.monotonic() < deadline:
            time.sleep(0.1)

        def arm() -> None:  # this case's shape, whichever cases ran before
            ctx.emu.emu._faults.hostile_result_next = index
            ctx.emu.emu.inject(FaultKind.HOSTILE_RESULT, 1, RESULT)

        ctx.emu._on_loop(arm)
        return ["asyncimg", "check"]

    return setup


def _skewed(ctx: Ctx) -> list[str]:
    ctx.emu._on_loop(lambda: ctx.emu.emu.advance(3600))  # the service's clock 1 h ahead
    return ["asyncimg", "submit", "skew frame", "-o", "out/new-skew.png"]


def _busy_port(ctx: Ctx) -> list[str]:
    return ["asyncimg", "emulator", "--port", str(ctx.emu.emu.port)]


RECORD_TRUNCATED = b'{"task_id": "111", "output_path": "out/x.png", "sta'
RECORD_BINARY = b'{"task_id": "\xff\xfe\xc3\x28 latin-1 \xe9t\xe9"}'
RECORD_WRONG_TYPES = json.dumps(
    {"task_id": 222, "output_path": 12, "status": 5, "prompt": ["x"], "submit_time": "soon"}
).encode()
RECORD_HOSTILE = json.dumps(
    {
        "task_id": "../../../escape",
        "output_path": "out/hostile-record.png",
        "prompt": "hostile record",
        "status": "submitted",
        "submit_time": 1.0,
    }
).encode()


def _records_case(name: str, data: bytes, command: tuple[str, ...] = ("check",)) -> Any:
    def setup(ctx: Ctx) -> list[str]:
        ctx.record(name, data)
        return ["asyncimg", *command]

    return setup


EDGES_REPLIES = "every reply field checked for type; one bad reply never fails a paid frame (edges)"

CASES: tuple[Case, ...] = (
    # -- odd batch-line types ---------------------------------------------------------------
    Case(
        "size-area",
        'size as an integer (the API\'s area form, "size": 4194304)',
        lambda c: _two(c, c.line(size=4194304)),
        frozenset({0}),
        keep_records=("out/new-bad.png",),
    ),
    Case(
        "style-list",
        '"style": ["manga"]',
        lambda c: _two(c, c.line(style=["manga"])),
        frozenset({2}),
        "bad.jsonl:2: style",
    ),
    Case(
        "prompt-number",
        '"prompt": 42',
        lambda c: _two(c, c.line(prompt=42)),
        frozenset({2}),
        "bad.jsonl:2: prompt",
    ),
    Case(
        "output-null",
        '"output_path": null',
        lambda c: _two(c, c.line(output_path=None)),
        frozenset({2}),
        "bad.jsonl:2: output_path",
    ),
    Case(
        "line-array",
        "a line that is a JSON array",
        lambda c: _two(c, "[1, 2]"),
        frozenset({2}),
        "bad.jsonl:2",
    ),
    Case(
        "line-null", "a line that is null", lambda c: _two(c, "null"), frozenset({2}), "bad.jsonl:2"
    ),
    Case(
        "line-u2028",
        "a prompt holding U+2028 (a valid JSONL line)",
        lambda c: _two(c, c.line(prompt="first\u2028second")),
        frozenset({0}),
        keep_records=("out/new-bad.png",),
    ),
    Case(
        "csv-multiline",
        "a CSV prompt cell spanning two lines",
        _csv_multiline,
        frozenset({0}),
        keep_records=("out/new-csv.png",),
    ),
    # -- unreadable characters (text) -------------------------------------------------------
    Case(
        "bad-utf8",
        "a batch line with bytes that are not UTF-8",
        lambda c: _two(c, b'{"prompt": "caf\xe9 \xff", "output_path": "out/new-bad.png"}'),
        frozenset({2}),
        "bad.jsonl",
    ),
    Case(
        "lone-surrogate",
        'a prompt with a lone surrogate ("\\ud800", kept escaped)',
        lambda c: _two(c, '{"prompt": "x \\ud800 y", "output_path": "out/new-bad.png"}'),
        frozenset({0}),
        keep_records=("out/new-bad.png",),
    ),
    # -- unreadable and huge character images -----------------------------------------------
    Case(
        "char-junk",
        "a character image of random bytes",
        _junk_character,
        frozenset({2}),
        "junk.png",
    ),
    Case(
        "char-fifo",
        "a character image that is a FIFO (reading it would block)",
        _fifo_character,
        frozenset({2}),
        "pipe.png",
        timeout=15,
    ),
    Case(
        "char-dangling",
        "a character image that is a dangling symlink",
        _dangling_character,
        frozenset({2}),
        "gone.png",
    ),
    Case(
        "char-bomb",
        "a 12000x12000 character image (a few kB of PNG)",
        _bomb,
        frozenset({2}),
        "bomb.png",
        needs="a pixel bound; DecompressionBombWarning is an error (edges: bounded)",
    ),
    # -- corrupt and hostile records --------------------------------------------------------
    Case(
        "rec-truncated",
        "a record cut mid-write",
        _records_case("111.json", RECORD_TRUNCATED),
        frozenset({0}),
        "111.json",
        keep_files=("async_tasks/111.json",),
    ),
    Case(
        "rec-binary",
        "a record that is not UTF-8",
        _records_case("333.json", RECORD_BINARY),
        frozenset({0}),
        "333.json",
        keep_files=("async_tasks/333.json",),
    ),
    Case(
        "rec-empty",
        "an empty record",
        _records_case("444.json", b""),
        frozenset({0}),
        "444.json",
        keep_files=("async_tasks/444.json",),
    ),
    Case(
        "rec-types",
        "a record whose fields have the wrong types",
        _records_case("222.json", RECORD_WRONG_TYPES),
        frozenset({0}),
        "222.json",
        keep_files=("async_tasks/222.json",),
    ),
    Case(
        "rec-hostile",
        "a record whose task id is a path (../../../escape)",
        _records_case("555.json", RECORD_HOSTILE),
        frozenset({0, 1}),
        keep_files=("async_tasks/555.json",),
    ),
    Case(
        "list-corrupt",
        "`list` over a record cut mid-write leaves it in place",
        _records_case("111.json", RECORD_TRUNCATED, ("list",)),
        frozenset({0}),
        "111.json",
        keep_files=("async_tasks/111.json",),
        absent=("async_tasks/.quarantine",),
    ),
    # -- the folder is the user's -----------------------------------------------------------
    Case(
        "tasks-dir-user",
        "`list --tasks-dir .` in a folder of the user's own files",
        lambda c: ["asyncimg", "list", "--tasks-dir", "."],
        frozenset({0}),
        absent=(".quarantine",),
    ),
    Case(
        "tasks-dir-file",
        "`check` where async_tasks is a regular file",
        _tasks_dir_file,
        frozenset({2}),
        "async_tasks",
        cwd="elsewhere",
    ),
    Case(
        "tasks-dir-file-guide",
        "`gen_image.py` where async_tasks is a regular file",
        lambda c: [*_tasks_dir_file(c)[:0], "gen_image.py", "guide frame", "-o", "guide.png"],
        frozenset({1, 2}),
        "async_tasks",
        cwd="elsewhere",
    ),
    Case(
        "tasks-dir-file-opt",
        "`check --tasks-dir notes.txt` (a regular file)",
        lambda c: ["asyncimg", "check", "--tasks-dir", "notes.txt"],
        frozenset({2}),
        "notes.txt",
        needs="a folder problem is one line, exit 2 (edges: the folder is the user's)",
    ),
    Case(
        "tasks-dir-typo",
        "`list --tasks-dir async_taks` (mistyped) creates nothing",
        lambda c: ["asyncimg", "list", "--tasks-dir", "async_taks"],
        frozenset({0, 2}),
        absent=("async_taks",),
    ),
    # -- hostile task ids from the server ---------------------------------------------------
    *(
        Case(
            f"task-id-{i}",
            f"the API answers a submit with task id {json.dumps(value)[:40]}",
            _hostile_id(i),
            frozenset({0, 1, 2}),
            keep_records=(f"out/new-hostile-{i}.png",),
            serial=True,
        )
        for i, value in enumerate(HOSTILE_TASK_IDS)
    ),
    # -- hostile replies to a poll of a finished task ----------------------------------------
    *(
        Case(
            f"result-{shape.replace('_', '-')}",
            f"a finished task's poll answers with {shape.replace('_', ' ')}",
            _hostile_result(i),
            frozenset({0, 1, 2}),
            keep_records=(f"out/new-result-{i}.png",),
            then=("asyncimg", "check"),
            completes=(f"out/new-result-{i}.png",),
            serial=True,
            needs=None if shape != "urls_numbers" else EDGES_REPLIES,
        )
        for i, shape in enumerate(HOSTILE_RESULTS)
    ),
    # -- credentials, clock, options --------------------------------------------------------
    Case(
        "wrong-secret",
        "a wrong secret key",
        lambda c: ["asyncimg", "submit", "key frame", "-o", "out/new-key.png"],
        frozenset({2}),
        "SignatureDoesNotMatch",
        keep_records=("out/new-key.png",),
        env={constants.ENV_SECRET_KEY: "not-the-key"},
    ),
    Case(
        "no-access-key",
        "no access key in the environment",
        lambda c: ["asyncimg", "submit", "key frame", "-o", "out/new-key.png"],
        frozenset({2}),
        constants.ENV_ACCESS_KEY,
        env={constants.ENV_ACCESS_KEY: None},
    ),
    Case(
        "clock-skew",
        "the machine's clock 1 h behind the service's",
        _skewed,
        frozenset({2}),
        "InvalidTimestamp",
        keep_records=("out/new-skew.png",),
        serial=True,
    ),
    Case(
        "interval-zero",
        "`monitor --interval 0`",
        lambda c: ["asyncimg", "monitor", "--interval", "0"],
        frozenset({2}),
        "interval",
    ),
    Case(
        "interval-negative",
        "`monitor --interval -1`",
        lambda c: ["asyncimg", "monitor", "--interval", "-1"],
        frozenset({2}),
        "interval",
    ),
    Case(
        "busy-port",
        "`emulator --port P` on a busy port",
        _busy_port,
        frozenset({1, 2}),
        "{port}",
        timeout=30,
    ),
)


# The short version's cases (`make test`): one or two of each kind, and every case that
# waits for the edges branch and is quick. `make chaos` runs them all.
SHORT_CASES = (
    "size-area",
    "style-list",
    "char-fifo",
    "rec-truncated",
    "list-corrupt",
    "tasks-dir-user",
    "tasks-dir-typo",
    "task-id-0",
    "task-id-2",
    "result-urls-as-string",
    "result-urls-file-scheme",
    "wrong-secret",
    "clock-skew",
    "interval-zero",
)


def _baseline(root: Path, emu: EmulatorThread) -> Path:
    """Two frames done (a PNG and a JPEG), a character image, the user's own files."""
    base = root / "baseline"
    base.mkdir(parents=True)
    (base / "asyncimg.toml").write_text('[defaults]\nsize = "1024x1024"\n', encoding="utf-8")
    for name, text in USER_FILES.items():
        (base / name).write_text(text, encoding="utf-8")
    e2e = E2E(base, emu)
    e2e.character("lin.png")
    rows = [
        {"prompt": "baseline 1: a bridge", "output_path": "out/base-1.png"},
        {"prompt": "baseline 2: a ferry", "output_path": "out/base-2.jpg"},
    ]
    e2e.write_batch("baseline.jsonl", rows)
    e2e.ok("asyncimg", "submit", "--batch", "baseline.jsonl")
    e2e.ok("asyncimg", "monitor", "--interval", "1")
    return base


def _snapshot(root: Path) -> dict[str, str]:
    """Hashes of every file of the project, the tasks folder's own cache and locks aside."""
    files = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("async_tasks/.", "async_tasks/.locks")) or not path.is_file():
            continue
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _around(sandbox: Path, root: Path) -> set[str]:
    """Everything in the case's sandbox outside its project (where `../../..` would land)."""
    return {
        p.relative_to(sandbox).as_posix()
        for p in sandbox.rglob("*")
        if p != root and root not in p.parents
    }


def run_case(case: Case, base: Path, parent: Path, emu: EmulatorThread) -> CaseResult:
    sandbox = parent / case.name
    root = sandbox / "a" / "b" / "project"  # `../../..` from its tasks folder stays inside
    shutil.copytree(base, root, symlinks=True)
    ctx = Ctx(E2E(root, emu), emu)
    before = _snapshot(root)
    argv = case.setup(ctx)
    env = ctx.e2e.env(**case.env)
    outside = _around(sandbox, root)
    began = time.monotonic()
    problems: list[str] = []
    try:
        proc = subprocess.run(
            ctx.e2e.argv_for(argv[0], *argv[1:]),
            cwd=root / case.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=case.timeout,
            check=False,
        )
        code: int | None = proc.returncode
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout = None, str(exc.stdout or "")
        stderr = f"(still running after {case.timeout:g} s: killed)"
        problems.append(stderr)
    finally:
        if case.name == "clock-skew":
            emu._on_loop(lambda: emu.emu.advance(-3600))
    seconds = time.monotonic() - began
    (root / "case.out").write_text(f"$ {' '.join(argv)}\n-> {code}\n{stdout}\n--- stderr\n{stderr}")

    names = case.names.format(port=emu.emu.port) if case.names else None
    output = [line for line in (stdout + "\n" + stderr).splitlines() if line.strip()]
    lines = [line for line in output if names and names in line]
    exit_ok = code in case.exits
    if not exit_ok:
        problems.append(f"exit {code}, wanted {sorted(case.exits)}")
    if "Traceback" in stdout + stderr:
        line_ok = False
        problems.append("a traceback")
    elif "Usage:" in stderr:
        line_ok = False
        problems.append("a usage block instead of one line")
    elif names is None:
        line_ok = "Warning" not in stderr
        if not line_ok:
            problems.append("a warning on stderr")
    else:
        line_ok = len(lines) == 1
        if not line_ok:
            problems.append(f"{len(lines)} lines name {names!r}")
    if SK in stdout + stderr:
        line_ok = False
        problems.append("the secret key in the output")

    after = _snapshot(root)
    changed = [rel for rel, digest in before.items() if after.get(rel) != digest]
    appeared = sorted(_around(sandbox, root) - outside)
    untouched = not changed and not appeared
    problems.extend(f"changed: {rel}" for rel in changed)
    problems.extend(f"appeared beside the project: {name}" for name in appeared)

    out = root / "out"
    for image in sorted(out.iterdir()) if out.is_dir() else []:
        if image.is_file() and not image.name.startswith(".") and (bad := image_problem(image)):
            untouched = False
            problems.append(f"a bad image: {bad}")
    if case.then:
        after_then = ctx.e2e.run(case.then[0], *case.then[1:], timeout=case.timeout)
        if "Traceback" in after_then.output:
            line_ok = False
            problems.append(f"a traceback from {' '.join(case.then)}")
    lost = 0
    done = {r.get("output_path") for r in _readable(ctx.e2e) if r.get("status") == "completed"}
    for frame in case.completes:
        if frame not in done:
            lost += 1
            problems.append(f"{frame} is not completed after {' '.join(case.then)}")
    records = {r.get("output_path") for r in _readable(ctx.e2e)}
    for frame in case.keep_records:
        if frame not in records:
            lost += 1
            problems.append(f"no record for {frame}")
    quarantine = root / "async_tasks" / ".quarantine"
    for rel in case.keep_files:
        name = Path(rel).name
        if not (root / rel).exists() and not any(
            p.name.startswith(name) for p in quarantine.glob("*")
        ):
            lost += 1
            problems.append(f"{rel} is gone (neither in place nor in .quarantine/)")
    for rel in case.absent:
        if (root / rel).exists():
            lost += 1
            problems.append(f"{rel} was created or moved into")
    shown = lines or [line for line in stderr.splitlines() if line.strip()] or output or [""]
    first = shown[0]
    return CaseResult(
        case.name,
        case.what,
        code,
        exit_ok,
        len(lines),
        line_ok,
        untouched,
        lost,
        first[:160],
        case.needs,
        seconds,
        problems,
    )


def run_cases(
    root: Path,
    start_emulator: Callable[..., EmulatorThread],
    seed: int,
    only: tuple[str, ...] = (),
) -> Report:
    emu = start_emulator(gen_seconds=(0.2, 0.4), seed=seed)
    alone = start_emulator(gen_seconds=(0.2, 0.4), seed=seed + 1)
    root.mkdir()
    base = _baseline(root, emu)
    cases_dir = root / "cases"
    cases_dir.mkdir()
    chosen = [case for case in CASES if not only or case.name in only]
    serial = [case for case in chosen if case.serial]
    shared = [case for case in chosen if not case.serial]
    done: dict[str, CaseResult] = {}

    def run_serial() -> None:
        for case in serial:  # in order: each takes the next hostile task id
            done[case.name] = run_case(case, base, cases_dir, alone)

    with ThreadPoolExecutor(WORKERS) as pool:
        first = pool.submit(run_serial)
        for result in pool.map(lambda case: run_case(case, base, cases_dir, emu), shared):
            done[result.name] = result
        first.result()
    results = [done[case.name] for case in chosen]
    unknown = set(only) - {case.name for case in CASES}
    if unknown:
        raise ValueError(f"unknown bad-input cases: {sorted(unknown)}")
    part = "input"
    into = Report(cases=results)
    into.problems.extend(f"input {r.name}: {'; '.join(r.problems)}" for r in results if r.problems)
    into.add(part, "cases", len(results))
    into.add(part, "cases failing a check", sum(not r.ok for r in results), 0)
    into.add(
        part,
        "  of which wait for the edges branch",
        sum(not r.ok and bool(r.needs) for r in results),
    )
    into.add(part, "wrong exit codes", sum(not r.exit_ok for r in results), 0)
    into.add(part, "tracebacks or not one line", sum(not r.line_ok for r in results), 0)
    into.add(part, "other frames touched", sum(not r.untouched for r in results), 0)
    into.add(part, "things lost", sum(r.lost for r in results), 0)
    into.add(part, "secret key in files", len(secret_hits(root)), 0)
    return into


def _readable(e2e: E2E) -> list[dict[str, Any]]:
    """The records that parse: a case's own corrupt record is left where it is (the store
    never moves a file another program may still be writing), and is not one of ours."""
    out: list[dict[str, Any]] = []
    for path in e2e.record_files():
        try:
            item = json.loads(path.read_bytes().decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(item, dict):
            out.append(item)
    return out
