"""Checking every frame before anything is spent (issue 6, item 5): `check_lines` and the
batch reader. Real files in a temporary folder; nothing is sent anywhere."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from asyncimg.cli.commands import read_batch
from asyncimg.lifecycle.config import Config, config_from_mapping
from asyncimg.lifecycle.submit import TaskRequest, build_record
from asyncimg.lifecycle.validate import (
    MAX_OUTPUT_NAME_BYTES,
    Checked,
    Line,
    check_lines,
    output_key,
    output_problems,
)

ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _in_tmp(chdir_tmp: Path) -> Path:
    return chdir_tmp


def check(*rows: dict[str, Any], config: Config | None = None, csv: bool = False) -> Checked:
    lines = [Line("b.jsonl", i, row, from_csv=csv) for i, row in enumerate(rows, start=1)]
    return check_lines(lines, config or Config())


def shown(checked: Checked) -> list[str]:
    return [str(p) for p in checked.problems]


def image(path: str, size: tuple[int, int] = (256, 256), fmt: str = "PNG") -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 60)).save(path, fmt)
    return path


def frame(**fields: Any) -> dict[str, Any]:
    return {"prompt": "a fox", "output_path": "out/1.png", **fields}


# -- good lines -------------------------------------------------------------------------------


def test_a_good_line_gives_the_request_and_the_record_submit_will_make() -> None:
    image("chars/lin.png")
    checked = check(
        frame(character_images=["chars/lin.png"], style="漫画", size="1440X2560", scale=0.5)
    )
    assert checked.problems == [] and checked.bad_lines == 0
    [good] = checked.frames
    assert good.request == TaskRequest(
        prompt="a fox",
        output_path="out/1.png",
        character_images=("chars/lin.png",),
        style="漫画",
        req_key=None,
        size="1440x2560",
        params={"scale": 0.5},
        batch_file="b.jsonl",
        batch_line=1,
    )
    assert good.width_height == (1440, 2560)
    assert good.record.params == {"width": 1440, "height": 2560, "scale": 0.5, "force_single": True}
    assert not Path("out").exists()  # checking creates nothing


def test_csv_cells_are_read_as_numbers_booleans_and_path_lists() -> None:
    image("chars/a.png")
    image("chars/b.png")
    row = {
        "prompt": "雨夜",
        "output_path": "out/1.png",
        "character_images": "chars/a.png; chars/b.png",
        "style": "",
        "scale": "0.7",
        "force_single": "TRUE",
        "size": "",
    }
    [good] = check(row, csv=True).frames
    assert good.request.character_images == ("chars/a.png", "chars/b.png")
    assert good.request.params == {"scale": 0.7, "force_single": True}
    assert good.request.style is None and good.request.size is None
    assert good.width_height is None


def test_the_configured_defaults_apply() -> None:
    config = config_from_mapping({"defaults": {"size": "1440x2560", "style": "manga"}})
    [good] = check(frame(), config=config).frames
    assert good.width_height == (1440, 2560) and good.record.style == "manga"


# -- wrong types never raise ------------------------------------------------------------------


@pytest.mark.parametrize("size", [4194304, "4194304"], ids=["json", "csv-text"])
def test_an_integer_size_is_the_apis_area_form_where_the_model_takes_it(size: object) -> None:
    checked = check(frame(size=size))
    assert checked.problems == []
    [good] = checked.frames
    assert good.record.params["size"] == 4194304
    assert "width" not in good.record.params and good.width_height is None


@pytest.mark.parametrize(
    ("fields", "name", "message"),
    [
        ({"prompt": 5}, "prompt", "5 is a number; it must be text"),
        ({"prompt": None}, "prompt", "missing; every frame needs a prompt"),
        ({"prompt": "  "}, "prompt", "is empty"),
        ({"prompt": ["a"]}, "prompt", "['a'] is a list; it must be text"),
        ({"output_path": 7}, "output_path", "7 is a number; it must be a file path"),
        ({"output_path": ""}, "output_path", "missing; every frame needs a file to write"),
        ({"output_path": {"a": 1}}, "output_path", "is an object; it must be a file path"),
        ({"character_images": 3}, "character_images", "3 is not a list of image files"),
        ({"character_images": [1]}, "character_images", "[1] is not a list of image files"),
        ({"character_images": [""]}, "character_images", "[''] is not a list of image files"),
        ({"style": 3}, "style", "3 is a number; it must be text"),
        ({"style": ["manga"]}, "style", "['manga'] is a list; it must be text"),
        ({"style": "cubism"}, "style", "'cubism': unknown style; known: manga (comic, 漫画)"),
        ({"req_key": True}, "req_key", "True is true/false; it must be text"),
        ({"req_key": "jimeng_v9"}, "req_key", "'jimeng_v9': unknown model; known: "),
        ({"size": [1440, 2560]}, "size", '[1440, 2560] is a list; write "size": "1440x2560"'),
        ({"size": {"width": 1440, "height": 2560}}, "size", 'write "size": "1440x2560"'),
        # An area is for jimeng_t2i_v40 only (issue 10: v40 takes WxH, an area, 2K/4K or auto).
        ({"size": 4194304, "req_key": "jimeng_t2i_v31"}, "size", "takes WIDTHxHEIGHT (or auto)"),
        ({"size": [1440.5, 2]}, "size", "write it as text WIDTHxHEIGHT"),
        ({"size": True}, "size", "True is true/false; write it as text WIDTHxHEIGHT"),
        ({"size": "big"}, "size", "'big' is not WIDTHxHEIGHT (e.g. 1440x2560), or for"),
        ({"size": "720x1280"}, "size", "'720x1280': area 921600 px² is below the minimum"),
        ({"scale": "0.5"}, "scale", "'0.5': must be a number within [0, 1]"),
        ({"scale": 2}, "scale", "2: must be a number within [0, 1]"),
        ({"force_single": "yes"}, "force_single", "'yes': must be true or false"),
        ({"width": 1440}, "width", "width and height go together"),
    ],
)
def test_each_wrong_value_is_one_problem_naming_the_field(
    fields: dict[str, Any], name: str, message: str
) -> None:
    checked = check(frame(**fields))
    [problem] = checked.problems
    assert (problem.where, problem.field) == ("b.jsonl:1", name)
    assert message in problem.message, problem
    assert checked.frames == [] and checked.bad_lines == 1


def test_a_size_too_small_suggests_one_of_the_same_shape() -> None:
    [problem] = check(frame(size="720x1280")).problems
    assert str(problem) == (
        "b.jsonl:1: size: '720x1280': area 921600 px² is below the minimum 1048576 (1024²); "
        "try 1440x2560"
    )


def test_a_prompt_too_long_once_styled_is_reported() -> None:
    [problem] = check(frame(prompt="字" * 790, style="manga")).problems
    assert problem.field == "prompt"
    assert "takes at most 800" in problem.message and "style preset" in problem.message
    assert "字字字" not in problem.message  # not the whole prompt again


# -- field names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sise", "unknown field; did you mean 'size'?"),
        ("Prompt", "unknown field; did you mean 'prompt'?"),
        ("character_image", "unknown field; did you mean 'character_images'?"),
        ("outptu_path", "unknown field; did you mean 'output_path'?"),
        ("zzz", "unknown field; (known: aigc_meta, callback_url, character_images, force_single"),
        ("seed", "jimeng_t2i_v40 does not take this field; it takes: aigc_meta, callback_url"),
        ("image_urls", "not taken here; give local image files or http(s) URLs as character_"),
        ("binary_data_base64", "not taken here"),
    ],
)
def test_unknown_fields_are_named_with_a_suggestion(name: str, message: str) -> None:
    fields = frame()
    if name == "Prompt":
        fields = {"Prompt": "a fox", "output_path": "out/1.png"}
    else:
        fields[name] = "1"
    problems = [p for p in check(fields).problems if p.field == name]
    assert len(problems) == 1 and message in problems[0].message, check(fields).problems


def test_the_known_fields_depend_on_the_model() -> None:
    ok = check(frame(req_key="jimeng_t2i_v31", seed=42, use_pre_llm=True))
    assert ok.problems == []
    [problem] = check(frame(req_key="jimeng_t2i_v31", scale=0.5)).problems
    assert problem.field == "scale"
    assert problem.message.startswith("jimeng_t2i_v31 does not take this field")


def test_an_empty_csv_cell_under_an_unknown_header_is_no_problem() -> None:
    checked = check({"prompt": "a", "output_path": "out/1.png", "notes": ""}, csv=True)
    assert checked.problems == []
    checked = check({"prompt": "a", "output_path": "out/1.png", "notes": "x"}, csv=True)
    assert [p.field for p in checked.problems] == ["notes"]


def test_a_typo_does_not_hide_the_other_problems_of_its_line() -> None:
    checked = check(frame(sise="1440x2560", size="720x1280", character_images=["nobody.png"]))
    assert [p.field for p in checked.problems] == ["sise", "size", "character_images[0]"]


def test_problems_come_in_the_order_the_fields_were_written() -> None:
    row = {"size": "10x10", "prompt": "", "style": "x", "output_path": "out/1.png"}
    assert [p.field for p in check(row).problems] == ["size", "prompt", "style"]


# -- character images -------------------------------------------------------------------------


def test_every_unusable_character_image_of_a_line_is_reported() -> None:
    image("chars/ok.png")
    Path("chars/folder.png").mkdir()
    Path("chars/notes.png").write_text("not an image", encoding="utf-8")
    image("chars/wide.png", (1000, 200))
    refs = [
        "chars/ok.png",
        "chars/missing.png",
        "chars/folder.png",
        "chars/notes.png",
        "chars/wide.png",
    ]
    assert shown(check(frame(character_images=refs))) == [
        "b.jsonl:1: character_images[1]: 'chars/missing.png': no such file",
        "b.jsonl:1: character_images[2]: 'chars/folder.png': is a directory, not an image file",
        "b.jsonl:1: character_images[3]: 'chars/notes.png': not an image (or a format that "
        "cannot be read)",
        "b.jsonl:1: character_images[4]: 'chars/wide.png': 1000x200 is 5.00:1; jimeng_t2i_v40 "
        "takes at most 3:1 and cropping automatically could cut the character out; crop it to "
        "at most 3:1, e.g. 600x200",
    ]


@pytest.mark.skipif(ROOT, reason="root reads any file")
def test_an_unreadable_character_image_is_reported() -> None:
    path = Path(image("chars/locked.png"))
    path.chmod(0)
    try:
        [problem] = check(frame(character_images=[str(path)])).problems
    finally:
        path.chmod(0o600)
    assert problem.field == "character_images[0]"
    assert "cannot read: Permission denied" in problem.message


def test_character_images_on_a_text_only_model_is_one_problem() -> None:
    image("chars/a.png")
    checked = check(frame(req_key="jimeng_t2i_v31", character_images=["chars/a.png"]))
    [problem] = checked.problems
    assert problem.field == "character_images"
    assert "text-only" in problem.message


def test_too_many_character_images() -> None:
    refs = [image(f"chars/{i}.png") for i in range(11)]
    [problem] = check(frame(character_images=refs)).problems
    assert problem.field == "character_images"
    assert "takes at most 10" in problem.message


def test_a_bad_image_and_a_bad_model_field_are_both_reported() -> None:
    checked = check(frame(character_images=["nobody.png"], scale=3))
    assert [p.field for p in checked.problems] == ["character_images[0]", "scale"]


# -- output paths -----------------------------------------------------------------------------


def test_an_existing_folder_is_not_an_output() -> None:
    Path("frames").mkdir()
    assert shown(check(frame(output_path="frames"))) == [
        "b.jsonl:1: output_path: frames is a folder; name the image file in it, e.g. frames/001.png"
    ]


def test_an_output_under_a_file_cannot_be_created() -> None:
    Path("frames").write_text("a file", encoding="utf-8")
    [problem] = check(frame(output_path="frames/sub/001.png")).problems
    assert problem.message == (
        f"{Path.cwd() / 'frames'} is a file, so the folder "
        f"{Path.cwd() / 'frames' / 'sub'} cannot be created"
    )


@pytest.mark.skipif(ROOT, reason="root writes anywhere")
def test_an_output_in_a_folder_that_cannot_be_written() -> None:
    Path("locked").mkdir()
    Path("locked").chmod(0o500)
    try:
        [problem] = check(frame(output_path="locked/new/001.png")).problems
    finally:
        Path("locked").chmod(0o700)
    assert (
        problem.message == f"cannot create folders in {Path.cwd() / 'locked'} (permission denied)"
    )


def test_output_name_length_is_counted_in_utf8_bytes_with_room_for_a_numbered_extra() -> None:
    assert MAX_OUTPUT_NAME_BYTES == 252
    longest = "a" * (MAX_OUTPUT_NAME_BYTES - 4) + ".png"
    assert check(frame(output_path=f"out/{longest}")).problems == []
    [problem] = check(frame(output_path=f"out/b{longest}")).problems
    assert problem.message.startswith("file name is 253 bytes in UTF-8; at most 252")
    chinese = "帧" * 83 + ".png"  # 83 characters × 3 bytes + 4 = 253 bytes
    [problem] = check(frame(output_path=chinese)).problems
    assert "file name is 253 bytes" in problem.message


def test_the_longest_accepted_name_really_can_be_saved() -> None:
    """The limit leaves room for the temp file of the 15th image of one task."""
    from asyncimg.fileio import atomic_write
    from asyncimg.lifecycle.download import result_path

    name = "a" * (MAX_OUTPUT_NAME_BYTES - 4) + ".png"
    atomic_write(result_path(Path(name), 14), b"x", suffix=".part")
    assert result_path(Path(name), 14).is_file()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("out/", "ends with '/': name the image file"),
        ("out/a\x00b.png", "contains a NUL character"),
        (f"{'d' * 300}/1.png", "folder name 'dddd"),
    ],
)
def test_odd_output_paths(path: str, message: str) -> None:
    problems = output_problems(path, Path.cwd())
    assert len(problems) == 1 and message in problems[0]


def test_two_lines_with_one_output_name_the_earlier_line() -> None:
    rows = [
        frame(output_path="out/1.png"),
        frame(output_path="out/2.png"),
        frame(output_path="./out/x/../1.png"),
        frame(output_path=str(Path.cwd() / "out" / "1.png")),
    ]
    assert shown(check(*rows)) == [
        "b.jsonl:3: output_path: same output as line 1 (./out/x/../1.png)",
        f"b.jsonl:4: output_path: same output as line 1 ({Path.cwd() / 'out' / '1.png'})",
    ]
    assert [f.line.number for f in check(*rows).frames] == [1, 2]


def test_output_key_matches_a_record_made_from_the_same_path() -> None:
    record = build_record(TaskRequest("a", "out/../out/1.png"), Config(), now=0)
    assert output_key(record) == str(Path.cwd() / "out" / "1.png")


def test_the_command_line_is_named_as_such() -> None:
    line = Line("command line", None, {"prompt": "a", "output_path": "o.png", "size": "1x1"})
    [problem] = check_lines([line], Config()).problems
    assert str(problem).startswith("command line: size: '1x1': ")


# -- nothing a line holds makes it raise --------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_names = st.sampled_from(
    [
        *("prompt", "output_path", "output", "style", "req_key", "size", "scale"),
        *("force_single", "seed", "width", "height", "min_ratio", "image_urls", "sise"),
    ]
)
# Character images are read: random ones never contain "/", so they stay inside the
# temporary folder (no /dev/zero by chance).
_paths = st.text(st.characters(blacklist_characters="/"), max_size=12)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.dictionaries(_names | st.text(max_size=6), _json, max_size=6), max_size=3),
    refs=st.one_of(st.lists(_paths, max_size=2), _paths, st.integers(), st.none()),
)
def test_no_line_content_makes_the_check_raise(rows: list[dict[str, Any]], refs: object) -> None:
    rows = [{k: v for k, v in row.items() if k != "character_images"} for row in rows]
    rows = [*rows, {"prompt": "x", "output_path": "o.png", "character_images": refs}]
    checked = check(*rows)
    assert len(checked.frames) + checked.bad_lines == len(rows)
    checked = check(*({k: str(v) for k, v in row.items()} for row in rows), csv=True)
    assert len(checked.frames) + checked.bad_lines == len(rows)


# -- reading the batch file ---------------------------------------------------------------------


def test_jsonl_is_split_on_newlines_only() -> None:
    # str.splitlines() would cut each of these lines in two; the last is a JSON escape.
    raw = ["a\u2028b", "c\u2029d", "e\x85f", "g\\fh"]
    prompts = ["a\u2028b", "c\u2029d", "e\x85f", "g\x0ch"]
    body = "".join(
        '{"prompt": "' + p + f'", "output_path": "out/{i}.png"}}\r\n' for i, p in enumerate(raw)
    )
    Path("b.jsonl").write_bytes(("\ufeff" + body + "\n# a comment\n\n").encode("utf-8"))
    lines, problems = read_batch(Path("b.jsonl"))
    assert problems == []
    assert [(line.number, line.fields["prompt"]) for line in lines] == list(
        enumerate(prompts, start=1)
    )


def test_every_unreadable_jsonl_line_is_a_problem_with_its_number() -> None:
    Path("b.jsonl").write_text(
        '{"prompt": "a", "output_path": "1.png"}\n'
        '{"prompt": "b",}\n'
        "[1, 2]\n"
        '{"prompt": "c", "scale": NaN}\n'
        '"just a string"\n'
        '{"prompt": "d", "output_path": "2.png"}\n',
        encoding="utf-8",
    )
    lines, problems = read_batch(Path("b.jsonl"))
    assert [line.number for line in lines] == [1, 6]
    assert [(p.where, p.field) for p in problems] == [
        ("b.jsonl:2", "(line)"),
        ("b.jsonl:3", "(line)"),
        ("b.jsonl:4", "(line)"),
        ("b.jsonl:5", "(line)"),
    ]
    assert problems[0].message.startswith("not valid JSON: Expecting property name")
    assert "NaN is not allowed" in problems[2].message
    assert problems[3].message == "each line must be a JSON object {...}"


def test_a_file_that_is_not_utf8_or_is_empty() -> None:
    Path("b.jsonl").write_bytes(b'{"prompt": "\xff"}\n')
    assert [str(p) for p in read_batch(Path("b.jsonl"))[1]] == [
        "b.jsonl: (file): not UTF-8 text (bad byte at offset 12)"
    ]
    Path("e.csv").write_text("prompt,output_path\n\n", encoding="utf-8")
    assert [str(p) for p in read_batch(Path("e.csv"))[1]] == ["e.csv: (file): no frames in it"]


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    Path("b.csv").write_bytes(
        b'prompt,output_path,size\r\n"one\r\ntwo\nthree",1.png,\r\n\r\n'
        b"four,2.png,1440x2560\r\nfive,3.png,,extra\r\n"
    )
    lines, problems = read_batch(Path("b.csv"))
    assert [(line.number, line.fields["prompt"]) for line in lines] == [
        (2, "one\r\ntwo\nthree"),
        (6, "four"),
    ]
    assert all(line.from_csv for line in lines)
    assert [str(p) for p in problems] == ["b.csv:7: (line): 4 cells, but the header has 3 columns"]


def test_a_csv_column_given_twice_is_a_problem() -> None:
    Path("b.csv").write_text("prompt,size,size\na,1x1,2x2\n", encoding="utf-8")
    assert [str(p) for p in read_batch(Path("b.csv"))[1]] == [
        "b.csv:1: size: this column appears twice"
    ]
