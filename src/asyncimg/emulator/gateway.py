"""What the API gateway does before a request reaches the service: signature checks, envelopes."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncimg import constants
from asyncimg.protocol import signing

GATEWAY_CODES: dict[str, tuple[int, int]] = {
    "MissingParameter": (100002, 400),
    "MissingAuthenticationToken": (100003, 401),
    "MissingRequestInfo": (100004, 400),
    "MissingSignature": (100005, 401),
    "InvalidTimestamp": (100006, 400),
    "ServiceNotFound": (100007, 404),
    "InvalidActionOrVersion": (100008, 404),
    "InvalidAccessKey": (100009, 401),
    "SignatureDoesNotMatch": (100010, 401),
    "LackPolicy": (100012, 403),
    "AccessDenied": (100013, 403),
    "InternalError": (100014, 500),
    "InvalidAuthorization": (100024, 400),
    "InvalidCredential": (100025, 400),
    "InvalidSecretToken": (100026, 401),
}

# The real gateway let through a request that signed x-date alone (research S14).
_REQUIRED_SIGNED = ("x-date",)


class GatewayError(Exception):
    """A request the gateway refuses; `code` is one of :data:`GATEWAY_CODES`."""

    def __init__(self, code: str, message: str, region: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.code_n, self.http_status = GATEWAY_CODES[code]
        self.region = region
        """The region the request named, echoed in the envelope as the gateway does."""


def new_request_id(now: float) -> str:
    """Shaped like the service's ids: a UTC timestamp and random hex (not from the seeded RNG)."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S")
    return stamp + secrets.token_hex(9).upper()


def gateway_envelope(
    error: GatewayError, request_id: str, action: str, version: str
) -> dict[str, Any]:
    return {
        "ResponseMetadata": {
            "RequestId": request_id,
            "Action": action,
            "Version": version,
            "Service": constants.SERVICE,
            "Region": error.region or constants.REGION,
            "Error": {"Code": error.code, "CodeN": error.code_n, "Message": error.message},
        }
    }


def _signed_host(host: str) -> str:
    """The official SDK drops :80 and :443 from the signed host whatever the scheme."""
    return signing.canonical_host(signing.canonical_host(host, "http"), "https")


def verify_request(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    now: float,
    max_skew: float,
) -> None:
    """Check a request's signature the way the gateway does; raises :class:`GatewayError`."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise GatewayError(
            "MissingAuthenticationToken", "The request is missing the Authorization header."
        )
    if authorization.startswith(signing.ALGORITHM) and "Signature=" not in authorization:
        raise GatewayError("MissingSignature", "The Authorization header has no Signature.")
    try:
        auth = signing.parse_authorization(authorization)
    except ValueError as exc:
        raise GatewayError(
            "InvalidAuthorization", f"Invalid Authorization header: {exc}."
        ) from None
    missing = [h for h in _REQUIRED_SIGNED if h not in auth.signed_headers]
    if missing or auth.signed_headers != sorted(auth.signed_headers):
        raise GatewayError(
            "InvalidAuthorization",
            "SignedHeaders must be sorted and include " + ", ".join(_REQUIRED_SIGNED) + ".",
        )

    x_date = headers.get("X-Date", "")
    try:
        moment = signing.parse_x_date(x_date)
    except ValueError:
        raise GatewayError(
            "InvalidTimestamp", "The X-Date header is missing or not YYYYMMDDTHHMMSSZ."
        ) from None
    if abs(moment.timestamp() - now) > max_skew:
        raise GatewayError(
            "InvalidTimestamp",
            f"The request timestamp {x_date} is more than {max_skew:g} s from the server time.",
        )

    if auth.region != constants.REGION:
        # Observed: a wrong region is a signature mismatch, with that region echoed (S14).
        raise GatewayError("SignatureDoesNotMatch", _MISMATCH, region=auth.region)
    if (
        auth.service != constants.SERVICE
        or auth.terminator != signing.TERMINATOR
        or auth.short_date != x_date[:8]
    ):
        raise GatewayError(
            "InvalidCredential",
            f"The credential scope must be {x_date[:8]}/{constants.REGION}/"
            f"{constants.SERVICE}/{signing.TERMINATOR}.",
        )
    if not hmac.compare_digest(auth.access_key.encode(), access_key.encode()):
        raise GatewayError("InvalidAccessKey", "The access key is not known.")

    token = headers.get("X-Security-Token")
    if session_token is None and token is not None:
        raise GatewayError("InvalidSecretToken", "A session token was sent but none is expected.")
    if session_token is not None and (
        token is None or not hmac.compare_digest(token.encode(), session_token.encode())
    ):
        raise GatewayError("InvalidSecretToken", "The session token is missing or invalid.")

    body_hash = signing.sha256_hex(body)
    claimed = headers.get("X-Content-Sha256")
    if claimed is not None and claimed != body_hash:
        raise GatewayError(
            "SignatureDoesNotMatch", "X-Content-Sha256 does not match the request body."
        )

    signed_values = {name: headers.get(name, "") for name in auth.signed_headers}
    if "host" in signed_values:
        signed_values["host"] = _signed_host(signed_values["host"])
    expected = signing.expected_signature(
        method=method,
        path=path,
        query=query,
        headers=signed_values,
        auth=auth,
        secret_key=secret_key,
        x_date=x_date,
        content_sha256=body_hash,
    )
    if not hmac.compare_digest(expected, auth.signature):
        raise GatewayError("SignatureDoesNotMatch", _MISMATCH)


# The real gateway's words (S14).
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
