"""Fault injection: a seeded random plan plus a queue of faults tests ask for explicitly."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from asyncimg import constants


class FaultKind(StrEnum):
    SERVER_ERROR = "server_error"
    SLOW = "slow"
    DROP = "drop"
    REVIEW_FAILURE = "review_failure"
    NO_IMAGE = "no_image"
    TRUNCATED_IMAGE = "truncated_image"
    BASE64_ONLY = "base64_only"  # done with URLs asked for, yet only base64 comes (spec §4)
    EXPIRED_URL = "expired_url"  # an image URL answers 403, as a CDN does past its signature
    # Our own request refused, as a proxy that mangles requests would cause: the gateway's
    # MissingParameter (HTTP 400), or the service's 50200 parameter error.
    GATEWAY_REFUSAL = "gateway_refusal"
    PARAM_ERROR = "param_error"
    # Accepted at submit, then 50215 "Input invalid for this service." (HTTP 400) at poll.
    LATE_INVALID = "late_invalid"
    # Accepted at submit, then a review service's internal error (50520-50522, HTTP 400).
    REVIEW_INTERNAL_ERROR = "review_internal_error"
    # A limit answer whatever the load: 50429 (QPS), or on a submit 50429 and 50430
    # (concurrency) in turn. Like the real limits, it never creates a task.
    LIMIT = "limit"
    # One image download answers with its first half only (a connection cut mid-body):
    # unlike `truncated_image`, the next download of the same image is whole.
    TRUNCATED_BODY = "truncated_body"
    # The submit creates (and bills) a task, but its reply carries a hostile task id instead
    # of the real one: the next of HOSTILE_TASK_IDS, in turn.
    HOSTILE_TASK_ID = "hostile_task_id"
    # A poll of a finished task answers success with a hostile `data`: the next of
    # HOSTILE_RESULTS, in turn (image_urls as a bare string, data null, ...).
    HOSTILE_RESULT = "hostile_result"

    @property
    def image_only(self) -> bool:
        """Faults that only make sense on an image download."""
        return self in IMAGE_ONLY

    @property
    def injected_only(self) -> bool:
        """Faults a test asks for explicitly; never drawn at random (`--fault-rate`)."""
        return self in INJECTED_ONLY

    @property
    def is_task_outcome(self) -> bool:
        """Task-outcome faults are decided once, at submit, and show when the task is done."""
        return self in TASK_FAULTS


TASK_FAULTS = frozenset(
    {
        FaultKind.REVIEW_FAILURE,
        FaultKind.NO_IMAGE,
        FaultKind.TRUNCATED_IMAGE,
        FaultKind.BASE64_ONLY,
        FaultKind.LATE_INVALID,
        FaultKind.REVIEW_INTERNAL_ERROR,
    }
)
#: What `--fault-rate` draws from unless `--fault-kinds` says otherwise: every kind but the
#: ones added with the research (opt-in, so an existing `--seed` replays the same faults).
DEFAULT_KINDS = frozenset(FaultKind) - {FaultKind.LATE_INVALID, FaultKind.REVIEW_INTERNAL_ERROR}
IMAGE_ONLY = frozenset({FaultKind.EXPIRED_URL, FaultKind.TRUNCATED_BODY})
INJECTED_ONLY = frozenset(
    {
        FaultKind.EXPIRED_URL,
        FaultKind.GATEWAY_REFUSAL,
        FaultKind.PARAM_ERROR,
        FaultKind.HOSTILE_TASK_ID,
        FaultKind.HOSTILE_RESULT,
    }
)
# What a `hostile_task_id` reply carries instead of the task id, in turn: paths, an empty
# id, a huge one, control and bidi characters, and other JSON types than a string.
HOSTILE_TASK_IDS: tuple[object, ...] = (
    "../../../escape",
    "a/b\\c",
    "",
    "x" * 5000,
    "\u202e\n\x00id",
    12345,
    ["7392616336519610409"],
    None,
)
# The shapes a `hostile_result` reply gives a finished task's `data` (see hostile_result()).
HOSTILE_RESULTS = (
    "urls_as_string",
    "data_null",
    "status_number",
    "urls_file_scheme",
    "urls_numbers",
    "base64_garbage",
)
REQUEST_FAULTS = frozenset(k for k in FaultKind if not k.image_only) - TASK_FAULTS
# What an image download can suffer when drawn at random (`image_fault_rate`).
IMAGE_FAULTS = frozenset(
    {FaultKind.SERVER_ERROR, FaultKind.DROP, FaultKind.SLOW, FaultKind.TRUNCATED_BODY}
)
# The pseudo-action that targets `GET /_emulator/images/...` with inject(kind, action=...).
IMAGE_ACTION = "image"


@dataclass
class _Injected:
    kind: FaultKind
    remaining: int
    action: str | None


class FaultPlan:
    """Decides which fault, if any, hits a request or a new task.

    Injected faults come first, in the order they were queued; otherwise one draw of the
    seeded RNG per request (and one per submitted task) decides, so a seed replays exactly.
    """

    def __init__(
        self,
        rate: float,
        kinds: frozenset[FaultKind],
        seed: int | None,
        image_rate: float = 0.0,
    ) -> None:
        self.rate = rate
        self.image_rate = image_rate
        self._request_kinds = sorted((kinds & REQUEST_FAULTS) - INJECTED_ONLY)
        self._task_kinds = sorted(kinds & TASK_FAULTS)
        self._image_kinds = sorted(kinds & IMAGE_FAULTS)
        self._rng = random.Random(None if seed is None else f"{seed}:faults")
        # Its own stream, so turning image faults on replays the same request faults.
        self._image_rng = random.Random(None if seed is None else f"{seed}:image-faults")
        self._queue: list[_Injected] = []
        self._server_error_flip = False
        self._limit_flip = False
        self.hostile_next = 0  # index into HOSTILE_TASK_IDS of the next hostile reply
        self.hostile_result_next = 0  # index into HOSTILE_RESULTS
        self.fired: Counter[str] = Counter()

    def inject(self, kind: FaultKind | str, count: int = 1, action: str | None = None) -> None:
        kind = FaultKind(kind)
        if count < 1:
            raise ValueError("count must be at least 1")
        if action is not None and action not in (
            constants.ACTION_SUBMIT,
            constants.ACTION_GET_RESULT,
            IMAGE_ACTION,
        ):
            raise ValueError(f"unknown action {action!r}")
        if kind.is_task_outcome and action not in (None, constants.ACTION_SUBMIT):
            raise ValueError(f"{kind} is decided at submit; action must be the submit action")
        if kind.image_only and action != IMAGE_ACTION:
            raise ValueError(f"{kind} applies to image downloads; action must be {IMAGE_ACTION!r}")
        self._queue.append(_Injected(kind, count, action))

    def _take(self, action: str, task_outcome: bool) -> FaultKind | None:
        for item in self._queue:
            if item.kind.is_task_outcome != task_outcome:
                continue
            # A fault queued without an action hits the next API request, never an image.
            wanted = item.action if item.action is not None or action == IMAGE_ACTION else action
            if wanted != action:
                continue
            item.remaining -= 1
            if item.remaining == 0:
                self._queue.remove(item)
            return item.kind
        return None

    def _draw(self, kinds: list[FaultKind]) -> FaultKind | None:
        hit = self._rng.random() < self.rate
        pick = self._rng.randrange(len(kinds)) if kinds else 0
        return kinds[pick] if hit and kinds else None

    def for_request(self, action: str) -> FaultKind | None:
        kind = self._take(action, task_outcome=False) or self._draw(self._request_kinds)
        if kind:
            self.fired[kind.value] += 1
        return kind

    def for_image(self) -> FaultKind | None:
        """Injected faults (action="image"), else one draw at `image_rate` (0 by default:
        image downloads then get injected faults only)."""
        kind = self._take(IMAGE_ACTION, task_outcome=False)
        rate, kinds = self.image_rate, self._image_kinds
        if kind is None and rate > 0 and kinds and self._image_rng.random() < rate:
            kind = kinds[self._image_rng.randrange(len(kinds))]
        if kind:
            self.fired[kind.value] += 1
        return kind

    def for_task(self) -> FaultKind | None:
        kind = self._take(constants.ACTION_SUBMIT, task_outcome=True) or self._draw(
            self._task_kinds
        )
        if kind:
            self.fired[kind.value] += 1
        return kind

    def server_error_is_gateway(self) -> bool:
        """Server errors alternate between the business 50500 and the gateway's InternalError."""
        self._server_error_flip = not self._server_error_flip
        return not self._server_error_flip

    def hostile_task_id(self) -> object:
        """The next value a `hostile_task_id` reply carries as its task id."""
        value = HOSTILE_TASK_IDS[self.hostile_next % len(HOSTILE_TASK_IDS)]
        self.hostile_next += 1
        return value

    def hostile_result(self, data: dict[str, object]) -> dict[str, object] | None:
        """The next hostile shape of a finished task's poll reply `data`."""
        shape = HOSTILE_RESULTS[self.hostile_result_next % len(HOSTILE_RESULTS)]
        self.hostile_result_next += 1
        urls = data.get("image_urls")
        first = urls[0] if isinstance(urls, list) and urls else "http://127.0.0.1:9/x.png"
        if shape == "urls_as_string":
            return {**data, "image_urls": first}
        if shape == "data_null":
            return None
        if shape == "status_number":
            return {**data, "status": 2}
        if shape == "urls_file_scheme":
            return {"status": "done", "image_urls": ["file:///etc/passwd"]}
        if shape == "urls_numbers":
            return {"status": "done", "image_urls": [12345]}
        return {"status": "done", "binary_data_base64": ["!!! not base64 !!!"]}

    def limit_code(self, action: str) -> int:
        """The code a `limit` fault answers: 50429 on a poll; 50429 and 50430 in turn on a
        submit."""
        if action != constants.ACTION_SUBMIT:
            return 50429
        self._limit_flip = not self._limit_flip
        return 50430 if self._limit_flip else 50429
