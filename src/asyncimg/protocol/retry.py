"""Retry decisions as pure functions, so the policy is read and tested in one place."""

from __future__ import annotations

from asyncimg import constants
from asyncimg.protocol.errors import (
    AsyncImgError,
    ConnectFailed,
    NetworkError,
    ReplyUnreadable,
    ServerError,
)


def should_retry(error: AsyncImgError, *, action: str, attempt: int, max_attempts: int) -> bool:
    """Whether the client should repeat this call itself after `attempt` tries (1-based).

    Polling and downloading are always safe to repeat. A submit is repeated only when the
    service answered and so certainly created no task: never after a network failure,
    where the task may exist (a blind resubmit bills twice). A concurrency limit is not
    repeated here either: capacity frees in minutes, so the caller queues the task.
    """
    if attempt >= max_attempts or not error.retryable:
        return False
    if action == constants.ACTION_SUBMIT:
        return error.code in SUBMIT_SAFE_TO_REPEAT
    return True


# Replies to a submit that certainly created no task, so repeating it cannot bill twice:
# the service's own refusals (business codes) and the gateway's "did not forward it". Every
# other failure (no reply, a proxy's HTML 5xx, a gateway timeout, a success without a
# task id) may hide a created task; the record stays pending and the next pass decides.
SUBMIT_SAFE_TO_REPEAT = frozenset(
    {50429, 50500, 50501, "FlowLimitExceeded", "ServiceUnavailableTemp"}
)


def submit_outcome_unknown(error: AsyncImgError) -> bool:
    """Whether a failed submit may still have created (and billed) a task.

    Certainly not: a business code (a reply with a code other than 10000 never carries a
    task), a gateway refusal before forwarding, a connection that was never made. Maybe:
    no reply or a timeout after sending, a reply we cannot read, a gateway that failed
    after forwarding (InternalError, InternalServiceTimeout, InternalServiceError).
    """
    if isinstance(error, ConnectFailed):
        return False
    if isinstance(error, NetworkError | ReplyUnreadable):
        return True
    if isinstance(error, ServerError):
        return not isinstance(error.code, int) and error.code not in SUBMIT_SAFE_TO_REPEAT
    return False


def retry_delay(
    attempt: int,
    *,
    base: float = constants.RETRY_BASE_DELAY_S,
    cap: float = constants.RETRY_MAX_DELAY_S,
    jitter: float = 1.0,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before try `attempt + 1`: exponential and capped, with "equal jitter"
    (`jitter` in [0, 1] picks a point in the upper half, so waits never collapse to zero).
    A server's Retry-After wins when it asks for longer.
    """
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    delay = ceiling * (0.5 + 0.5 * max(0.0, min(1.0, jitter)))
    if retry_after is not None:
        return max(delay, retry_after)
    return delay
