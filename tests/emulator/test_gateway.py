"""Signature verification and the gateway's error envelope (spec §2, §5)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from asyncimg.protocol import signing
from asyncimg.protocol.signing import Credentials

from .conftest import AK, RESULT, SK, SUBMIT, V40, Start

BODY = {"req_key": V40, "prompt": "a lighthouse at dusk"}


def _drop(name: str) -> Any:
    return lambda h: h.pop(name)


def _set(name: str, value: str) -> Any:
    return lambda h: h.__setitem__(name, value)


def _auth_replace(old: str, new: str) -> Any:
    def mutate(h: dict[str, str]) -> None:
        assert old in h["Authorization"]
        h["Authorization"] = h["Authorization"].replace(old, new)

    return mutate


async def test_valid_request_passes(start: Start) -> None:
    _, api = await start()
    reply = await api.call(SUBMIT, BODY)
    assert (reply.status, reply.code) == (200, 10000), reply


@pytest.mark.parametrize(
    ("mutate", "code", "code_n", "http"),
    [
        (_drop("Authorization"), "MissingAuthenticationToken", 100003, 401),
        (_set("Authorization", "garbage"), "InvalidAuthorization", 100024, 400),
        (_set("Authorization", "HMAC-SHA256 Credential=x"), "MissingSignature", 100005, 401),
        (_auth_replace("SignedHeaders=", "SignedHeaders=x;"), "InvalidAuthorization", 100024, 400),
        (_drop("X-Date"), "InvalidTimestamp", 100006, 400),
        (_set("X-Date", "2024-01-01 00:00:00"), "InvalidTimestamp", 100006, 400),
        (_auth_replace("/cn-north-1/", "/cn-beijing/"), "SignatureDoesNotMatch", 100010, 401),
        (_auth_replace("/cv/", "/iam/"), "InvalidCredential", 100025, 400),
        (_auth_replace("/request,", "/aws4_request,"), "InvalidCredential", 100025, 400),
        (_auth_replace(AK, "AKLTsomeoneelse"), "InvalidAccessKey", 100009, 401),
        (_set("X-Content-Sha256", "0" * 64), "SignatureDoesNotMatch", 100010, 401),
        (_set("Content-Type", "text/plain"), "SignatureDoesNotMatch", 100010, 401),
        (_set("Host", "localhost:1"), "SignatureDoesNotMatch", 100010, 401),
        (_set("X-Security-Token", "unexpected"), "InvalidSecretToken", 100026, 401),
    ],
    ids=[
        "no-auth",
        "garbage-auth",
        "incomplete-auth",
        "unsorted-signed-headers",
        "no-x-date",
        "bad-x-date",
        "region",
        "service",
        "terminator",
        "unknown-ak",
        "content-sha",
        "signed-header-changed",
        "host-changed",
        "token-not-expected",
    ],
)
async def test_gateway_rejects(
    start: Start, mutate: Any, code: str, code_n: int, http: int
) -> None:
    emu, api = await start()
    reply = await api.call(SUBMIT, BODY, mutate=mutate)
    assert reply.status == http, reply
    meta = reply.body["ResponseMetadata"]
    assert meta["Error"] == {"Code": code, "CodeN": code_n, "Message": meta["Error"]["Message"]}
    assert meta["Error"]["Message"]
    assert meta["Service"] == "cv"
    assert meta["Region"] in ("cn-north-1", "cn-beijing")  # the request's region is echoed
    assert (meta["Action"], meta["Version"]) == (SUBMIT, "2022-08-31")
    assert meta["RequestId"]
    assert SK not in str(reply.body)
    assert emu.stats()["tasks_submitted"] == 0


@pytest.mark.parametrize("skew", [-16 * 60, 16 * 60])
async def test_skewed_x_date(start: Start, skew: float) -> None:
    emu, api = await start()
    reply = await api.call(SUBMIT, BODY, now=emu.now() + skew)
    assert (reply.status, reply.error["Code"], reply.error["CodeN"]) == (
        400,
        "InvalidTimestamp",
        100006,
    )
    ok = await api.call(SUBMIT, BODY, now=emu.now() + 14 * 60)
    assert ok.code == 10000, ok


async def test_tampered_body(start: Start) -> None:
    _, api = await start()
    tampered = b'{"req_key": "jimeng_t2i_v40", "prompt": "something else"}'
    reply = await api.call(SUBMIT, BODY, send_body=tampered)
    assert (reply.status, reply.error["Code"]) == (401, "SignatureDoesNotMatch")


async def test_wrong_secret(start: Start) -> None:
    _, api = await start()
    reply = await api.call(SUBMIT, BODY, credentials=Credentials(AK, SK + "x"))
    assert (reply.status, reply.error["Code"], reply.error["CodeN"]) == (
        401,
        "SignatureDoesNotMatch",
        100010,
    )


async def test_signing_only_x_date_is_accepted(start: Start) -> None:
    _, api = await start()

    # A valid signature over x-date alone: the real gateway let it through (research S14).
    def resign(h: dict[str, str]) -> None:
        x_date = h["X-Date"]
        canonical = signing.canonical_request(
            "POST",
            "/",
            {"Action": SUBMIT, "Version": "2022-08-31"},
            h,
            ["x-date"],
            h["X-Content-Sha256"],
        )
        scope = f"{x_date[:8]}/cn-north-1/cv/request"
        key = signing.signing_key(SK, x_date[:8], "cn-north-1", "cv")
        sig = hmac.new(
            key, signing.string_to_sign(x_date, scope, canonical).encode(), hashlib.sha256
        ).hexdigest()
        h["Authorization"] = (
            f"HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders=x-date, Signature={sig}"
        )

    reply = await api.call(SUBMIT, BODY, mutate=resign)
    assert (reply.status, reply.code) == (200, 10000), reply


async def test_wrong_region_is_a_signature_mismatch_naming_it(start: Start) -> None:
    """Research finding 5 / S14: cn-beijing in the scope got SignatureDoesNotMatch (100010),
    with the region echoed; main answered InvalidCredential."""
    _, api = await start()
    reply = await api.call(SUBMIT, BODY, mutate=_auth_replace("/cn-north-1/", "/cn-beijing/"))
    meta = reply.body["ResponseMetadata"]
    assert (reply.status, meta["Error"]["Code"], meta["Error"]["CodeN"]) == (
        401,
        "SignatureDoesNotMatch",
        100010,
    )
    assert meta["Region"] == "cn-beijing"
    assert "Check your Secret Access Key and signing method" in meta["Error"]["Message"]


async def test_session_token_rules(start: Start) -> None:
    _, api = await start(session_token="sts-token-1")
    ok = await api.call(SUBMIT, BODY, credentials=Credentials(AK, SK, "sts-token-1"))
    assert ok.code == 10000, ok
    for creds in (Credentials(AK, SK), Credentials(AK, SK, "sts-token-2")):
        reply = await api.call(SUBMIT, BODY, credentials=creds)
        assert (reply.status, reply.error["Code"], reply.error["CodeN"]) == (
            401,
            "InvalidSecretToken",
            100026,
        )


@pytest.mark.parametrize(
    "query",
    [
        {"Action": "CVSubmitTask", "Version": "2022-08-31"},
        {"Action": SUBMIT, "Version": "2024-06-06"},
        {"Action": RESULT},
        {"Version": "2022-08-31"},
    ],
)
async def test_bad_action_or_version(start: Start, query: dict[str, str]) -> None:
    _, api = await start()
    reply = await api.call(SUBMIT, BODY, query=query)
    assert (reply.status, reply.error["Code"], reply.error["CodeN"]) == (
        404,
        "InvalidActionOrVersion",
        100008,
    )


async def test_gateway_errors_in_stats(start: Start) -> None:
    emu, api = await start()
    await api.call(SUBMIT, BODY, credentials=Credentials(AK, "wrong"))
    await api.call(SUBMIT, BODY, query={"Action": "Nope", "Version": "2022-08-31"})
    errors = emu.stats()["errors"]
    assert errors == {"SignatureDoesNotMatch": 1, "InvalidActionOrVersion": 1}
