"""Issue 9, "Chinese interface": the real commands in a zh_CN locale or with --lang zh."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from .conftest import E2E, SUBMIT


def test_help_messages_and_api_errors_in_chinese(e2e: E2E) -> None:
    zh = e2e.env(LANG="zh_CN.UTF-8", LC_ALL=None, LANGUAGE=None)
    ran = e2e.ok("asyncimg", "--help", env=zh)
    assert "通过火山引擎的异步视觉 API 批量生成图片" in ran.stdout and "用法" in ran.stdout, ran
    assert "提交一帧" in e2e.ok("asyncimg", "submit", "--help", env=zh).stdout

    e2e.emu.inject("review_failure", 1, SUBMIT)
    ran = e2e.ok("asyncimg", "submit", "雨夜的小巷", "-o", "f/001.png", "--lang", "zh")
    assert "001.png：已提交，任务号 " in ran.stdout, ran
    assert "已提交 1 个，本地排队 0 个，被拒绝 0 个" in ran.stdout, ran
    ran = e2e.exits(1, "asyncimg", "monitor", "--interval", "1", env=zh, timeout=30)
    assert "生成的图片未通过内容审核" in ran.stdout, ran  # 50511 "Post Img Risk Not Pass"
    assert "Post Img Risk Not Pass" in ran.stdout  # the API's words stay, for support
    assert "全部重试：asyncimg retry --failed" in ran.stdout, ran
    ran = e2e.ok("asyncimg", "list", "--lang", "zh")
    assert ran.stdout.split()[:2] == ["任务", "状态"] and "失败" in ran.stdout, ran
    ran = e2e.exits(2, "asyncimg", "submit", "--lang", "zh")
    assert "需要 PROMPT 和 -o/--output" in ran.stderr, ran


def test_the_guides_menu_in_chinese(e2e: E2E) -> None:
    zh = e2e.env(LANG="zh_CN.UTF-8", LC_ALL=None, LANGUAGE=None)
    ran = e2e.ok("check_async_tasks.py", input="9\n0\n", env=zh)
    assert "1) 检查所有任务一次" in ran.stdout and "0) 退出" in ran.stdout, ran
    assert "未知选项 '9'" in ran.stdout, ran
    ran = e2e.ok("check_async_tasks.py", "--lang", "zh", input="0\n")
    assert "请选择 [0-6]" in ran.stdout, ran
    english = e2e.ok("check_async_tasks.py", input="0\n", env=e2e.env(LANG="en_US.UTF-8"))
    assert "1) check all tasks once" in english.stdout


# -- messages built outside the CLI (cancel, probe, api.py, config, callbacks, gallery) ------


def test_refusals_and_config_errors_in_chinese(e2e: E2E) -> None:
    # The store's lookup, as `cancel` says it.
    ran = e2e.exits(1, "asyncimg", "--lang", "zh", "cancel", "999")
    assert "999: 在 async_tasks 中没有与 '999' 匹配的任务" in ran.stderr, ran
    # api.py's refusal: the service does not know the task.
    ran = e2e.exits(1, "asyncimg", "adopt", "1234567890123456789", "-o", "x.png", "--lang", "zh")
    assert "asyncimg: 任务 1234567890123456789：" in ran.stderr, ran
    assert "--req-key 对吗？" in ran.stderr and "jimeng_t2i_v40" in ran.stderr, ran
    # Config errors: our words in Chinese, the key and the value verbatim.
    (e2e.root / "asyncimg.toml").write_text("[defaults]\npoll_concurency = 4\n")
    ran = e2e.exits(2, "asyncimg", "--lang", "zh", "list")
    assert "defaults.poll_concurency：未知的键；你是不是想写 'poll_concurrency'？" in ran.stderr
    (e2e.root / "asyncimg.toml").write_text("[defaults]\npoll_concurrency = 0\n")
    ran = e2e.exits(2, "asyncimg", "list", env=e2e.env(LANG="zh_CN.UTF-8"))
    assert "asyncimg.toml: defaults.poll_concurrency：应当大于或等于 1（实际是 0）" in ran.stderr
    english = e2e.exits(2, "asyncimg", "list", env=e2e.env(LANG="C.UTF-8"))
    assert "defaults.poll_concurrency: Input should be greater than or equal to 1 (got 0)" in (
        english.stderr
    ), english
    # A missing credential: the whole line in Chinese.
    (e2e.root / "asyncimg.toml").unlink()
    ran = e2e.exits(2, "asyncimg", "--lang", "zh", "cancel", "1", env=e2e.env(VOLC_SECRETKEY=None))
    assert "没有设置 VOLC_SECRETKEY：请把火山引擎的访问密钥" in ran.stderr, ran


def test_probe_report_in_chinese(e2e: E2E) -> None:
    ran = e2e.exits(1, "asyncimg", "--lang", "zh", "probe", input="n\n")
    assert "最多计费 6 张图片" in ran.stdout and "发送吗？" in ran.stderr, ran
    assert "asyncimg: 什么也没有发送" in ran.stderr
    assert e2e.emu.stats()["requests"] == {}
    ran = e2e.ok(
        "asyncimg", "--lang", "zh", "probe", "--yes", "--wait", "20", "--poll-every", "0.1"
    )
    assert "asyncimg 对 " in ran.stdout and "base64_refs_v40：与模拟器一致" in ran.stdout, ran
    assert "  问题：     jimeng_t2i_v40 接受以 binary_data_base64 传入的参考图吗？" in ran.stdout
    assert "  含义：     v40 接受 base64 参考图" in ran.stdout
    assert "连续提交 3 个，接受了 3 个" in ran.stdout and "结果保留：已跳过：" in ran.stdout
    assert "报告：" in ran.stdout
    # The JSON report's names and answers stay as they are (a machine compares them).
    rows = {r["name"]: r for r in json.loads((e2e.root / "probe-report.json").read_text())["rows"]}
    assert rows["fake_task_id"]["live"] == "result 10000 not_found"
    assert rows["base64_refs_v40"]["question"].startswith("Does jimeng_t2i_v40 take")


def test_gallery_page_in_chinese(e2e: E2E) -> None:
    e2e.ok("asyncimg", "submit", "雨夜的小巷", "-o", "f/001.png", "--style", "manga")
    e2e.ok("asyncimg", "--lang", "zh", "gallery", "--out", "zh.html")
    page = (e2e.root / "zh.html").read_text("utf-8")
    assert '<html lang="zh-CN">' in page
    assert '<span class="n-all">共 1 帧</span>' in page
    assert '<div class="placeholder">已提交</div>' in page  # not checked yet: submitted
    assert '<span class="badge submitted">已提交</span>' in page  # the class stays English
    assert "风格：manga" in page and "由 asyncimg gallery 于 " in page
    e2e.ok("asyncimg", "gallery", "--out", "en.html", env=e2e.env(LANG="C.UTF-8"))
    english = (e2e.root / "en.html").read_text("utf-8")
    assert '<html lang="en">' in english and '<span class="n-all">1 frames</span>' in english


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """Every line `proc` prints, as it prints it ("" once its output ends)."""
    found: queue.Queue[str] = queue.Queue()
    out = proc.stdout
    assert out is not None

    def read() -> None:
        for line in out:
            found.put(line)
        found.put("")

    threading.Thread(target=read, daemon=True).start()
    return found


def test_callback_receiver_says_it_in_chinese(e2e: E2E) -> None:
    e2e.tasks.mkdir(mode=0o700)
    proc = e2e.popen("asyncimg", "--lang", "zh", "callbacks", "--port", "0")
    lines = _lines(proc)
    try:
        first = lines.get(timeout=30)
        assert first.startswith("正在 http://127.0.0.1:") and "接收回调" in first, first
        url = first.split()[1]
        request = urllib.request.Request(
            url, data=b'{"task_id": "1234567890123456789"}', method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 404
        said = lines.get(timeout=30)
        assert said.startswith("任务 1234567890123456789 的回调：不是 ") and "已忽略" in said, said
    finally:
        proc.send_signal(signal.SIGINT)
        rest = []
        while line := lines.get(timeout=30):
            rest.append(line)
        proc.wait(timeout=30)
    assert "已停止接收回调\n" in rest and proc.returncode == 130, rest
