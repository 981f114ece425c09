"""A local S3-compatible server for the tests: moto's server mode in a process of its own.

The app's real boto3 client talks HTTP to it on 127.0.0.1, on a port the
operating system picks; nothing in the test process is patched. The server
keeps buckets and objects in its memory and speaks the S3 REST API: bucket
checks, object PUT/GET/HEAD, DeleteObjects, and presigned URLs (it does not
check their signatures or expiry: moto accepts any; the URLs' shape is
asserted by the tests instead).

``python -m tests.fake_s3`` starts it, prints ``port N`` and serves until its
standard input closes (its parent went away) or it is terminated.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

REGION = "us-east-1"
# moto accepts any credentials; the app is given these, as it would be real ones.
ACCESS_KEY_ID = "AKIAYZTESTFAKEKEY001"
SECRET_ACCESS_KEY = "yz-fake-s3-secret-not-a-real-one"
ROOT = Path(__file__).resolve().parent.parent


class FakeS3:
    """The server process and a client of our own to look inside it."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_s3"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError(f"the fake S3 server did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"yz-photos-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def config(self, bucket: str) -> dict:
        """The app's settings for ``bucket`` on this server."""
        return {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_BUCKET": bucket,
            "S3_REGION": REGION,
            "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "S3_ADDRESSING_STYLE": "path",
        }

    def keys(self, bucket: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(f"port {server.get_host_and_port()[1]}", flush=True)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    server.stop()


if __name__ == "__main__":
    main()
