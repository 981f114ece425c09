"""Local storage (``STORAGE_BACKEND=local``): files on this machine, served by the app.

The embedded default, so that ``make run`` needs no object storage. Objects
are files under ``STORAGE_LOCAL_PATH`` (default ``<instance>/photos``). The
app plays the part of S3's presigned URLs itself, at ``/files/<grant>``:
a grant is a signed (``SECRET_KEY``), expiring permission for one method on
one key — a PUT of one content type, or a GET — so the URLs can be handed to
a phone like S3's. They are built on ``PUBLIC_BASE_URL`` (required when
production runs this provider), else on the address the request came to (the
development server's, as the phone or emulator reached it).

Production refuses this provider unless ``STORAGE_LOCAL_OK=1``: the files
live on one machine's disk, which two web hosts would not share, and the
uploads go through the web workers (nginx passes up to 10 MiB to
``/files/``, see deploy/nginx.conf).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timedelta

from flask import Blueprint, Flask, current_app, has_request_context, request, send_file
from flask_babel import gettext
from itsdangerous import BadData, URLSafeSerializer
from werkzeug.exceptions import RequestEntityTooLarge

from app.clock import utcnow
from app.errors import Forbidden, NotFound, TooLarge
from app.inputs import read_body, takes_raw_body
from app.policy import MAX_PHOTO_BYTES
from app.storage import providers

files = Blueprint("files", __name__)
# A key is a folder and a file name of our own making: nothing else reaches the disk.
_KEY = re.compile(r"[a-z]+/[A-Za-z0-9_-]+(\.[a-z0-9]+)?")
_MIMETYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


@providers.register("local")
class LocalStorage:
    """Files under ``root``; URLs are grants signed with ``secret``."""

    settings = ("STORAGE_LOCAL_PATH", "STORAGE_LOCAL_OK", "PUBLIC_BASE_URL")

    def __init__(self, root: str, secret: str, base_url: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self.base_url = base_url.rstrip("/") if base_url else None
        self._grants = URLSafeSerializer(secret, salt="yz.storage.local")

    @classmethod
    def config_problems(cls, config: Mapping, *, production: bool) -> list[str]:
        if not production:
            return []
        if not config.get("STORAGE_LOCAL_OK"):
            return [
                "STORAGE_BACKEND=local keeps photos on this machine's disk: production needs STORAGE_BACKEND=s3 "
                "(or STORAGE_LOCAL_OK=1 for a single-machine install)"
            ]
        if not config.get("PUBLIC_BASE_URL"):
            return ["STORAGE_BACKEND=local builds photo URLs on PUBLIC_BASE_URL, which is not set"]
        return []

    @classmethod
    def from_app(cls, app: Flask) -> LocalStorage:
        root = app.config.get("STORAGE_LOCAL_PATH") or os.path.join(app.instance_path, "photos")
        if "files" not in app.blueprints:
            app.register_blueprint(files)
        return cls(root, app.config["SECRET_KEY"], app.config.get("PUBLIC_BASE_URL"))

    # --- the storage operations ----------------------------------------------------------------------------

    def upload_url(self, key: str, content_type: str, expires_in: timedelta) -> tuple[str, dict[str, str]]:
        return self._url(key, "PUT", expires_in, content_type), {"Content-Type": content_type}

    def download_url(self, key: str, expires_in: timedelta) -> str:
        return self._url(key, "GET", expires_in)

    def size_of(self, key: str) -> int | None:
        try:
            return os.stat(self.path_of(key)).st_size
        except FileNotFoundError:
            return None

    def read(self, key: str) -> bytes | None:
        try:
            with open(self.path_of(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes, content_type: str) -> None:
        """Write whole or not at all: a reader never sees half a file."""
        path = self.path_of(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(partial, path)
        except BaseException:
            if os.path.exists(partial):
                os.unlink(partial)
            raise

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                os.unlink(self.path_of(key))
            except FileNotFoundError:
                pass

    def check(self) -> str | None:
        try:
            os.makedirs(self.root, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            return f"cannot write to STORAGE_LOCAL_PATH {self.root} ({exc.strerror or type(exc).__name__})"
        return None

    # --- grants --------------------------------------------------------------------------------------------

    def path_of(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a storage key: {key!r}")
        return os.path.join(self.root, *key.split("/"))

    def _url(self, key: str, method: str, expires_in: timedelta, content_type: str | None = None) -> str:
        self.path_of(key)  # only keys of our own making are granted
        expires = int((utcnow() + expires_in).timestamp())
        fields = {"k": key, "m": method, "x": expires}
        if content_type:
            fields["t"] = content_type
        grant = self._grants.dumps(fields)
        return f"{self._base_url()}/files/{grant}"

    def _base_url(self) -> str:
        if self.base_url:
            return self.base_url
        if not has_request_context():
            raise RuntimeError("STORAGE_BACKEND=local needs PUBLIC_BASE_URL to build URLs outside a request")
        return request.host_url.rstrip("/")

    def grant(self, token: str, method: str) -> tuple[str, dict]:
        """The key a grant names, if it is ours, for ``method``, and unexpired; 403 otherwise."""
        try:
            grant = self._grants.loads(token)
        except BadData:
            raise Forbidden(message=gettext("This file URL is not valid.")) from None
        if not isinstance(grant, dict) or grant.get("m") != method or not isinstance(grant.get("k"), str):
            raise Forbidden(message=gettext("This file URL is not valid for %(method)s.", method=method))
        if utcnow().timestamp() >= grant.get("x", 0):
            raise Forbidden(message=gettext("This file URL has expired."))
        return grant["k"], grant


def _backend() -> LocalStorage:
    backend = current_app.extensions["storage"]
    if not isinstance(backend, LocalStorage):
        raise NotFound()
    return backend


@files.route("/files/<token>", methods=["PUT"])
@takes_raw_body
def put_file(token: str):
    """The phone's upload: the bytes of one photo, with the content type it was granted for."""
    backend = _backend()
    key, grant = backend.grant(token, "PUT")
    if request.headers.get("Content-Type", "").split(";")[0].strip().lower() != grant.get("t"):
        wanted = grant.get("t")
        raise Forbidden(message=gettext("Send the Content-Type this upload URL was made for: %(type)s.", type=wanted))
    try:
        data = read_body(MAX_PHOTO_BYTES)
    except RequestEntityTooLarge:
        raise TooLarge(message=gettext("A photo is at most %(mib)d MiB.", mib=MAX_PHOTO_BYTES // 2**20)) from None
    backend.write(key, data, grant["t"])
    return "", 200


@files.route("/files/<token>", methods=["GET"])
def get_file(token: str):
    """A stored photo, for whoever holds an unexpired URL."""
    backend = _backend()
    key, grant = backend.grant(token, "GET")
    path = backend.path_of(key)
    if not os.path.isfile(path):
        raise NotFound()
    remaining = max(0, int(grant["x"] - utcnow().timestamp()))
    mimetype = _MIMETYPES.get(os.path.splitext(path)[1], "application/octet-stream")
    response = send_file(path, mimetype=mimetype, max_age=remaining, conditional=True, etag=True)
    response.cache_control.private = True
    response.cache_control.public = False
    # What is stored here is the users' own: never run as a page of this site.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
