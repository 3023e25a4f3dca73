"""Issue 9, "Chinese interface": the real commands in a zh_CN locale or with --lang zh."""

from __future__ import annotations

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
