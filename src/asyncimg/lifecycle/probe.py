"""`asyncimg probe`: ask the live service the questions the emulator's answers rest on.

Each check sends one request (or three), records the answer in brief, and later polls what
was accepted until it finishes. The same checks run against an in-process emulator, and
the report sets the two answers side by side, naming the file to change where they differ
(research "Cheap live probes"). Building the plan and comparing answers are pure; only
:func:`run_checks` talks to a service.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

from asyncimg import constants
from asyncimg.i18n import N_, _
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError

V40 = "jimeng_t2i_v40"
PROMPT = "asyncimg probe: one small red square on white"
URL_MODE = '[references] mode = "url"'
# Every probe task asks for the smallest v40 output, one image.
_SMALL = {"prompt": PROMPT, "size": 1024 * 1024, "force_single": True}


def _reference_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@dataclass(frozen=True)
class Check:
    """One question for the service: the submits it sends (none: a poll only)."""

    name: str
    question: str
    submits: tuple[dict[str, Any], ...] = ()
    poll_task_id: str | None = None
    where_to_fix: str = ""
    """The file that encodes the emulator's assumption, to change if the service differs."""

    @property
    def billed(self) -> int:
        """The most images this check can bill: one per submit (force_single)."""
        return len(self.submits)

    def shown(self) -> list[str]:
        """What it sends, one line per request, without the base64 payload."""
        if not self.submits:
            return [f"GetResult req_key={V40} task_id={self.poll_task_id}"]
        lines = []
        for body in self.submits:
            fields = {
                k: (f"[{len(v)} image(s) as base64]" if k == "binary_data_base64" else v)
                for k, v in body.items()
            }
            lines.append(f"SubmitTask {fields}")
        return lines


def plan(rng: random.Random | None = None) -> list[Check]:
    """The checks, in the order they run."""
    rng = rng or random.Random()
    fake_id = str(rng.randrange(10**18, 10**19))
    base = {"req_key": V40, **_SMALL}
    return [
        Check(
            "base64_refs_v40",
            N_("Does jimeng_t2i_v40 take a reference image as binary_data_base64?"),
            ({**base, "binary_data_base64": [_reference_b64()]},),
            where_to_fix=N_("src/asyncimg/lifecycle/references.py (reference mode for v40)"),
        ),
        Check(
            "unknown_field",
            N_("Is an undocumented body field ignored or refused (and with which code)?"),
            ({**base, "zz_asyncimg_probe": 1},),
            where_to_fix=N_("src/asyncimg/emulator/server.py (_submit: unknown fields, --strict)"),
        ),
        Check(
            "out_of_range_size",
            N_("Which code answers an out-of-range size, at submit or at poll time?"),
            (
                {
                    "req_key": V40,
                    "prompt": PROMPT,
                    "width": 100,
                    "height": 100,
                    "force_single": True,
                },
            ),
            where_to_fix=N_("src/asyncimg/emulator/server.py (parameter errors: 50215 at submit)"),
        ),
        Check(
            "three_quick_submits",
            N_("How many tasks may be unfinished at once, and how fast may we submit?"),
            tuple({**base, "prompt": f"{PROMPT} ({n})"} for n in (1, 2, 3)),
            where_to_fix=N_("src/asyncimg/emulator/config.py (REALISTIC: concurrency, qps)"),
        ),
        Check(
            "fake_task_id",
            N_("What does GetResult answer for a task id that never existed?"),
            poll_task_id=fake_id,
            where_to_fix=N_("src/asyncimg/emulator/server.py (_get_result: unknown task)"),
        ),
    ]


@dataclass
class Answer:
    """One reply in brief: `code` is the business code (10000 success), a gateway code,
    or "network"; `task_id` when a task was created."""

    code: int | str
    http_status: int | None = None
    message: str = ""
    request_id: str | None = None
    task_id: str | None = None
    status: str | None = None
    images: int | None = None

    @classmethod
    def of_error(cls, exc: AsyncImgError) -> Answer:
        return cls(
            code=exc.code if exc.code is not None else exc.kind,
            http_status=exc.http_status,
            message=exc.message,
            request_id=exc.request_id,
        )


@dataclass
class CheckResult:
    name: str
    question: str
    submits: list[Answer] = field(default_factory=list)
    results: list[Answer] = field(default_factory=list)
    """For each accepted submit (or the poll-only check): the final poll answer."""

    def brief(self) -> str:
        """The answer as one comparable phrase (ids and timings left out)."""
        parts = [f"submit {_short(a)}" for a in self.submits]
        parts += [f"result {_short(a)}" for a in self.results]
        return "; ".join(parts)


def _short(answer: Answer) -> str:
    text = str(answer.code)
    if answer.code == constants.SUCCESS_CODE and answer.status:
        text += f" {answer.status}"
        if answer.images is not None:
            text += f" ({answer.images} image{'s' if answer.images != 1 else ''})"
    elif answer.http_status is not None and answer.code != constants.SUCCESS_CODE:
        text += f" (HTTP {answer.http_status})"
    return text


Sleep = Callable[[float], Awaitable[None]]


async def run_checks(
    client: VisualClient,
    checks: Sequence[Check],
    *,
    wait: float = 180.0,
    poll_every: float = 3.0,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[CheckResult]:
    """Send every check's requests, then poll what was accepted until it finishes (at most
    `wait` seconds in all). The client should not retry: every answer counts."""
    results = []
    for check in checks:
        result = CheckResult(check.name, check.question)
        for body in check.submits:
            fields = {k: v for k, v in body.items() if k != "req_key"}
            try:
                task_id = await client.submit(str(body["req_key"]), fields)
            except AsyncImgError as exc:
                result.submits.append(Answer.of_error(exc))
            else:
                result.submits.append(Answer(constants.SUCCESS_CODE, 200, task_id=task_id))
        if check.poll_task_id is not None:
            result.results.append(await _poll(client, check.poll_task_id))
        results.append(result)
    deadline = clock() + wait
    for result in results:
        for answer in result.submits:
            if answer.task_id is not None:
                result.results.append(
                    await _until_finished(
                        client, answer.task_id, deadline, poll_every, sleep, clock
                    )
                )
    return results


async def _poll(client: VisualClient, task_id: str) -> Answer:
    try:
        reply = await client.get_result(V40, task_id)
    except AsyncImgError as exc:
        return Answer.of_error(exc)
    images = len(reply.image_urls) + len(reply.images_base64)
    return Answer(
        constants.SUCCESS_CODE,
        200,
        request_id=reply.request_id,
        task_id=task_id,
        status=reply.status.value,
        images=images if reply.status.value == "done" else None,
    )


async def _until_finished(
    client: VisualClient,
    task_id: str,
    deadline: float,
    poll_every: float,
    sleep: Sleep,
    clock: Callable[[], float],
) -> Answer:
    while True:
        answer = await _poll(client, task_id)
        unfinished = answer.code == constants.SUCCESS_CODE and answer.status in (
            "in_queue",
            "generating",
            "processing",
        )
        if not unfinished or clock() >= deadline:
            return answer
        await sleep(poll_every)


@dataclass(frozen=True)
class Row:
    """One check, the live answer beside the emulator's."""

    name: str
    question: str
    live: str
    emulator: str
    same: bool
    where_to_fix: str
    advice: str


def compare(
    checks: Sequence[Check], live: Sequence[CheckResult], emulated: Sequence[CheckResult]
) -> list[Row]:
    """Pure: the report's rows."""
    rows = []
    by_name = {c.name: c for c in checks}
    emulated_by_name = {r.name: r for r in emulated}
    for result in live:
        check = by_name[result.name]
        other = emulated_by_name.get(result.name)
        theirs = other.brief() if other is not None else "(not run)"
        same = result.brief() == theirs
        rows.append(
            Row(
                result.name,
                result.question,
                result.brief(),
                theirs,
                same,
                "" if same else check.where_to_fix,
                advice(result),
            )
        )
    return rows


def advice(result: CheckResult) -> str:
    """What the live answer means for the user, in one line."""
    accepted = [a for a in result.submits if a.code == constants.SUCCESS_CODE]
    refused = [a for a in result.submits if a.code != constants.SUCCESS_CODE]
    failed_later = [a for a in result.results if a.code != constants.SUCCESS_CODE]
    if result.name == "base64_refs_v40":
        if refused or failed_later:
            return _(
                "v40 refused base64 references: character images must go as URLs; set "
                "{setting} (with [storage]) in asyncimg.toml"
            ).format(setting=URL_MODE)
        return _("v40 takes base64 references: the default reference mode works")
    if result.name == "unknown_field":
        if refused:
            return _("unknown fields are refused ({code}): run the emulator with --strict").format(
                code=refused[0].code
            )
        return _("unknown fields are ignored, as the emulator's default profile assumes")
    if result.name == "three_quick_submits":
        limits = [a for a in refused if a.code in (50429, 50430)]
        hit = ", ".join(str(a.code) for a in limits)
        if limits:
            return _(
                "{accepted} of 3 accepted back to back; limits hit: {codes}; "
                "set [defaults] max_in_flight / submit_rate to match"
            ).format(accepted=len(accepted), codes=hit)
        return _(
            "{accepted} of 3 accepted back to back; "
            "set [defaults] max_in_flight / submit_rate to match"
        ).format(accepted=len(accepted))
    if result.name == "out_of_range_size":
        codes = ", ".join(map(str, sorted({a.code for a in [*refused, *failed_later]}, key=str)))
        if refused:
            return _("refused at submit with {codes}").format(codes=codes)
        if failed_later:
            return _("refused at poll time with {codes}").format(codes=codes)
        return _("refused not at all")
    if result.name == "fake_task_id":
        answer = result.results[0] if result.results else None
        return (
            _("an unknown task id answers {answer}").format(answer=_short(answer)) if answer else ""
        )
    return ""


def summary_text(rows: Sequence[Row], endpoint: str, retention: str) -> str:
    """The report's text half, for a person."""
    lines = [_("asyncimg probe of {endpoint}").format(endpoint=endpoint), ""]
    for row in rows:
        mark = _("same as the emulator") if row.same else _("DIFFERS from the emulator")
        lines += [
            _("{check}: {verdict}").format(check=row.name, verdict=mark),
            _("  question: {text}").format(text=_(row.question)),
            _("  live:     {text}").format(text=row.live),
            _("  emulator: {text}").format(text=row.emulator),
        ]
        if row.advice:
            lines.append(_("  meaning:  {text}").format(text=row.advice))
        if row.where_to_fix:
            lines.append(_("  to fix:   {text}").format(text=_(row.where_to_fix)))
        lines.append("")
    lines.append(_("retention: {text}").format(text=retention))
    return "\n".join(lines) + "\n"


def report_json(
    rows: Sequence[Row],
    live: Sequence[CheckResult],
    emulated: Sequence[CheckResult],
    *,
    endpoint: str,
    retention: dict[str, Any],
    created_at: float,
) -> dict[str, Any]:
    return {
        "endpoint": endpoint,
        "created_at": created_at,
        "rows": [asdict(r) for r in rows],
        "live": [asdict(r) for r in live],
        "emulator": [asdict(r) for r in emulated],
        "retention": retention,
        "task_ids": [a.task_id for r in live for a in r.submits if a.task_id],
    }


async def retention_check(
    client: VisualClient, candidates: Sequence[tuple[str, str, float]], now: float
) -> dict[str, Any]:
    """Poll the oldest known task (task_id, req_key, submit time): is its result still held?
    The emulator (and the model pages) forget results after 12 h; the usage page says 24 h."""
    if not candidates:
        return {
            "skipped": N_(
                "no earlier task known; run the probe again after 12 h (it polls the "
                "tasks this run created, listed in the report)"
            )
        }
    task_id, req_key, submitted = min(candidates, key=lambda c: c[2])
    try:
        reply = await client.get_result(req_key, task_id)
        answer = f"{constants.SUCCESS_CODE} {reply.status.value}"
    except AsyncImgError as exc:
        answer = f"{exc.code} ({exc.message})"
    age_h = (now - submitted) / 3600
    return {
        "task_id": task_id,
        "age_hours": round(age_h, 2),
        "answer": answer,
        "emulator": N_("not_found after 12 h (retention_seconds)"),
    }


def retention_line(retention: dict[str, Any]) -> str:
    if "skipped" in retention:
        return _("skipped: {why}").format(why=_(str(retention["skipped"])))
    return _("task {task_id}, {age} h old, answers {answer} (emulator: {emulator})").format(
        task_id=retention["task_id"],
        age=retention["age_hours"],
        answer=retention["answer"],
        emulator=_(str(retention["emulator"])),
    )
