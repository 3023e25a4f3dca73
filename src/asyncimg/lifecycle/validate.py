"""Check every frame of a batch (or one `submit`) before anything is sent or written.

A chapter is paid frame by frame, so a mistake must surface before the first frame is
billed, and all mistakes at once: one run of `asyncimg submit --batch` lists every problem
as `FILE:LINE: field: problem`. The checks are the ones submitting would make later
(`build_record`, the model's rules, the character images), plus what only shows once the
image is saved (the output path) and what only shows across lines (duplicate outputs).
I/O only where a check needs it: reading character images, looking at output folders.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncimg.i18n import _
from asyncimg.lifecycle import sizes
from asyncimg.lifecycle.config import Config
from asyncimg.lifecycle.ref_upload import ReferenceSender
from asyncimg.lifecycle.references import check_count, prepare_references
from asyncimg.lifecycle.refmode import looks_like_url
from asyncimg.lifecycle.styles import resolve_style
from asyncimg.lifecycle.submit import TaskRequest, build_record, request_fields
from asyncimg.protocol import models
from asyncimg.protocol.errors import InvalidInput
from asyncimg.store.record import TaskRecord

#: The fields a batch line (or the command line) has besides the model's own.
BATCH_FIELDS = (
    "id",
    "prompt",
    "output_path",
    "output",
    "character_images",
    "style",
    "req_key",
    "size",
)
_IMAGE_FIELDS = frozenset({"image_urls", "binary_data_base64"})

#: Longest output file name accepted, in UTF-8 bytes. File systems allow 255 (NAME_MAX); the
#: temp file an image is written through has a short name of its own (`asyncimg.fileio`),
#: but a task that returns several images also writes `<stem>_15<ext>` (3 more): 255 - 3.
NAME_MAX = 255
MAX_OUTPUT_NAME_BYTES = NAME_MAX - len("_15")

_SHOWN_MAX = 80


@dataclass(frozen=True)
class Line:
    """One frame as given: a JSONL object, a CSV row (cells are text) or the command line."""

    source: str
    number: int | None
    fields: Mapping[str, Any]
    from_csv: bool = False
    base: str | None = None
    """The folder the line's relative paths are read from: its batch file's folder (an
    absolute path), or None for the current folder (the command line)."""

    @property
    def where(self) -> str:
        return self.source if self.number is None else f"{self.source}:{self.number}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one frame (or with the file); ``str()`` is the line to print."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Frame:
    """A line that passed every check: what will be submitted, and the record it makes."""

    line: Line
    request: TaskRequest
    record: TaskRecord

    @property
    def width_height(self) -> tuple[int, int] | None:
        """The output size sent, or None when the model picks its default."""
        width, height = self.record.params.get("width"), self.record.params.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return width, height
        return None


@dataclass
class Checked:
    """Every frame checked: the good ones in order, and every problem found."""

    frames: list[Frame] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    bad_lines: int = 0
    """Lines (frames) with at least one problem."""


def check_lines(
    lines: Sequence[Line], config: Config, references: ReferenceSender | None = None
) -> Checked:
    """Check every line, its relative paths read from its batch file's folder (the current
    folder for the command line), where records will say they were typed; never raises
    for anything a line contains. `references` (default: the config's, without uploading)
    decides how reference images would be sent."""
    if references is None:
        references = ReferenceSender.from_config(config, upload=False)
    checked = Checked()
    outputs: dict[str, Line] = {}
    ids: dict[str, Line] = {}
    for line in lines:
        base = Path(line.base) if line.base is not None else Path.cwd()
        problems: list[Problem] = []
        request, usable = _request(line, config, problems)
        if request is not None and request.frame_id is not None:
            first_id = ids.setdefault(request.frame_id, line)
            if first_id is not line:
                same = _("same id as line {number}").format(number=first_id.number)
                problems.append(_problem(line, "id", same))
        output = _output_of(line)
        if output is not None:
            for message in output_problems(output, base):
                problems.append(_problem(line, _output_field(line), message))
            key = _output_key(output, base)
            first = outputs.setdefault(key, line) if key is not None else line
            if first is not line:
                earlier = (
                    _("line {n}").format(n=first.number)
                    if first.number is not None
                    else first.where
                )
                problems.append(
                    _problem(
                        line,
                        _output_field(line),
                        _("same output as {earlier} ({output})").format(
                            earlier=earlier, output=output
                        ),
                    )
                )
        record = None
        if request is not None:
            record = _check_model(line, request, config, problems, references)
        if problems:
            # In the order the line gives its fields (sort is stable: checks keep their order).
            order = {name: i for i, name in enumerate(line.fields)}
            problems.sort(key=lambda p: order.get(p.field.partition("[")[0], len(order)))
            checked.problems.extend(problems)
            checked.bad_lines += 1
        elif request is not None and record is not None and usable:
            checked.frames.append(Frame(line, request, record))
    return checked


def output_key(record: TaskRecord) -> str:
    """The file a record's image is written to, as one absolute, normalised path string
    (how reruns find an earlier record of the same frame)."""
    try:
        return _normalised(record.resolve(record.output_path))
    except RuntimeError:  # an unknown ~user
        return _normalised(Path(record.output_path))


def path_key(path: str) -> str:
    """`output_key` of a record of this output file made here (relative to the current
    folder), as `adopt` makes one."""
    return _normalised(Path(path).expanduser())


def _normalised(path: Path) -> str:
    """Absolute, with `.`, `..` and doubled slashes folded; symlinks are left as they are
    (like the paths records resolve to)."""
    return os.path.normpath(path.absolute())


# -- one line ------------------------------------------------------------------------------


def _problem(line: Line, name: str, message: str) -> Problem:
    return Problem(line.where, name, message)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 3] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return _("a number")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, dict):
        return _("an object")
    return _("a string") if isinstance(value, str) else type(value).__name__


def _must_be(value: object, rule: str) -> str:
    """ "{value} is {kind}; {rule}" in the user's language."""
    return _("{value} is {kind}; {rule}").format(value=_shown(value), kind=_kind(value), rule=rule)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _output_field(line: Line) -> str:
    if "output_path" not in line.fields and "output" in line.fields:
        return "output"
    return "output_path"


def _output_of(line: Line) -> str | None:
    value = line.fields.get("output_path")
    if _blank(value):
        value = line.fields.get("output")
    return value if isinstance(value, str) and value.strip() else None


def _request(
    line: Line, config: Config, problems: list[Problem]
) -> tuple[TaskRequest | None, bool]:
    """The request to check the line's model fields with (None: no known model to check
    against), and whether it is the line's own request (False: a field was missing or
    unreadable and was filled in only so the other fields could still be checked).

    Every field is looked at, whatever the others hold: one problem never hides another.
    """
    row = line.fields
    before = len(problems)
    req_key = _text_field(line, "req_key", problems)
    profile = None
    if len(problems) == before:
        profile = _profile(line, req_key or config.defaults.req_key, problems)
    unknown = _unknown_fields(line, profile, problems)
    prompt = _prompt(line, problems)
    output = _output(line, problems)
    refs = _references(line, problems)
    style = _text_field(line, "style", problems)
    if style is not None:
        try:
            resolve_style(style, config.presets)
        except InvalidInput as exc:
            problems.append(_problem(line, "style", f"{_shown(style)}: {exc.rule}"))
            style = None
    size = _size(line, problems)
    frame_id = _frame_id(line, problems)
    params: dict[str, Any] = {}
    for name, value in row.items():
        if name in BATCH_FIELDS or name in unknown or _blank(value):
            continue
        params[name] = _coerce(value) if line.from_csv else value
    if profile is None:
        return None, False
    request = TaskRequest(
        prompt=prompt if prompt is not None else "(no prompt)",
        output_path=output if output is not None else "(no output)",
        character_images=tuple(refs),
        style=style,
        req_key=req_key,
        size=size,
        params=params,
        frame_id=frame_id,
        batch_file=line.source if line.number is not None else None,
        batch_line=line.number,
        base_dir=line.base,
    )
    return request, prompt is not None and output is not None


def _profile(line: Line, req_key: str, problems: list[Problem]) -> models.ModelProfile | None:
    try:
        return models.get_profile(req_key)
    except InvalidInput as exc:
        problems.append(_problem(line, "req_key", f"{_shown(req_key)}: {exc.rule}"))
        return None


def _unknown_fields(
    line: Line, profile: models.ModelProfile | None, problems: list[Problem]
) -> set[str]:
    """Report every field neither a batch field nor the model's; returns their names.

    Without a known model, any model's field is accepted here (there is nothing to hold
    it against; the req_key problem is reported instead)."""
    every_model: set[str] = set().union(*(p.fields for p in models.PROFILES.values()))
    model_fields = set(profile.fields) if profile else every_model
    model_fields -= {"prompt"} | _IMAGE_FIELDS
    known = sorted(set(BATCH_FIELDS) | model_fields)
    unknown: set[str] = set()
    for name in line.fields:
        if name in known:
            continue
        value = line.fields[name]
        if line.from_csv and _blank(value):
            continue  # an empty cell under an unknown header asks for nothing
        if name in _IMAGE_FIELDS:
            message = _(
                "not taken here; give local image files or http(s) URLs as character_images"
            )
        elif profile is not None and name in every_model and name != "prompt":
            message = _("{model} does not take this field; it takes: {fields}").format(
                model=profile.req_key, fields=", ".join(sorted(model_fields))
            )
        else:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = _("did you mean {name!r}? ").format(name=close[0]) if close else ""
            message = _("unknown field; {hint}(known: {known})").format(
                hint=hint, known=", ".join(known)
            )
        unknown.add(name)
        problems.append(_problem(line, str(name) or "(empty header)", message))
    return unknown


def _text_field(line: Line, name: str, problems: list[Problem]) -> str | None:
    """An optional text field: None when absent or empty."""
    value = line.fields.get(name)
    if _blank(value):
        return None
    if not isinstance(value, str):
        problems.append(_problem(line, name, _must_be(value, _("it must be text"))))
        return None
    return value


def _frame_id(line: Line, problems: list[Problem]) -> str | None:
    """The line's own `id` (text, or a whole number read as text); None when absent."""
    value = line.fields.get("id")
    if _blank(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        problems.append(
            _problem(
                line,
                "id",
                _("{value} is {kind}; it must be text or a number").format(
                    value=_shown(value), kind=_kind(value)
                ),
            )
        )
        return None
    return value.strip()


def _prompt(line: Line, problems: list[Problem]) -> str | None:
    value = line.fields.get("prompt")
    if value is None:
        problems.append(_problem(line, "prompt", _("missing; every frame needs a prompt")))
    elif not isinstance(value, str):
        problems.append(_problem(line, "prompt", _must_be(value, _("it must be text"))))
    elif not value.strip():
        problems.append(_problem(line, "prompt", _("is empty")))
    else:
        return value
    return None


def _output(line: Line, problems: list[Problem]) -> str | None:
    row = line.fields
    given = {k: row[k] for k in ("output_path", "output") if not _blank(row.get(k))}
    if len(given) == 2 and given["output_path"] != given["output"]:
        problems.append(
            _problem(line, "output", _("give output_path or output, not both (they differ)"))
        )
        return None
    if not given:
        problems.append(
            _problem(line, "output_path", _("missing; every frame needs a file to write"))
        )
        return None
    name, value = next(iter(given.items()))
    if not isinstance(value, str):
        problems.append(_problem(line, name, _must_be(value, _("it must be a file path"))))
        return None
    return value


def _references(line: Line, problems: list[Problem]) -> list[str]:
    value = line.fields.get("character_images")
    if _blank(value):
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.replace("|", ";").split(";") if p.strip()]
    if isinstance(value, list) and all(isinstance(p, str) and p.strip() for p in value):
        return [p.strip() for p in value]
    problems.append(
        _problem(
            line,
            "character_images",
            _(
                '{value} is not a list of image files; write e.g. "character_images": {example}'
            ).format(value=_shown(value), example='["chars/lin.png"]')
            + (_(' (or "chars/lin.png;chars/chen.png" in CSV)') if line.from_csv else ""),
        )
    )
    return []


def _size(line: Line, problems: list[Problem]) -> str | None:
    value = line.fields.get("size")
    if _blank(value):
        return None
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            return sizes.normalise(value)
        except InvalidInput:
            problems.append(
                _problem(
                    line,
                    "size",
                    _("{value} is not {forms}").format(value=_shown(value), forms=_(sizes.FORMS)),
                )
            )
            return None
    pair = _pair(value)
    if pair is not None:
        hint = _('write "size": "{w}x{h}"').format(w=pair[0], h=pair[1])
    else:
        hint = _('write it as text WIDTHxHEIGHT, e.g. "size": "1440x2560"')
    problems.append(_problem(line, "size", _must_be(value, hint)))
    return None


def _pair(value: object) -> tuple[int, int] | None:
    """(w, h) from [w, h] or {"width": w, "height": h}, when those are whole numbers."""
    items: list[object] = []
    if isinstance(value, list) and len(value) == 2:
        items = list(value)
    elif isinstance(value, dict) and set(value) == {"width", "height"}:
        items = [value["width"], value["height"]]
    whole = [
        int(v)
        for v in items
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and v == int(v)
        and v > 0
    ]
    return (whole[0], whole[1]) if len(whole) == 2 else None


def _coerce(value: Any) -> Any:
    """CSV cells are text: read numbers and booleans as such for model fields."""
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            return value  # "nan" / "inf" stay text and are refused as such
        return number
    return value


# -- output path ---------------------------------------------------------------------------


def _resolve(path: str, base: Path) -> Path:
    given = Path(path).expanduser()
    return Path(_normalised(given if given.is_absolute() else base / given))


def _output_key(path: str, base: Path) -> str | None:
    try:
        return str(_resolve(path, base))
    except (RuntimeError, ValueError):
        return None


def output_problems(path: str, base: Path) -> list[str]:
    """Why the image could not be written at `path` (relative to `base`); [] if it can."""
    if "\0" in path:
        return [_("contains a NUL character")]
    if path.endswith(("/", os.sep)):
        return [_("ends with '/': name the image file, e.g. frames/001.png")]
    try:
        target = _resolve(path, base)
    except RuntimeError as exc:  # "~nobody/…": no such user
        return [_("cannot expand '~' ({why})").format(why=exc)]
    for part in Path(path).parts[:-1]:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            return [
                _("folder name {name!r}... is over {limit} bytes").format(
                    name=part[:40], limit=NAME_MAX
                )
            ]
    name = target.name
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > MAX_OUTPUT_NAME_BYTES:
        return [
            _(
                "file name is {size} bytes in UTF-8; at most {most} "
                "(the {limit}-byte limit less room for a numbered extra image, _15)"
            ).format(size=size, most=MAX_OUTPUT_NAME_BYTES, limit=NAME_MAX)
        ]
    try:
        if target.is_dir():
            return [
                _("{path} is a folder; name the image file in it, e.g. {path}/001.png").format(
                    path=path
                )
            ]
        folder = target.parent
        missing: list[str] = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder.name)
            folder = folder.parent
        if not folder.is_dir():
            return [
                _("{file} is a file, so the folder {folder} cannot be created").format(
                    file=folder, folder=target.parent
                )
            ]
        if not os.access(folder, os.W_OK | os.X_OK):
            if missing:
                return [
                    _("cannot create folders in {folder} (permission denied)").format(folder=folder)
                ]
            return [_("cannot write in {folder} (permission denied)").format(folder=folder)]
    except OSError as exc:
        return [_("cannot check the folder ({why})").format(why=exc.strerror or exc)]
    return []


# -- the model -----------------------------------------------------------------------------


def _check_model(
    line: Line,
    request: TaskRequest,
    config: Config,
    problems: list[Problem],
    references: ReferenceSender,
) -> TaskRecord | None:
    """The record `request` makes, checked as submitting it would be; None if a problem
    was found."""
    before = len(problems)
    try:
        record = build_record(request, config, now=0.0)
    except InvalidInput as exc:
        problems.append(_invalid(line, exc))
        return None
    except ValueError as exc:  # a value a record cannot hold (pydantic); never a traceback
        problems.append(_problem(line, "(frame)", " ".join(str(exc).split())[:200]))
        return None
    profile = models.get_profile(record.req_key)
    ref_problems = _reference_problems(line, record, profile)
    problems.extend(ref_problems)
    try:
        if ref_problems:
            # The images are reported above; still check every other field, without them.
            fields: dict[str, Any] = {"prompt": record.full_prompt, **record.params}
            models.validate_fields(record.req_key, fields)
        else:
            request_fields(record, references)  # what submitting sends, images read and checked
    except InvalidInput as exc:
        if not (ref_problems and _is_image_field(exc.field)):
            problems.append(_invalid(line, exc))
    except ValueError as exc:
        problems.append(_problem(line, "(frame)", " ".join(str(exc).split())[:200]))
    return record if len(problems) == before else None


def _reference_problems(
    line: Line, record: TaskRecord, profile: models.ModelProfile
) -> list[Problem]:
    """Every unusable character image of the line (not only the first)."""
    paths = record.character_images
    try:
        check_count(len(paths), profile)
    except InvalidInput as exc:
        return [_invalid(line, exc)] if paths else []
    rule = profile.references
    if not rule.min_count <= 1 <= rule.max_count:
        return []  # cannot check one at a time; request_fields checks them together
    found: list[Problem] = []
    for i, path in enumerate(paths):
        if looks_like_url(path):
            continue  # checked as a URL by request_fields
        try:
            prepare_references([record.resolve(path)], profile)
        except InvalidInput as exc:
            hint = f"; {exc.suggestion}" if exc.suggestion else ""
            found.append(_problem(line, f"character_images[{i}]", f"{path!r}: {exc.rule}{hint}"))
        except (RuntimeError, ValueError) as exc:
            found.append(_problem(line, f"character_images[{i}]", f"{path!r}: {exc}"))
    return found


def _is_image_field(name: str) -> bool:
    return name.startswith(("character_images", "binary_data_base64", "image_urls"))


def _invalid(line: Line, exc: InvalidInput) -> Problem:
    """An InvalidInput from building or checking a record, named as the user wrote it."""
    name = exc.field
    if name == "width x height" and "size" in line.fields:
        name = "size"
    elif name.startswith("binary_data_base64"):
        name = "character_images"
    hint = f"; {exc.suggestion}" if exc.suggestion else ""
    if name == "prompt":
        return _problem(line, name, f"{exc.rule}{hint}")
    return _problem(line, name, f"{_shown(exc.value)}: {exc.rule}{hint}")
