"""A fake JPush (极光推送) server: a real threaded HTTP server on 127.0.0.1 speaking the v3 push API.

``POST /v3/push`` checks what JPush checks: HTTP Basic auth with the app key
and master secret (else 401, error 1004), a JSON body with ``platform``
(``all`` or a list of android/ios/…), an ``audience`` naming registration IDs
(at most 1,000), a ``notification`` or ``message``, ``extras`` whose values
are strings (ours always are), and ``options``; it answers ``{"sendno",
"msg_id"}`` or JPush's error body ``{"error": {"code", "message"}}``.

A registration ID can be scripted: ``UNKNOWN`` (400, code 1011 "cannot find
user by this audience"), ``RATE_LIMIT`` (429, code 2002, with the
``X-Rate-Limit-*`` headers), ``INTERNAL`` (500, code 1000), ``AUTH`` (401,
code 1004) or ``HANG`` (no answer until released), always or ``times``
times. ``fail_all`` makes every call answer one of those (JPush down).
``delay`` holds every answer back (the push was accepted on arrival).

Every accepted push is kept in ``pushes`` (the v3 body). ``GET /_fake/stats``
answers the counters; ``python -m tests.fake_jpush`` serves it in a process
of its own (bench/push.py).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass

from tests.loopback import JsonHandler, LoopbackServer

PLATFORMS = {"android", "ios", "hmos", "quickapp", "winphone"}
ERRORS: dict[str, tuple[int, int, str]] = {
    "UNKNOWN": (400, 1011, "cannot find user by this audience or has been inactive for more than 255 days"),
    "RATE_LIMIT": (429, 2002, "Request times of the app_key exceed the limit of current time window"),
    "INTERNAL": (500, 1000, "Server Internal Error"),
    "AUTH": (401, 1004, "Authen failed"),
}
HANG = "HANG"


@dataclass
class Script:
    error: str
    times: int | None


class FakeJPush(LoopbackServer):
    """Start with ``with FakeJPush() as jp:``; ``jp.url`` is what JPUSH_ENDPOINT should be."""

    def __init__(self, app_key: str = "fake-app-key", master_secret: str = "fake-master-secret", *, record=True):
        super().__init__()
        self.app_key = app_key
        self.master_secret = master_secret
        self.record = record
        self.pushes: list[dict] = []
        self.calls = 0
        self.accepted = 0
        self.delay = 0.0
        self.rate_limit_reset = 7  # seconds, in X-Rate-Limit-Reset
        self.fail_all: str | None = None
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def script(self, registration_id: str, error: str, times: int | None = None) -> None:
        error = error.upper()
        if error not in ERRORS and error != HANG:
            raise ValueError(f"unknown JPush error {error!r}")
        with self._lock:
            self._scripts[registration_id] = Script(error, times)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.pushes.clear()
            self.calls = self.accepted = 0
            self.delay = 0.0
            self.fail_all = None
            self._release.clear()

    def pushes_to(self, registration_id: str) -> list[dict]:
        with self._lock:
            return [p for p in self.pushes if registration_id in p["audience"]["registration_id"]]

    def _take_script(self, ids: list[str]) -> Script | None:
        with self._lock:
            if self.fail_all:
                return Script(self.fail_all, None)
            for registration_id in ids:
                script = self._scripts.get(registration_id)
                if script is None:
                    continue
                if script.times is not None:
                    script.times -= 1
                    if script.times <= 0:
                        del self._scripts[registration_id]
                return script
        return None

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            key, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (key, secret) == (self.app_key, self.master_secret)


def validate_push(body) -> str | None:
    """JPush's checks on a v3 push body: None when valid, else what is wrong (error 1003)."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    platform = body.get("platform")
    if platform != "all" and not (isinstance(platform, list) and platform and set(platform) <= PLATFORMS):
        return "platform is invalid"
    audience = body.get("audience")
    ids = audience.get("registration_id") if isinstance(audience, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > 1000 or not all(isinstance(i, str) and i for i in ids):
        return "audience.registration_id must name 1 to 1000 registration IDs"
    notification = body.get("notification")
    if notification is None and body.get("message") is None:
        return "notification and message cannot both be empty"
    for name in ("android", "ios"):
        block = (notification or {}).get(name)
        if block is None:
            continue
        extras = block.get("extras", {})
        if not isinstance(extras, dict) or not all(isinstance(v, str) for v in extras.values()):
            return f"notification.{name}.extras must map names to strings"
        if name == "ios" and "badge" in block and not isinstance(block["badge"], int | str):
            return "notification.ios.badge is invalid"
    options = body.get("options", {})
    if not isinstance(options, dict) or not isinstance(options.get("apns_production", True), bool):
        return "options.apns_production must be a boolean"
    if not isinstance(options.get("third_party_channel", {}), dict):
        return "options.third_party_channel must be an object"
    return None


class _Handler(JsonHandler):
    fake: FakeJPush

    def _error(self, status: int, code: int, message: str, headers=None) -> None:
        self._reply(status, {"error": {"code": code, "message": message}}, headers)

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/_fake/stats":
            fake = self.fake
            with fake._lock:
                stats = {"calls": fake.calls, "accepted": fake.accepted, "cpu_seconds": time.process_time()}
            self._reply(200, stats)
            return
        self._error(404, 1001, "not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fake = self.fake
        if urllib.parse.urlsplit(self.path).path != "/v3/push":
            self._error(404, 1001, "only POST /v3/push is served here")
            return
        with fake._lock:
            fake.calls += 1
        if not fake._authorized(self.headers.get("Authorization")):
            self._error(*ERRORS["AUTH"])
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        problem = validate_push(body)
        if problem:
            self._error(400, 1003, problem)
            return
        ids = body["audience"]["registration_id"]
        script = fake._take_script(ids)
        if script is not None and script.error == HANG:
            fake._release.wait(timeout=60)
            self.close_connection = True
            return
        if script is not None:
            status, code, message = ERRORS[script.error]
            headers = {}
            if script.error == "RATE_LIMIT":
                headers = {
                    "X-Rate-Limit-Limit": "600",
                    "X-Rate-Limit-Remaining": "0",
                    "X-Rate-Limit-Reset": str(fake.rate_limit_reset),
                }
            self._error(status, code, message, headers)
            return
        msg_id = str(next(fake._ids))
        with fake._lock:
            fake.accepted += 1
            if fake.record:
                fake.pushes.append(body)
        if fake.delay:
            time.sleep(fake.delay)
        self._reply(200, {"sendno": "0", "msg_id": msg_id})


FakeJPush.handler = _Handler


def main() -> None:
    """``python -m tests.fake_jpush``: serve in this process; prints one JSON line with
    ``url``, ``app_key`` and ``master_secret``, then serves until stdin closes."""
    import sys

    with FakeJPush(record=False) as fake:
        print(json.dumps({"url": fake.url, "app_key": fake.app_key, "master_secret": fake.master_secret}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
