"""Reference images as the submit body carries them: base64, or presigned URLs of uploads.

`ReferenceSender.image_fields` turns a record's `character_images` into `binary_data_base64`
or `image_urls` as `refmode` decides. Uploads go to the user's own S3-compatible bucket
through boto3 (a maintained S3 client, never hand-written S3 signing), under a
content-addressed key (`<prefix><sha256>.<ext>` of the bytes sent), so one file is stored
once however many frames use it: the key is looked up (HEAD) before any upload, uploads of
one key are coalesced within the process and serialised across processes by a lock file
in the tasks folder. The URL handed to the service is a presigned GET valid 48 h.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncimg.i18n import _
from asyncimg.lifecycle import refmode
from asyncimg.lifecycle.references import PreparedReference, check_count, prepare_reference
from asyncimg.protocol.errors import ConfigError, ConnectFailed, InvalidInput, not_set
from asyncimg.protocol.models import ModelProfile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from asyncimg.lifecycle.config import Config
    from asyncimg.store.record import TaskRecord

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp"}
_CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}
LOCK_NAME = ".uploads.lock"


def content_key(prefix: str, data: bytes, fmt: str) -> str:
    """The object key for these bytes: the same bytes always land on the same key."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{prefix}{digest}.{_EXTENSIONS.get(fmt, 'bin')}"


def _credentials(env: Mapping[str, str]) -> tuple[str, str, str | None]:
    access = env.get(refmode.ENV_STORAGE_ACCESS_KEY, "").strip()
    secret = env.get(refmode.ENV_STORAGE_SECRET_KEY, "").strip()
    missing = [
        name
        for name, value in (
            (refmode.ENV_STORAGE_ACCESS_KEY, access),
            (refmode.ENV_STORAGE_SECRET_KEY, secret),
        )
        if not value
    ]
    if missing:
        raise not_set(
            missing,
            _(
                "[storage] (reference uploads, kept images) is used with the storage's "
                "access key pair from {access_var} / {secret_var}"
            ).format(
                access_var=refmode.ENV_STORAGE_ACCESS_KEY,
                secret_var=refmode.ENV_STORAGE_SECRET_KEY,
            ),
        )
    token = env.get(refmode.ENV_STORAGE_SESSION_TOKEN, "").strip() or None
    return access, secret, token


class ObjectStorage:
    """One bucket of an S3-compatible service, through boto3 (thread-safe client)."""

    def __init__(
        self,
        settings: refmode.StorageSettings,
        env: Mapping[str, str] | None = None,
        *,
        lock_dir: Path | None = None,
    ) -> None:
        import boto3  # imported here: only frames that upload pay for importing it
        from botocore.config import Config as BotoConfig

        access, secret, token = _credentials(os.environ if env is None else env)
        self.settings = settings
        self._lock_dir = lock_dir
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=BotoConfig(
                signature_version="s3v4",
                s3={"addressing_style": settings.addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                # boto3 >= 1.36 adds CRC checksums (and aws-chunked bodies) to every upload,
                # which several S3-compatible services refuse; send them only when required.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        self._guard = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._present: set[str] = set()
        self.uploads = 0
        """Objects this instance PUT (the rest were found already there)."""

    def ensure(self, data: bytes, fmt: str) -> str:
        """The key holding exactly `data`, uploading it only if the bucket lacks it."""
        key = content_key(self.settings.prefix, data, fmt)
        with self._guard:
            if key in self._present:
                return key
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock, self._folder_lock():
            if key in self._present:  # a concurrent upload of the same file finished first
                return key
            if not self._exists(key):
                self._put(key, data, fmt)
            with self._guard:
                self._present.add(key)
        return key

    def presign(self, key: str, seconds: int = refmode.PRESIGN_SECONDS) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.settings.bucket, "Key": key},
            ExpiresIn=seconds,
        )
        return url

    def get(self, key: str, limit: int) -> bytes | None:
        """The object's bytes, read up to `limit` (a caller that expects n bytes asks for
        n + 1, so a larger object shows), or None when the bucket has no such key."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self._client.get_object(Bucket=self.settings.bucket, Key=key)
            body = reply["Body"]
            try:
                data: bytes = body.read(limit)
            finally:
                body.close()
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if status == 404 and code != "NoSuchBucket":
                return None
            raise self._error("download", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("download", key, exc) from None
        return data

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.settings.bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return False
            raise self._error("check", key, exc) from None
        except BotoCoreError as exc:
            raise self._error("check", key, exc) from None
        return True

    def _put(self, key: str, data: bytes, fmt: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.settings.bucket,
                Key=key,
                Body=data,
                ContentType=_CONTENT_TYPES.get(fmt, "application/octet-stream"),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._error("upload", key, exc) from None
        self.uploads += 1

    def _error(self, what: str, key: str, exc: Exception) -> ConnectFailed | ConfigError:
        template = (
            _("[storage] {where}: cannot upload {key}: {code}")
            if what == "upload"
            else _("[storage] {where}: cannot check {key}: {code}")
        )
        where = _("{endpoint} bucket {bucket}").format(
            endpoint=self.settings.endpoint, bucket=self.settings.bucket
        )
        code = ""
        if hasattr(exc, "response"):
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"):
            return ConfigError(template.format(where=where, key=key, code=code))
        # Nothing reached the visual API (ConnectFailed: "certainly nothing was sent"), so
        # the frame stays queued and goes out on a later pass; never `unconfirmed`.
        return ConnectFailed(template.format(where=where, key=key, code=exc))

    @contextmanager
    def _folder_lock(self) -> Any:
        """Other processes on this tasks folder wait while one uploads (an exclusive
        lock file), so a file is uploaded once per folder, not once per process."""
        if self._lock_dir is None or not self._lock_dir.is_dir():
            yield
            return
        fd = os.open(self._lock_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


StorageFactory = Callable[[refmode.StorageSettings], ObjectStorage]


@dataclass
class ReferenceSender:
    """How one folder's frames send their references (see the module docstring).

    `upload=False` plans without touching the network (`submit --dry-run`, the checks made
    before a batch): URL-bound files are read and checked, and stand-in URLs are returned.
    """

    references: refmode.ReferencesConfig = field(default_factory=refmode.ReferencesConfig)
    storage: refmode.StorageSettings | None = None
    upload: bool = True
    storage_factory: StorageFactory | None = None
    _bucket: ObjectStorage | None = field(default=None, init=False, repr=False)
    _bucket_guard: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def from_config(
        cls,
        config: Config,
        env: Mapping[str, str] | None = None,
        *,
        upload: bool = True,
        lock_dir: Path | None = None,
    ) -> ReferenceSender:
        environ = os.environ if env is None else env
        settings = refmode.storage_settings(config.storage, environ)

        def factory(s: refmode.StorageSettings) -> ObjectStorage:
            return ObjectStorage(s, environ, lock_dir=lock_dir)

        return cls(config.references, settings, upload, factory)

    def sends(self, req_key: str) -> refmode.Sent:
        """How `req_key`'s local files go (before any URL entry forces URLs)."""
        return refmode.local_files_go_as(self.references, req_key, self.storage is not None)

    def image_fields(self, record: TaskRecord, profile: ModelProfile) -> dict[str, list[str]]:
        """`binary_data_base64` or `image_urls` for the record's references, in order."""
        entries = record.character_images
        check_count(len(entries), profile)
        split = refmode.split_entries(entries)
        prepared = {
            i: prepare_reference(f"character_images[{i}]", record.resolve(p), profile)
            for i, p in split.files
        }
        urls = dict(split.urls)
        if not prepared:
            return {"image_urls": [urls[i] for i in range(len(entries))]}
        sends = self.sends(record.req_key)
        if sends == "base64" and not urls:
            return {"binary_data_base64": [prepared[i].base64 for i in range(len(entries))]}
        if self.storage is None:
            why = (
                _("mixes URLs and local files (one frame sends one kind)")
                if urls
                else _('[references] mode is "url" for {model}').format(model=record.req_key)
            )
            raise InvalidInput(
                "character_images",
                list(entries),
                refmode.needs_storage_message(record.req_key, why),
            )
        for i, ref in prepared.items():
            urls[i] = self._url_for(ref)
        return {"image_urls": [urls[i] for i in range(len(entries))]}

    def _url_for(self, ref: PreparedReference) -> str:
        assert self.storage is not None
        if not self.upload:
            key = content_key(self.storage.prefix, ref.data, ref.format)
            return f"{self.storage.endpoint}/{key}"
        bucket = self._storage()
        return bucket.presign(bucket.ensure(ref.data, ref.format))

    def _storage(self) -> ObjectStorage:
        assert self.storage is not None
        with self._bucket_guard:
            if self._bucket is None:
                make = self.storage_factory or ObjectStorage
                self._bucket = make(self.storage)
            return self._bucket


PLAIN = ReferenceSender(upload=False)
"""Base64 for local files and URLs as given; no storage (the behaviour before `[storage]`)."""
