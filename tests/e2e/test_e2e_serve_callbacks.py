"""`asyncimg serve --callbacks`: the live page and the callback receiver on one port.

A frame submitted with `--callback-url` pointing at it completes with no `check` or
`monitor` running: the emulator POSTs when the task is done, serve polls that one task
with the user's credentials and downloads it.
"""

from __future__ import annotations

import pytest

from .conftest import E2E, interrupt, serve_live, wait_for


def test_serve_with_callbacks_completes_a_frame_without_a_check(e2e: E2E) -> None:
    e2e.tasks.mkdir(mode=0o700)
    proc, url = serve_live(e2e, "--callbacks")
    try:
        e2e.ok(
            "asyncimg",
            "submit",
            "一只狐狸",
            "-o",
            "out/cb.png",
            "--callback-url",
            url + "callbacks",
        )
        image = e2e.root / "out" / "cb.png"
        # The image lands first and the record says so a moment later (a crash between the
        # two costs a second download, never a frame), so wait for the record, not the file.
        [record] = wait_for(
            lambda: [r for r in e2e.records() if r["status"] == "completed"] or None,
            60,
            "the record of the frame the callback brought",
        )
        assert record["prompt"] == "一只狐狸" and image.is_file()
        # The emulator marks the delivery once serve has answered the POST.
        # Read on the emulator's own loop (`e2e.emu.stats()`): from this thread its counters
        # could change mid-read.
        wait_for(lambda: e2e.emu.stats()["callbacks"][0]["delivered"] or None, 30, "delivery")
        assert len(e2e.emu.stats()["callbacks"]) == 1
    finally:
        _, err = interrupt(proc)
    assert proc.returncode == 130 and "Traceback" not in err, err


def test_serve_without_callbacks_refuses_them(e2e: E2E) -> None:
    e2e.tasks.mkdir(mode=0o700)
    proc, url = serve_live(e2e)
    try:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url + "callbacks", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (404, 405)  # read-only unless asked
    finally:
        interrupt(proc)
