"""Issue 10 (the real error contract, sizes): the real client against the emulator.

Each test failed on main: 50215 at poll left the frame stalled (an unmapped code) and the
emulator never sent it; "2K", an area and "auto" were refused as sizes; i2i_v30 drew
1024x1024 by default; the emulator drew v40 frames square.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from PIL import Image

from asyncimg.emulator.faults import FaultKind
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.config import config_from_mapping
from asyncimg.lifecycle.submit import build_record
from asyncimg.protocol import models
from asyncimg.protocol.errors import ConfigError, InputRejected, classify_business
from asyncimg.store.states import TaskState as S

if TYPE_CHECKING:
    from conftest import Env, Start

INVALID = "Input invalid for this service."


async def _submit(env: Env, name: str, **kwargs: object) -> str:
    record = env.add(name, **kwargs)  # type: ignore[arg-type]
    summary = await env.run_pass()
    assert summary.submitted == 1, summary
    return record.local_id


async def test_50215_at_poll_fails_the_frame_in_the_services_words(start: Start) -> None:
    env = await start()
    env.emu.inject(FaultKind.LATE_INVALID)
    local_id = await _submit(env, "late")
    env.advance(10)
    summary = await env.run_pass()
    assert summary.halted is None and summary.exit_code == 1
    record = env.load(env.store.get(local_id))
    assert record.status is S.FAILED
    assert record.last_error is not None
    assert (record.last_error.code, record.last_error.kind) == (50215, "InputRejected")
    assert INVALID in record.last_error.message
    assert not record.last_error.resubmittable
    for _ in range(3):  # never resubmitted, never polled again
        env.advance(30)
        await env.run_pass()
    assert env.emu.stats()["tasks_submitted"] == 1
    assert env.load(record).status is S.FAILED


async def test_review_internal_error_at_poll_fails_without_resubmitting(start: Start) -> None:
    env = await start()
    env.emu.inject(FaultKind.REVIEW_INTERNAL_ERROR)
    local_id = await _submit(env, "review")
    env.advance(10)
    await env.run_pass()
    record = env.store.get(local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.code in (50520, 50521, 50522)
    await env.run_pass()
    assert env.emu.stats()["tasks_submitted"] == 1


@pytest.mark.parametrize("where", ["submit", "poll"])
def test_50215_is_a_definitive_refusal(where: str) -> None:
    error = classify_business(50215, INVALID, "rid", 400)
    assert type(error) is InputRejected and not error.unrecognised
    assert not error.retryable and not error.resubmittable
    decision = decide.after_submit_error(error) if where == "submit" else decide.after_error(error)
    assert decision.state is S.FAILED and not decision.halt and not decision.stalled


@pytest.mark.parametrize(
    ("size", "prompt", "params", "pixels"),
    [
        ("2K", "a wide street, 16:9", {"size": 2048 * 2048}, (2736, 1536)),
        ("1048576", "a tall tower 9:16", {"size": 1024 * 1024}, (768, 1360)),
        ("auto", "a poster, 3:2", {}, (2512, 1664)),
        ("2560x1440", "anything", {"width": 2560, "height": 1440}, (2560, 1440)),
    ],
)
async def test_v40_size_forms_and_the_saved_image_keeps_the_services_dimensions(
    start: Start, size: str, prompt: str, params: dict[str, int], pixels: tuple[int, int]
) -> None:
    env = await start()
    local_id = await _submit(env, "frame", prompt=prompt, size=size)
    record = env.store.get(local_id)
    assert {k: v for k, v in record.params.items() if k in ("size", "width", "height")} == params
    env.advance(10)
    await env.run_pass()
    record = env.store.get(local_id)
    assert record.status is S.COMPLETED
    with Image.open(env.out_dir / "frame.png") as img:
        assert img.size == pixels
    assert (record.results[0].width, record.results[0].height) == pixels


async def test_i2i_default_is_1328_and_outputs_multiples_of_16(start: Start) -> None:
    env = await start()
    ref = env.image("lin.png")
    plain = await _submit(
        env, "plain", req_key="jimeng_i2i_v30", size=None, character_images=[str(ref)]
    )
    odd = await _submit(
        env, "odd", req_key="jimeng_i2i_v30", size="600x900", character_images=[str(ref)]
    )
    env.advance(10)
    await env.run_pass()
    assert env.store.get(plain).results[0].width == 1328
    result = env.store.get(odd).results[0]
    assert (result.width, result.height) == (608, 896)
    assert models.get_profile("jimeng_i2i_v30").size.default == (1328, 1328)


async def test_seededit_follows_its_input_and_ignores_the_default_size(start: Start) -> None:
    env = await start(config={"defaults": {"size": "1440x2560"}})
    ref = env.image("lin.png", size=(640, 480))
    record = build_record(
        env.request("edit", req_key="seededit_v3.0", size=None, character_images=[str(ref)]),
        env.config,
        now=env.now(),
    )
    assert "width" not in record.params
    env.store.save(record)
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    result = env.store.get(record.local_id).results[0]
    assert (result.width, result.height) == (640, 480)


def test_reference_limits_are_decimal_megabytes() -> None:
    profile = models.get_profile("jimeng_i2i_v30")
    over = models.ImageInfo("PNG", 1000, 1000, 4_800_000)  # 4.8 MB: under 4.7 MiB
    assert models.reference_problem(profile, over) is not None
    under = models.ImageInfo("PNG", 1000, 1000, 4_700_000)
    assert models.reference_problem(profile, under) is None
    assert config_from_mapping({"defaults": {"size": "4K"}}).defaults.size == str(4096 * 4096)


def test_config_default_size_forms() -> None:
    defaults = config_from_mapping({"defaults": {"size": "auto"}}).defaults
    assert defaults.size == "auto" and defaults.dimensions is None
    with pytest.raises(ConfigError, match=r"defaults\.size: 4194304: jimeng_t2i_v31 does not take"):
        config_from_mapping({"defaults": {"size": "2K", "req_key": "jimeng_t2i_v31"}})
