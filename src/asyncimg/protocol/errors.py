"""One error tree for everything the API (or the way to it) can say, spec §5.

Every error carries `code`, `message`, `request_id` and two answers a caller needs:
`retryable` (repeating the same call later can help) and `resubmittable` (a new task
with the same parameters can help). :func:`classify_business` and
:func:`classify_gateway` are the only places a wire code becomes a kind.
"""

from __future__ import annotations

from asyncimg.i18n import N_, _


class AsyncImgError(Exception):
    """Base of every error asyncimg raises on purpose."""

    retryable: bool = False
    resubmittable: bool = False
    hint: str = ""
    unrecognised: bool = False
    """A wire code this table does not know: its meaning for the task is unknown."""

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        resubmittable: bool | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.http_status = http_status
        if retryable is not None:
            self.retryable = retryable
        if resubmittable is not None:
            self.resubmittable = resubmittable

    def __str__(self) -> str:
        parts = [self.message]
        if self.code is not None:
            parts.append(f"(code {self.code})")
        if self.request_id:
            parts.append(f"[request_id {self.request_id}]")
        return " ".join(parts)

    @property
    def kind(self) -> str:
        return type(self).__name__


class ConfigError(AsyncImgError):
    """Local configuration is missing or wrong (credentials, config file, options)."""


def not_set(names: list[str], todo: str) -> ConfigError:
    """ "A and B are not set: <todo>" (environment variables), in the user's language."""
    template = (
        _("{names} is not set: {todo}") if len(names) == 1 else _("{names} are not set: {todo}")
    )
    return ConfigError(template.format(names=_(" and ").join(names), todo=todo))


class AuthError(AsyncImgError):
    """Credentials, signature, clock or permission: fix the setup, then try again."""

    hint = N_("check VOLC_ACCESSKEY / VOLC_SECRETKEY, the system clock and the model's activation")


class InputRejected(AsyncImgError):
    """The request's input was refused (validation or content review): change it first."""

    hint = N_("fix the prompt, parameters or reference images, then retry")


class InvalidInput(InputRejected):
    """Local validation failed before anything was sent; names the field, value and rule."""

    def __init__(
        self,
        field: str,
        value: object,
        rule: str,
        suggestion: str | None = None,
        *,
        code: int | str | None = 50200,
    ) -> None:
        shown = repr(value)
        # Cut only what is too long to be useful (base64, a pasted essay): a file path
        # must stay whole, or the user cannot tell which reference image is missing.
        if len(shown) > 300:
            shown = shown[:297] + "..."
        text = f"{field}={shown}: {rule}"
        if suggestion:
            text += f"; {suggestion}"
        super().__init__(text, code=code)
        self.field = field
        self.value = value
        self.rule = rule
        self.suggestion = suggestion


class OutputRejected(AsyncImgError):
    """The generated image failed review (50511/50519): a new submission may pass."""

    resubmittable = True
    hint = N_("resubmit (asyncimg retry); rephrase the prompt if it keeps failing")


class RateLimited(AsyncImgError):
    """Too many requests per second (50429 or the gateway's FlowLimitExceeded)."""

    retryable = True
    hint = N_("back off and try again")


class ConcurrencyLimited(AsyncImgError):
    """Too many unfinished tasks on the account (50430): wait for capacity."""

    retryable = True
    hint = N_("queued locally; it is submitted when running tasks finish")


class RequestRefused(AsyncImgError):
    """The gateway refused our request itself (missing parameter, unknown action, a poll
    body it cannot read): a client bug or something in the way, never one task's fault."""

    hint = N_("asyncimg's request was refused as malformed; check ASYNCIMG_ENDPOINT and any proxy")


class ServerError(AsyncImgError):
    """The service failed internally (50500/50501, gateway 5xx)."""

    retryable = True
    hint = N_("temporary server problem; the next pass tries again")


class ReplyUnreadable(ServerError):
    """A reply we cannot use: not JSON (a proxy's page), no business code, a success
    without a task id, a poll without data or with an unknown status."""


class NetworkError(AsyncImgError):
    """The request did not complete: connection dropped, timeout after sending."""

    retryable = True
    hint = N_("network problem; the next pass tries again")


class ConnectFailed(NetworkError):
    """No connection was made (refused, unreachable, connect timeout): nothing was sent."""


class NoProgress(AsyncImgError):
    """An accepted task's polls made no progress for too long (no data, an unknown status,
    an image that would not download)."""

    resubmittable = True
    hint = N_("asyncimg retry polls it again (no new submission while the service keeps it, ~12 h)")


class TaskGone(AsyncImgError):
    """The service no longer knows the task (`not_found`) or its result expired."""

    resubmittable = True
    hint = N_("the result is gone; resubmit with asyncimg retry")


class EmptyResult(AsyncImgError):
    """The task reported `done` with no image in the reply."""

    resubmittable = True
    hint = N_("resubmit with asyncimg retry")


_BUSINESS: dict[int, tuple[type[AsyncImgError], str]] = {
    50411: (InputRejected, "input image failed review"),
    50412: (InputRejected, "input text failed review"),
    50413: (InputRejected, "input text contains sensitive or copyrighted words"),
    50518: (InputRejected, "input image matched copyrighted material"),
    50512: (InputRejected, "output text failed review"),
    50200: (InputRejected, "parameter rejected"),
    # The documented invalid-input code; it may come after a good submit, at poll time.
    50215: (InputRejected, "Input invalid for this service."),
    50204: (InputRejected, "req_key not supported"),
    50511: (OutputRejected, "output image failed review"),
    50519: (OutputRejected, "output image matched a copyrighted image"),
    50429: (RateLimited, "QPS limit reached"),
    50430: (ConcurrencyLimited, "concurrency limit reached"),
    50500: (ServerError, "internal error"),
    50501: (ServerError, "internal error"),
    50400: (AuthError, "access denied: model not activated or permission missing"),
}

# Review services' internal errors: server-side, but the spec says not to retry them.
_NOT_RETRYABLE_SERVER = {50520, 50521, 50522}

_GATEWAY: dict[str, type[AsyncImgError]] = {
    "MissingParameter": RequestRefused,
    "MissingRequestInfo": RequestRefused,
    "InvalidActionOrVersion": RequestRefused,
    "ServiceNotFound": RequestRefused,
    "MissingAuthenticationToken": AuthError,
    "MissingSignature": AuthError,
    "LackPolicy": AuthError,
    "InvalidAuthorization": AuthError,
    "InvalidCredential": AuthError,
    "InvalidTimestamp": AuthError,
    "InvalidAccessKey": AuthError,
    "SignatureDoesNotMatch": AuthError,
    "InvalidSecretToken": AuthError,
    "AccessDenied": AuthError,
    "InternalError": ServerError,
    "InternalServiceTimeout": ServerError,
    "FlowLimitExceeded": RateLimited,
    "ServiceUnavailableTemp": ServerError,
    "InternalServiceError": ServerError,
}


def classify_business(
    code: int, message: str, request_id: str | None, http_status: int | None = None
) -> AsyncImgError:
    """The error for a business envelope whose `code` is not 10000."""
    if code in _NOT_RETRYABLE_SERVER:
        return ServerError(
            message or "review service internal error",
            code=code,
            request_id=request_id,
            retryable=False,
            http_status=http_status,
        )
    known = _BUSINESS.get(code)
    kind, default = known or (_fallback_kind(http_status), "unexpected error code")
    error = kind(message or default, code=code, request_id=request_id, http_status=http_status)
    error.unrecognised = known is None
    return error


def classify_gateway(
    code: str, message: str, request_id: str | None, http_status: int | None = None
) -> AsyncImgError:
    """The error for a `ResponseMetadata.Error` envelope."""
    kind = _GATEWAY.get(code) or _gateway_fallback(http_status)
    error = kind(message or code, code=code, request_id=request_id, http_status=http_status)
    error.unrecognised = code not in _GATEWAY
    return error


def _gateway_fallback(http_status: int | None) -> type[AsyncImgError]:
    """An unlisted gateway code: the gateway answers before the service sees the request,
    so a 4xx is about our request or our setup, never about a task."""
    kind = _fallback_kind(http_status)
    return RequestRefused if kind is InputRejected else kind


def _fallback_kind(http_status: int | None) -> type[AsyncImgError]:
    if http_status is None or http_status >= 500:
        return ServerError
    if http_status == 429:
        return RateLimited
    if http_status in (401, 403):
        return AuthError
    return InputRejected
