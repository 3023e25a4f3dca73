"""The record model: the guide's files load, unknown fields survive, text round-trips."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from asyncimg.protocol.errors import InvalidInput, RateLimited
from asyncimg.store import (
    ErrorInfo,
    ResultFile,
    TaskRecord,
    TaskState,
    legacy_local_id,
    record_from_json,
    record_to_json,
    transition,
)

# The guide's example, verbatim (section 2), with a real-looking task_id.
GUIDE_EXAMPLE = """{
  "task_id": "任务ID",
  "output_path": "图片保存路径",
  "filename": "文件名",
  "prompt": "原始提示词",
  "full_prompt": "完整提示词",
  "character_images": ["角色图片路径列表"],
  "style": "艺术风格",
  "submit_time": 1234567890.123,
  "status": "submitted"
}"""

GUIDE_FIELDS = [
    "task_id",
    "output_path",
    "filename",
    "prompt",
    "full_prompt",
    "character_images",
    "style",
    "submit_time",
    "status",
]


def fresh(**extra: Any) -> TaskRecord:
    data: dict[str, Any] = {
        "output_path": "out/f.png",
        "filename": "f.png",
        "prompt": "p",
        "full_prompt": "p",
        "status": "pending",
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def test_guide_example_loads_with_our_fields_filled() -> None:
    record = record_from_json(GUIDE_EXAMPLE)
    assert record.task_id == "任务ID"
    assert record.status is TaskState.SUBMITTED
    assert record.character_images == ["角色图片路径列表"]
    assert record.created_at == record.updated_at == 1234567890.123
    assert record.submit_time == 1234567890.123
    assert record.attempts == 1
    assert record.req_key == "jimeng_t2i_v40"
    assert record.schema_version == 1
    assert record.history == [] and record.results == [] and record.last_error is None


def test_legacy_local_id_is_deterministic() -> None:
    a = record_from_json(GUIDE_EXAMPLE)
    b = record_from_json(GUIDE_EXAMPLE)
    assert a.local_id == b.local_id == legacy_local_id("任务ID")
    assert len(a.local_id) == 32
    other = json.loads(GUIDE_EXAMPLE) | {"task_id": "another"}
    assert TaskRecord.model_validate(other).local_id != a.local_id


def test_new_records_get_random_local_ids() -> None:
    assert fresh().local_id != fresh().local_id


def test_serialisation_puts_guide_fields_first_then_ours_then_unknown() -> None:
    data = json.loads(GUIDE_EXAMPLE) | {"x_custom": {"keep": [1, 2]}}
    keys = list(json.loads(record_to_json(TaskRecord.model_validate(data))))
    assert keys[: len(GUIDE_FIELDS)] == GUIDE_FIELDS
    assert keys[-1] == "x_custom"
    assert "local_id" in keys and "history" in keys


def test_unknown_fields_survive_dump_and_transition() -> None:
    data = json.loads(GUIDE_EXAMPLE) | {"seed": 42, "notes": {"by": "张三"}}
    record = TaskRecord.model_validate(data)
    moved = transition(record, TaskState.PROCESSING, now=2e9)
    out = json.loads(record_to_json(moved))
    assert out["seed"] == 42 and out["notes"] == {"by": "张三"}


def test_chinese_and_emoji_are_written_as_is_and_round_trip() -> None:
    record = fresh(prompt="一只猫在月光下 🐱🌙", full_prompt="水彩风格：一只猫 🎨")
    text = record_to_json(record)
    assert "一只猫在月光下 🐱🌙" in text and "\\u" not in text
    assert record_to_json(record_from_json(text.encode("utf-8"))) == text


@given(prompt=st.text(), style=st.none() | st.text(), extra=st.text())
def test_any_text_round_trips_byte_identical(prompt: str, style: str | None, extra: str) -> None:
    record = fresh(prompt=prompt, full_prompt=prompt + "!", style=style, x_note=extra)
    text = record_to_json(record)
    again = record_to_json(record_from_json(text.encode("utf-8")))
    assert again.encode("utf-8") == text.encode("utf-8")


def test_lone_surrogate_still_serialises() -> None:
    text_in = (
        '{"output_path": "o", "filename": "f", "prompt": "a\\ud800b",'
        ' "full_prompt": "x", "status": "pending", "created_at": 1}'
    )
    record = record_from_json(text_in)
    text = record_to_json(record)
    text.encode("utf-8")  # must not raise
    assert record_from_json(text).prompt == "a\ud800b"


def test_error_info_from_exception() -> None:
    info = ErrorInfo.from_exception(RateLimited("slow down", code=50429, request_id="r1"), 5.0)
    assert (info.code, info.kind, info.message, info.request_id, info.time) == (
        50429,
        "RateLimited",
        "slow down",
        "r1",
        5.0,
    )
    assert info.retryable and not info.resubmittable
    bad = ErrorInfo.from_exception(InvalidInput("width", 5, "must be >= 512"), 6.0)
    assert bad.kind == "InvalidInput" and bad.code == 50200 and "width=5" in bad.message


def test_error_codes_keep_their_type() -> None:
    data = {"kind": "AuthError", "message": "m", "time": 1.0}
    assert ErrorInfo.model_validate(data | {"code": "InvalidTimestamp"}).code == "InvalidTimestamp"
    assert ErrorInfo.model_validate(data | {"code": 50430}).code == 50430


def test_results_and_history_round_trip() -> None:
    record = transition(
        fresh(status="processing", task_id="77"),
        TaskState.COMPLETED,
        now=9.0,
        results=[ResultFile(path="out/f.png", sha256="ab" * 32, bytes=10, width=2, height=3)],
    )
    again = record_from_json(record_to_json(record))
    assert again == record


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"status": "submitted"}, "needs a task_id"),
        ({"task_id": "77"}, "cannot have a task_id"),
        ({"params": {"binary_data_base64": ["AAAA"]}}, "binary_data_base64"),
        ({"params": {"prompt": "again"}}, "prompt"),
        ({"local_id": "../../etc"}, "local_id"),
        ({"submit_time": float("nan")}, "submit_time"),
        ({"task_id": "", "status": "failed"}, "task_id"),
        ({"status": "done"}, "status"),
    ],
)
def test_inconsistent_records_do_not_validate(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        fresh(**changes)


def test_params_keep_request_fields() -> None:
    record = fresh(params={"width": 2048, "height": 1152, "scale": 0.5, "force_single": True})
    assert record_from_json(record_to_json(record)).params == record.params
