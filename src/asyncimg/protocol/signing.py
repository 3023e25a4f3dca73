"""Volcengine's HMAC-SHA256 ("V4" style) request signing, spec §2.

Used by the client to sign and by the emulator to verify, so both share one
definition of the canonical request. Pure functions: the clock is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "HMAC-SHA256"
TERMINATOR = "request"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An access key pair, optionally with an STS session token. Secrets stay out of repr."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ValueError("Credentials need both an access key and a secret key")


@dataclass(frozen=True)
class Signature:
    """Everything signing produced: the headers to send and the intermediate strings."""

    headers: dict[str, str] = field(repr=False)
    x_date: str = ""
    content_sha256: str = ""
    canonical_request: str = field(default="", repr=False)
    string_to_sign: str = ""
    signing_key: bytes = field(default=b"", repr=False)
    signed_headers: str = ""
    credential_scope: str = ""
    signature: str = ""
    authorization: str = field(default="", repr=False)


def format_x_date(moment: datetime) -> str:
    """`YYYYMMDD'T'HHMMSS'Z'` in UTC."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_x_date(value: str) -> datetime:
    """Inverse of :func:`format_x_date`; raises ValueError on any other shape."""
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Parameters sorted by name, names and values percent-encoded (RFC 3986 unreserved kept)."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))


def canonical_host(host: str, scheme: str) -> str:
    """The Host value to sign: a default port (:80 for http, :443 for https) is dropped."""
    default = {"http": ":80", "https": ":443"}.get(scheme.lower())
    if default and host.endswith(default):
        return host[: -len(default)]
    return host


def is_signed_header(name: str) -> bool:
    """Which headers the official SDK signs: Content-Type, Content-Md5, Host and every X-*."""
    lower = name.lower()
    return lower in ("content-type", "content-md5", "host") or lower.startswith("x-")


def signing_key(secret_key: str, short_date: str, region: str, service: str) -> bytes:
    k = _hmac(secret_key.encode(), short_date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, TERMINATOR)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_names: list[str],
    content_sha256: str,
) -> str:
    """The canonical request over the headers named in `signed_names` (lower-case, sorted)."""
    lowered = {k.lower(): v.strip() for k, v in headers.items()}
    header_block = "".join(f"{name}:{lowered.get(name, '')}\n" for name in signed_names)
    return "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            header_block,
            ";".join(signed_names),
            content_sha256,
        ]
    )


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical.encode())])


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime,
    headers: Mapping[str, str] | None = None,
    scheme: str = "https",
) -> Signature:
    """Sign one request. `headers` are extra headers to send (Content-Type at least).

    The returned `headers` hold everything to send, including Host, X-Date,
    X-Content-Sha256, X-Security-Token (with a session token) and Authorization.
    """
    x_date = format_x_date(now)
    content_sha256 = sha256_hex(body)
    out: dict[str, str] = dict(headers or {})
    out["Host"] = canonical_host(host, scheme)
    out["X-Date"] = x_date
    out["X-Content-Sha256"] = content_sha256
    if credentials.session_token:
        out["X-Security-Token"] = credentials.session_token
    signed_names = sorted({k.lower() for k in out if is_signed_header(k)})
    canonical = canonical_request(method, path, query, out, signed_names, content_sha256)
    scope = f"{x_date[:8]}/{region}/{service}/{TERMINATOR}"
    to_sign = string_to_sign(x_date, scope, canonical)
    key = signing_key(credentials.secret_key, x_date[:8], region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed_list = ";".join(signed_names)
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_list}, Signature={signature}"
    )
    out["Authorization"] = authorization
    return Signature(
        headers=out,
        x_date=x_date,
        content_sha256=content_sha256,
        canonical_request=canonical,
        string_to_sign=to_sign,
        signing_key=key,
        signed_headers=signed_list,
        credential_scope=scope,
        signature=signature,
        authorization=authorization,
    )


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key: str
    short_date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse an `Authorization` header; raises ValueError naming what is malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported algorithm {algorithm!r}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization element {item.strip()!r}")
        parts[name] = val
    for required in ("Credential", "SignedHeaders", "Signature"):
        if required not in parts:
            raise ValueError(f"Authorization lacks {required}")
    cred = parts["Credential"].split("/")
    if len(cred) != 5:
        raise ValueError("Credential must be AK/date/region/service/request")
    return ParsedAuthorization(
        access_key=cred[0],
        short_date=cred[1],
        region=cred[2],
        service=cred[3],
        terminator=cred[4],
        signed_headers=[h for h in parts["SignedHeaders"].split(";") if h],
        signature=parts["Signature"],
    )


def expected_signature(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    auth: ParsedAuthorization,
    secret_key: str,
    x_date: str,
    content_sha256: str,
) -> str:
    """What the signature must be for a received request: the verifier's half of :func:`sign`."""
    canonical = canonical_request(method, path, query, headers, auth.signed_headers, content_sha256)
    scope = f"{auth.short_date}/{auth.region}/{auth.service}/{auth.terminator}"
    to_sign = string_to_sign(x_date, scope, canonical)
    key = signing_key(secret_key, auth.short_date, auth.region, auth.service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
