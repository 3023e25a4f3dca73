"""How reference images travel: inline as base64, or as URLs (pure: no I/O).

Jimeng 4.0's documentation lists only `image_urls` for references, while asyncimg long sent
`binary_data_base64` (research §1, discrepancy 1). So a character image may be an http(s)
URL (always sent as `image_urls`), and local files either go inline or are uploaded to the
user's own S3-compatible storage and sent as presigned URLs. `[references] mode` chooses,
per model where needed; `auto` sends base64 where it is documented (i2i, SeedEdit) and URLs
to v40 once `[storage]` is configured. The uploads themselves live in `ref_upload.py`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asyncimg.i18n import _
from asyncimg.protocol.errors import AsyncImgError, InputRejected, InvalidInput

Mode = Literal["base64", "url", "auto"]
Sent = Literal["base64", "url"]

ENV_STORAGE_ENDPOINT = "ASYNCIMG_STORAGE_ENDPOINT"
ENV_STORAGE_BUCKET = "ASYNCIMG_STORAGE_BUCKET"
ENV_STORAGE_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
ENV_STORAGE_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENV_STORAGE_SESSION_TOKEN = "AWS_SESSION_TOKEN"

#: Models whose documentation lists `binary_data_base64` (i2i: research S5; SeedEdit: S17).
BASE64_DOCUMENTED = frozenset({"jimeng_i2i_v30", "seededit_v3.0"})

#: Presigned GET URLs stay valid this long (the issue asks for at least 24 h; a frame
#: queued locally for a while is still covered). SigV4 allows at most 7 days.
PRESIGN_SECONDS = 48 * 3600

EXAMPLE_TOS_ENDPOINT = "https://tos-s3-cn-beijing.volces.com"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ReferencesConfig(_Strict):
    """`[references]`: `mode` for every model, `models.<req_key>` to override one."""

    mode: Mode = "auto"
    models: dict[str, Mode] = Field(default_factory=dict)


class StorageConfig(_Strict):
    """`[storage]`: an S3-compatible bucket (Volcengine TOS, AWS S3, MinIO) for references,
    and where finished images are kept (`keep_frames`, under `frames_prefix`).

    Credentials never live here: only AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""

    endpoint: str | None = None
    bucket: str | None = None
    prefix: str = "asyncimg-refs/"
    region: str = "us-east-1"
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    keep_frames: bool = True
    frames_prefix: str = "asyncimg-frames/"

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not is_url(value):
            raise ValueError(
                _("{value!r} is not an http(s) URL, e.g. {example!r}").format(
                    value=value, example=EXAMPLE_TOS_ENDPOINT
                )
            )
        return value


@dataclass(frozen=True)
class StorageSettings:
    """`[storage]` with the environment's overrides applied; only when it is usable."""

    endpoint: str
    bucket: str
    prefix: str
    region: str
    addressing_style: Literal["auto", "path", "virtual"]
    keep_frames: bool = False
    """Whether finished images are kept in the bucket too (see lifecycle/kept.py)."""
    frames_prefix: str = "asyncimg-frames/"


def storage_settings(config: StorageConfig, env: Mapping[str, str]) -> StorageSettings | None:
    """The storage to upload to, or None when no endpoint and bucket are configured
    (ASYNCIMG_STORAGE_ENDPOINT / ASYNCIMG_STORAGE_BUCKET win over the file)."""
    endpoint = env.get(ENV_STORAGE_ENDPOINT, "").strip() or config.endpoint
    bucket = env.get(ENV_STORAGE_BUCKET, "").strip() or config.bucket
    if not endpoint or not bucket:
        return None
    return StorageSettings(
        endpoint=endpoint,
        bucket=bucket,
        prefix=_folder(config.prefix),
        region=config.region,
        addressing_style=config.addressing_style,
        keep_frames=config.keep_frames,
        frames_prefix=_folder(config.frames_prefix),
    )


def _folder(prefix: str) -> str:
    """A key prefix as a folder: one trailing slash, none in front ("" stays "")."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def is_url(text: str) -> bool:
    """An http(s) URL with a host (what `image_urls` takes), not a local path."""
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def looks_like_url(text: str) -> bool:
    """Meant as a URL (a scheme), even if it is not a usable one: checked as a URL."""
    return "://" in text and not text.startswith("file://")


def configured_mode(refs: ReferencesConfig, req_key: str) -> Mode:
    return refs.models.get(req_key, refs.mode)


def local_files_go_as(refs: ReferencesConfig, req_key: str, storage_ready: bool) -> Sent:
    """How this model's *local* reference files are sent: `auto` is base64 where the model
    documents it, else URLs when storage is configured, else base64 (the only way left).
    A `url` answer without storage is the caller's error to report."""
    mode = configured_mode(refs, req_key)
    if mode == "auto":
        if req_key in BASE64_DOCUMENTED:
            return "base64"
        return "url" if storage_ready else "base64"
    return mode


@dataclass(frozen=True)
class Split:
    """A frame's `character_images`, in order, split into URLs and local files."""

    urls: tuple[tuple[int, str], ...]
    files: tuple[tuple[int, str], ...]


def split_entries(entries: Sequence[str]) -> Split:
    """URLs (checked) and local paths, each with its index; InvalidInput for a bad URL."""
    urls: list[tuple[int, str]] = []
    files: list[tuple[int, str]] = []
    for i, entry in enumerate(entries):
        if looks_like_url(entry):
            if not is_url(entry):
                raise InvalidInput(
                    f"character_images[{i}]",
                    entry,
                    _("is not an http(s) URL the service can fetch"),
                    _("give an https:// URL or a local image file"),
                )
            urls.append((i, entry.strip()))
        else:
            files.append((i, entry))
    return Split(tuple(urls), tuple(files))


def needs_storage_message(req_key: str, why: str) -> str:
    return _(
        "{why}; local files go as URLs only through your own storage: set [storage] "
        'endpoint and bucket in asyncimg.toml (e.g. endpoint = "{example}") or '
        "${endpoint_var} / ${bucket_var}, with ${access_var} / ${secret_var} in the environment"
    ).format(
        why=why,
        example=EXAMPLE_TOS_ENDPOINT,
        endpoint_var=ENV_STORAGE_ENDPOINT,
        bucket_var=ENV_STORAGE_BUCKET,
        access_var=ENV_STORAGE_ACCESS_KEY,
        secret_var=ENV_STORAGE_SECRET_KEY,
    )


def switch_to_urls_advice(req_key: str) -> str:
    """Exactly how to stop sending base64 references to `req_key`."""
    return _(
        "{model} may not take base64 reference images (its documentation lists only "
        "image_urls). To send them as URLs, add to asyncimg.toml: "
        '[references] models.{model} = "url" (or mode = "url") and [storage] '
        'endpoint = "{example}", bucket = "YOUR_BUCKET" (keys in '
        "{access_var} / {secret_var}), or give https:// URLs as "
        "character_images; then run asyncimg retry --failed"
    ).format(
        model=req_key,
        example=EXAMPLE_TOS_ENDPOINT,
        access_var=ENV_STORAGE_ACCESS_KEY,
        secret_var=ENV_STORAGE_SECRET_KEY,
    )


def refused_base64(error: AsyncImgError, req_key: str, sent: str | None) -> bool:
    """Whether `error` (the service's answer for a frame) may be its refusal of base64
    references: an input refusal that is not a content review (50215, or a code we do not
    know) to a frame that sent base64 to a model not documented to take it."""
    if sent != "base64" or req_key in BASE64_DOCUMENTED:
        return False
    if not isinstance(error, InputRejected) or isinstance(error, InvalidInput):
        return False
    return error.code == 50215 or error.unrecognised


def with_url_advice(error: AsyncImgError, req_key: str, sent: str | None) -> AsyncImgError:
    """`error` with the "switch to URLs" advice in its message (so the record's last_error
    and the CLI line both carry it), or `error` itself when the advice does not apply."""
    if not refused_base64(error, req_key, sent):
        return error
    advised = copy.copy(error)
    advised.message = f"{error.message} — {switch_to_urls_advice(req_key)}"
    advised.args = (advised.message,)
    advised.hint = ""
    return advised
