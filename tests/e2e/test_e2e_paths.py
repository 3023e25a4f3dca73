"""Issue 9, "Paths": a batch file's paths are its own folder's; a moved project writes
its images inside itself; records written before keep working."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from asyncimg.store.record import record_from_json

from .conftest import ASYNCIMG, E2E


def _run(e2e: E2E, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ASYNCIMG), *args],
        cwd=cwd,
        env=e2e.env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _novel(e2e: E2E) -> Path:
    """novel/chapter01.jsonl naming frames/ and chars/ inside novel/."""
    novel = e2e.root / "novel"
    (novel / "chars").mkdir(parents=True)
    shutil.move(e2e.character("lin.png"), novel / "chars" / "lin.png")
    rows = [
        {
            "prompt": f"帧 {i}",
            "output_path": f"frames/{i:03d}.png",
            "character_images": ["chars/lin.png"],
        }
        for i in (1, 2)
    ]
    (novel / "chapter01.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    return novel


def test_batch_paths_resolve_against_the_batch_files_folder(e2e: E2E) -> None:
    novel = _novel(e2e)
    ran = e2e.ok("asyncimg", "submit", "--batch", "novel/chapter01.jsonl")
    assert "2 submitted" in ran.stdout, ran
    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=40)
    for i in (1, 2):
        assert (novel / "frames" / f"{i:03d}.png").is_file()
    assert not (e2e.root / "frames").exists()


def test_a_moved_project_writes_inside_itself(e2e: E2E) -> None:
    novel = _novel(e2e)
    ran = _run(e2e, novel, "submit", "--batch", "chapter01.jsonl")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    on_disk = json.loads(next((novel / "async_tasks").glob("*.json")).read_text("utf-8"))
    assert on_disk["working_dir"] == ".."  # relative to the tasks folder
    moved = e2e.root / "elsewhere" / "novel-moved"
    moved.parent.mkdir()
    shutil.move(novel, moved)
    e2e.emu.wait_idle(2)
    ran = _run(e2e, e2e.root, "check", "--tasks-dir", str(moved / "async_tasks"))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for i in (1, 2):
        with Image.open(moved / "frames" / f"{i:03d}.png") as img:
            # v40 with no size: 2048² in area, the ratio the model's (research finding 4).
            assert abs(img.size[0] * img.size[1] - 2048 * 2048) < 2048 * 2048 // 50
    assert not novel.exists(), "the image was written back to the old place"


def test_an_absolute_working_dir_from_an_older_record_is_kept(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "task_id": "1",
            "output_path": "f.png",
            "filename": "f.png",
            "prompt": "p",
            "full_prompt": "p",
            "status": "submitted",
            "created_at": 1.0,
            "updated_at": 1.0,
            "working_dir": "/srv/old/project",
        }
    )
    record = record_from_json(text, tmp_path / "async_tasks")
    assert record.working_dir == "/srv/old/project"
    assert record.resolve("f.png") == Path("/srv/old/project/f.png")
    relative = json.loads(text) | {"working_dir": ".."}
    record = record_from_json(json.dumps(relative), tmp_path / "async_tasks")
    assert record.resolve("f.png") == tmp_path / "f.png"
