"""Every wire code maps to the kind the spec's retry column implies."""

from __future__ import annotations

import pytest

from asyncimg.protocol import errors as E


@pytest.mark.parametrize(
    ("code", "kind", "retryable", "resubmittable"),
    [
        (50411, E.InputRejected, False, False),
        (50412, E.InputRejected, False, False),
        (50413, E.InputRejected, False, False),
        (50518, E.InputRejected, False, False),
        (50512, E.InputRejected, False, False),
        (50200, E.InputRejected, False, False),
        (50215, E.InputRejected, False, False),  # research §3: the documented invalid input
        (50511, E.OutputRejected, False, True),
        (50519, E.OutputRejected, False, True),
        (50429, E.RateLimited, True, False),
        (50430, E.ConcurrencyLimited, True, False),
        (50500, E.ServerError, True, False),
        (50501, E.ServerError, True, False),
        (50520, E.ServerError, False, False),
        (50521, E.ServerError, False, False),
        (50522, E.ServerError, False, False),
        (50400, E.AuthError, False, False),
    ],
)
def test_business_codes(
    code: int, kind: type[E.AsyncImgError], retryable: bool, resubmittable: bool
) -> None:
    err = E.classify_business(code, "msg", "rid-1", 400)
    assert type(err) is kind
    assert (err.retryable, err.resubmittable) == (retryable, resubmittable)
    assert err.code == code and err.request_id == "rid-1" and err.message == "msg"
    assert "rid-1" in str(err) and str(code) in str(err)


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [
        ("MissingParameter", E.RequestRefused, False),
        ("MissingRequestInfo", E.RequestRefused, False),
        ("InvalidActionOrVersion", E.RequestRefused, False),
        ("ServiceNotFound", E.RequestRefused, False),
        ("MissingAuthenticationToken", E.AuthError, False),
        ("MissingSignature", E.AuthError, False),
        ("LackPolicy", E.AuthError, False),
        ("InvalidTimestamp", E.AuthError, False),
        ("InvalidAccessKey", E.AuthError, False),
        ("SignatureDoesNotMatch", E.AuthError, False),
        ("InvalidSecretToken", E.AuthError, False),
        ("AccessDenied", E.AuthError, False),
        ("InternalError", E.ServerError, True),
        ("InternalServiceTimeout", E.ServerError, True),
        ("FlowLimitExceeded", E.RateLimited, True),
        ("ServiceUnavailableTemp", E.ServerError, True),
        ("InternalServiceError", E.ServerError, True),
    ],
)
def test_gateway_codes(code: str, kind: type[E.AsyncImgError], retryable: bool) -> None:
    err = E.classify_gateway(code, "", "rid", 401)
    assert type(err) is kind and err.retryable is retryable
    assert err.message == code  # an empty message falls back to the code


@pytest.mark.parametrize(
    ("status", "kind"),
    [(503, E.ServerError), (429, E.RateLimited), (401, E.AuthError), (400, E.InputRejected)],
)
def test_unknown_codes_fall_back_on_http_status(status: int, kind: type[E.AsyncImgError]) -> None:
    assert type(E.classify_business(59999, "", None, status)) is kind
    # The gateway answers before the service sees the request: an unlisted 4xx from it is
    # about our request, never about a task.
    gateway = E.RequestRefused if kind is E.InputRejected else kind
    assert type(E.classify_gateway("SomethingNew", "", None, status)) is gateway


def test_every_kind_shares_one_base() -> None:
    kinds = [
        E.AuthError, E.InputRejected, E.InvalidInput, E.OutputRejected, E.RateLimited,
        E.ConcurrencyLimited, E.ServerError, E.NetworkError, E.TaskGone, E.EmptyResult,
        E.ConfigError,
    ]  # fmt: skip
    assert all(issubclass(k, E.AsyncImgError) for k in kinds)


def test_invalid_input_names_field_value_rule_and_fix() -> None:
    err = E.InvalidInput("width x height", "720x1280", "area too small", "try 1440x2560")
    assert str(err) == "width x height='720x1280': area too small; try 1440x2560 (code 50200)"
    assert err.field == "width x height" and err.suggestion == "try 1440x2560"
