"""`image_urls` references: the emulator fetches each URL, as the service must, and checks
the bytes are an image the model takes. Every fetch is logged (stats `reference_fetches`:
URL, HTTP status, sha256 and size), so a test can prove what the service would have seen.
An unreachable URL or a non-image is the documented 50215 "Input invalid for this service."
(research S15: unreachable reference URLs, e.g. private buckets, are a known cause).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import aiohttp

from asyncimg.protocol.models import ModelProfile, inspect_image, reference_problem

INPUT_INVALID = 50215
INPUT_INVALID_MESSAGE = "Input invalid for this service."
_FETCH_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int | None
    data: bytes | None
    problem: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "sha256": hashlib.sha256(self.data).hexdigest() if self.data is not None else None,
            "bytes": len(self.data) if self.data is not None else None,
            "problem": self.problem,
        }


async def fetch_reference(
    session: aiohttp.ClientSession, url: str, index: int, profile: ModelProfile
) -> Fetched:
    """GET one reference URL and check it; `problem` says why it cannot be used."""
    limit = profile.references.max_bytes
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT_S), allow_redirects=True
        ) as resp:
            data = await resp.content.read(limit + 1)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Fetched(url, None, None, f"image_urls[{index}]: cannot fetch ({exc or type(exc)})")
    if status != 200:
        return Fetched(url, status, None, f"image_urls[{index}]: HTTP {status}")
    if len(data) > limit:
        return Fetched(url, status, None, f"image_urls[{index}]: over {limit} bytes")
    try:
        info = inspect_image(data)
    except ValueError as exc:
        return Fetched(url, status, data, f"image_urls[{index}]: {exc}")
    problem = reference_problem(profile, info)
    return Fetched(url, status, data, f"image_urls[{index}]: {problem}" if problem else None)
