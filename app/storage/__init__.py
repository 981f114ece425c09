"""Object storage for photos, as plug-ins: the phone's bytes never pass through a web worker.

``STORAGE_BACKEND`` names the provider, one module of this package each:

- ``s3`` (``app/storage/s3.py``): any S3-compatible service — Aliyun OSS,
  MinIO, AWS — through boto3. Production's choice.
- ``local`` (``app/storage/local.py``): files under the instance folder,
  uploaded and served by the app itself with signed, expiring URLs. The
  embedded default of ``make run``; production refuses it unless
  ``STORAGE_LOCAL_OK=1`` (one machine only).

Every provider offers the same few operations on keys (``uploads/…``,
``photos/…``): an upload URL (a presigned PUT) and a download URL (a presigned
GET), the size of what is stored, read, write, delete, and a reachability
check for ``flask doctor``. A provider that cannot reach its service raises
:class:`StorageUnavailable`; the API answers 503 ``service_unavailable``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from flask import Flask, current_app

from app.clock import utcnow
from app.errors import Unavailable
from app.plugins import Registry
from app.policy import PHOTO_URL_REUSE, PHOTO_URL_TTL

providers: Registry = Registry("storage", __name__, "STORAGE_BACKEND")

# Download URLs kept for reuse, per process (each a few hundred bytes).
URL_CACHE_SIZE = 20_000


class StorageUnavailable(Unavailable):
    """The storage service did not answer, or refused a well-formed request: the
    caller gets 503 ``service_unavailable`` with ``Retry-After``; ``detail`` is for the log."""

    def __init__(self, detail: str) -> None:
        super().__init__()
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class ObjectStorage(Protocol):
    """What every provider does with the keys it is given."""

    name: str

    def upload_url(self, key: str, content_type: str, expires_in: timedelta) -> tuple[str, dict[str, str]]:
        """A URL the phone PUTs the bytes to, and the headers it must send."""
        ...

    def download_url(self, key: str, expires_in: timedelta) -> str:
        """A URL anyone holding it may GET the object from, until it expires."""
        ...

    def size_of(self, key: str) -> int | None:
        """The stored object's length in bytes; None when there is none."""
        ...

    def read(self, key: str) -> bytes | None:
        """The stored object's bytes; None when there is none."""
        ...

    def write(self, key: str, data: bytes, content_type: str) -> None: ...

    def delete(self, keys: Sequence[str]) -> None:
        """Delete the objects; a key with nothing stored is no error."""
        ...

    def check(self) -> str | None:
        """``flask doctor``: None when the storage answers, else what is wrong."""
        ...


def init_app(app: Flask) -> None:
    """Build the configured provider for ``app`` (ValueError for an unknown one)."""
    provider = providers.get(app.config.get("STORAGE_BACKEND"))
    app.extensions["storage"] = provider.from_app(app)
    app.extensions["storage_urls"] = _UrlCache(URL_CACHE_SIZE)


def config_problems(config: Mapping, *, production: bool) -> list[str]:
    """What is wrong with the storage settings, one sentence each (no network)."""
    try:
        provider = providers.get(config.get("STORAGE_BACKEND"))
    except ValueError as exc:
        return [str(exc)]
    return provider.config_problems(config, production=production)


def storage() -> ObjectStorage:
    """The running app's storage."""
    return current_app.extensions["storage"]


def download_url(key: str) -> str:
    """A presigned GET of ``key`` valid for ``PHOTO_URL_TTL``.

    The same URL is given out again for ``PHOTO_URL_REUSE``: a phone's image
    cache keys on the URL, and signing costs a few hundred microseconds (a
    page of twenty postings may show a hundred photos)."""
    return current_app.extensions["storage_urls"].get(key, storage())


class _UrlCache:
    """Recently signed download URLs: key -> (url, signed at), least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._urls: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, backend: ObjectStorage) -> str:
        now = utcnow()
        with self._lock:
            cached = self._urls.get(key)
            if cached is not None and timedelta(0) <= now - cached[1] < PHOTO_URL_REUSE:
                self._urls.move_to_end(key)
                return cached[0]
        url = backend.download_url(key, PHOTO_URL_TTL)
        with self._lock:
            self._urls[key] = (url, now)
            self._urls.move_to_end(key)
            while len(self._urls) > self.size:
                self._urls.popitem(last=False)
        return url
