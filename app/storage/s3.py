"""S3-compatible object storage (``STORAGE_BACKEND=s3``) through boto3.

Any service speaking the S3 API: Aliyun OSS (``S3_ENDPOINT_URL=https://oss-cn-…
.aliyuncs.com``, virtual-hosted addressing), MinIO (path addressing), AWS (no
endpoint). Settings:

``S3_BUCKET``
    The bucket, private: nothing in it is public; every read goes through a
    presigned GET that expires (docs/operations.md has a bucket policy).
``S3_ENDPOINT_URL``
    Where the server reaches the service (unset: AWS). On Aliyun an internal
    endpoint (``oss-cn-hangzhou-internal.aliyuncs.com``) keeps that traffic free.
``S3_PUBLIC_ENDPOINT_URL``
    Where phones reach it, if not there (unset: ``S3_ENDPOINT_URL``): presigned
    URLs are signed for this host.
``S3_REGION``, ``S3_ACCESS_KEY_ID``, ``S3_SECRET_ACCESS_KEY``
    Signature V4's region and the credentials (unset: boto3's own chain, e.g.
    an instance role).
``S3_ADDRESSING_STYLE``
    ``auto`` (boto3's choice), ``virtual`` (Aliyun OSS requires it) or ``path``
    (MinIO, a test server on 127.0.0.1).

Checksums: botocore 1.36 and later add CRC32 checksum headers to uploads
unless told otherwise, which services other than AWS (OSS, older MinIO)
refuse; they are sent only where the operation requires one
(``request_checksum_calculation="when_required"``).

Every call has short timeouts and botocore's standard retries (3 attempts);
a service that still does not answer raises
:class:`app.storage.StorageUnavailable` (503 to the phone, retried later by
the jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from flask import Flask

from app.storage import StorageUnavailable, providers

log = logging.getLogger(__name__)

ADDRESSING_STYLES = ("auto", "virtual", "path")
CONNECT_TIMEOUT_SECONDS = 3
READ_TIMEOUT_SECONDS = 15
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
_MISSING = {"404", "NoSuchKey", "NotFound"}


@providers.register("s3")
class S3Storage:
    """Objects in ``bucket``, reached by ``client``; URLs signed by ``signer`` (the public endpoint)."""

    settings = (
        "S3_BUCKET",
        "S3_ENDPOINT_URL",
        "S3_PUBLIC_ENDPOINT_URL",
        "S3_REGION",
        "S3_ACCESS_KEY_ID",
        "S3_SECRET_ACCESS_KEY",
        "S3_ADDRESSING_STYLE",
    )

    def __init__(self, client, signer, bucket: str) -> None:
        self.client = client
        self.signer = signer
        self.bucket = bucket

    @classmethod
    def config_problems(cls, config: Mapping, *, production: bool) -> list[str]:
        problems = []
        if not config.get("S3_BUCKET"):
            problems.append("STORAGE_BACKEND=s3 needs S3_BUCKET")
        if (config.get("S3_ADDRESSING_STYLE") or "auto") not in ADDRESSING_STYLES:
            problems.append(f"S3_ADDRESSING_STYLE must be one of {', '.join(ADDRESSING_STYLES)}")
        if bool(config.get("S3_ACCESS_KEY_ID")) != bool(config.get("S3_SECRET_ACCESS_KEY")):
            problems.append("set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither (boto3's own credentials)")
        return problems

    @classmethod
    def from_app(cls, app: Flask) -> S3Storage:
        config = app.config
        problems = cls.config_problems(config, production=False)
        if problems:
            raise ValueError("; ".join(problems))
        endpoint = config.get("S3_ENDPOINT_URL") or None
        session = boto3.session.Session(
            aws_access_key_id=config.get("S3_ACCESS_KEY_ID") or None,
            aws_secret_access_key=config.get("S3_SECRET_ACCESS_KEY") or None,
            region_name=config.get("S3_REGION") or None,
        )
        settings = Config(
            signature_version="s3v4",
            s3={"addressing_style": config.get("S3_ADDRESSING_STYLE") or "auto"},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "max_attempts": 3},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = session.client("s3", endpoint_url=endpoint, config=settings)
        public = config.get("S3_PUBLIC_ENDPOINT_URL") or None
        signer = session.client("s3", endpoint_url=public, config=settings) if public and public != endpoint else client
        return cls(client, signer, config["S3_BUCKET"])

    # --- the storage operations ----------------------------------------------------------------------------

    def upload_url(self, key: str, content_type: str, expires_in: timedelta) -> tuple[str, dict[str, str]]:
        # Content-Type is one of the signed headers: the phone must send exactly it.
        url = self.signer.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=int(expires_in.total_seconds()),
        )
        return url, {"Content-Type": content_type}

    def download_url(self, key: str, expires_in: timedelta) -> str:
        return self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_in.total_seconds())
        )

    def size_of(self, key: str) -> int | None:
        answer = self._ask("head", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        return None if answer is None else int(answer["ContentLength"])

    def read(self, key: str) -> bytes | None:
        answer = self._ask("get", lambda: self.client.get_object(Bucket=self.bucket, Key=key))
        return None if answer is None else answer["Body"].read()

    def write(self, key: str, data: bytes, content_type: str) -> None:
        self._ask(
            "put",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                # a key's content never changes: caches may keep it as long as a URL lets them in
                CacheControl="private, max-age=31536000, immutable",
            ),
        )

    def delete(self, keys: Sequence[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), DELETE_BATCH):
            chunk = keys[start : start + DELETE_BATCH]
            objects = {"Objects": [{"Key": key} for key in chunk], "Quiet": True}
            answer = self._ask(
                "delete", lambda objects=objects: self.client.delete_objects(Bucket=self.bucket, Delete=objects)
            )
            failed = [error for error in (answer or {}).get("Errors", []) if error.get("Code") not in _MISSING]
            if failed:
                first = failed[0]
                raise StorageUnavailable(
                    f"S3 delete of {len(failed)} objects failed, first {first.get('Key')}: {first.get('Code')}"
                )

    def check(self) -> str | None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return f"bucket {self.bucket!r} answers {_code(exc)}: does it exist, and may these credentials use it?"
        except BotoCoreError as exc:
            return f"S3 ({self.client.meta.endpoint_url}) does not answer ({type(exc).__name__})"
        return None

    def _ask(self, operation: str, call):
        """``call()``'s answer; None when the object is not there; any other failure
        :class:`StorageUnavailable`."""
        try:
            return call()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise _unavailable(operation, exc) from None
        except BotoCoreError as exc:
            raise _unavailable(operation, exc) from None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(operation: str, exc: Exception) -> StorageUnavailable:
    detail = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    log.warning("S3 %s failed: %s", operation, detail)
    return StorageUnavailable(f"S3 {operation} failed: {detail}")
