"""Signing reproduces the official SDK's vectors byte for byte.

tests/data/volc_sign_vectors.json is a copy of shared/spec (a user's clone has no ../shared).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncimg.protocol import signing
from asyncimg.protocol.signing import Credentials

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "volc_sign_vectors.json").read_text())


def _sign(vector: dict[str, Any]) -> signing.Signature:
    inp = vector["inputs"]
    return signing.sign(
        method=inp["method"],
        host=inp["host"],
        path=inp["path"],
        query=inp["query"],
        body=inp["body_exact_string"].encode(),
        credentials=Credentials(
            inp["access_key_id"], inp["secret_access_key"], inp["session_token"]
        ),
        region=inp["region"],
        service=inp["service"],
        now=datetime.fromisoformat(inp["frozen_time_utc"].replace("Z", "+00:00")),
        headers={"Content-Type": "application/json"},
        scheme=inp["scheme"],
    )


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector_reproduced_exactly(vector: dict[str, Any]) -> None:
    sig = _sign(vector)
    assert sig.x_date == vector["x_date"]
    assert sig.content_sha256 == vector["x_content_sha256"]
    assert sig.canonical_request == vector["canonical_request"]
    assert signing.sha256_hex(sig.canonical_request.encode()) == vector["canonical_request_sha256"]
    assert sig.credential_scope == vector["credential_scope"]
    assert sig.string_to_sign == vector["string_to_sign"]
    assert sig.signing_key.hex() == vector["signing_key_hex"]
    assert sig.signed_headers == vector["signed_headers"]
    assert sig.signature == vector["signature"]
    assert sig.authorization == vector["authorization"]
    for name, value in vector["signed_headers_only"].items():
        assert sig.headers[name] == value


def test_there_are_vectors_and_one_has_a_session_token() -> None:
    assert len(VECTORS["vectors"]) >= 3
    assert any(v["inputs"]["session_token"] for v in VECTORS["vectors"])


def test_default_ports_are_dropped_other_ports_kept() -> None:
    assert signing.canonical_host("example.com:443", "https") == "example.com"
    assert signing.canonical_host("example.com:80", "http") == "example.com"
    assert signing.canonical_host("127.0.0.1:8808", "http") == "127.0.0.1:8808"
    assert signing.canonical_host("example.com:80", "https") == "example.com:80"


def test_canonical_query_sorts_and_encodes() -> None:
    assert signing.canonical_query({"b": "x y", "A": "1/2~"}) == "A=1%2F2~&b=x%20y"


def test_secret_never_in_repr() -> None:
    creds = Credentials("AKLTvisible", "hidden-secret-value", "hidden-token")
    assert "hidden" not in repr(creds)
    sig = signing.sign(
        method="POST",
        host="h",
        path="/",
        query={},
        body=b"",
        credentials=creds,
        region="cn-north-1",
        service="cv",
        now=datetime(2025, 1, 1),
    )
    assert "hidden" not in repr(sig)
    assert sig.content_sha256 == signing.EMPTY_BODY_SHA256


@given(
    body=st.binary(max_size=200),
    query=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4),
)
def test_verifier_accepts_what_signer_signs(body: bytes, query: dict[str, str]) -> None:
    creds = Credentials("AK", "SK", "tok")
    sig = signing.sign(
        method="POST",
        host="127.0.0.1:9999",
        path="/",
        query=query,
        body=body,
        credentials=creds,
        region="cn-north-1",
        service="cv",
        now=datetime(2025, 5, 6, 7, 8, 9),
        headers={"Content-Type": "application/json", "User-Agent": "x"},
        scheme="http",
    )
    auth = signing.parse_authorization(sig.headers["Authorization"])
    assert "user-agent" not in auth.signed_headers
    assert "x-security-token" in auth.signed_headers
    expected = signing.expected_signature(
        method="POST",
        path="/",
        query=query,
        headers=sig.headers,
        auth=auth,
        secret_key="SK",
        x_date=sig.x_date,
        content_sha256=signing.sha256_hex(body),
    )
    assert expected == sig.signature
    wrong = signing.expected_signature(
        method="POST",
        path="/",
        query=query,
        headers=sig.headers,
        auth=auth,
        secret_key="SK2",
        x_date=sig.x_date,
        content_sha256=signing.sha256_hex(body),
    )
    assert wrong != sig.signature
