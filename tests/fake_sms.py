"""A fake Aliyun SMS (Dysmsapi) server: a real threaded HTTP server on 127.0.0.1.

It speaks the ``SendSms`` call as the official client
(``alibabacloud-dysmsapi20170525``) makes it — an RPC-style ``POST /`` with
``x-acs-action: SendSms``, ``x-acs-version: 2017-05-25``, the parameters in
the query string, and an ``ACS3-HMAC-SHA256`` ``Authorization`` header — and
checks the signature against the AccessKey it was made with, so a client
that signs wrongly, or with another secret, is refused as Aliyun would
(``SignatureDoesNotMatch``, HTTP 400). A good request answers
``{"Code": "OK", "BizId", "RequestId", "Message"}``, and the message is kept
(``messages``: phone, sign name, template code, template parameters).

A phone can be scripted to answer any Aliyun error: a business error in an
HTTP 200 body (``isv.BUSINESS_LIMIT_CONTROL``, ``isv.MOBILE_NUMBER_ILLEGAL``,
``isv.AMOUNT_NOT_ENOUGH``, …), or an HTTP error status with its code
(``Throttling.User`` 400, ``ServiceUnavailable`` 503); ``delay`` answers late
(a client whose timeout is shorter gives up on a message that was sent).
No key is ever written to the repository: the test makes one.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGN_TYPE = "ACS3-HMAC-SHA256"


@dataclass
class Script:
    code: str
    status: int = 200
    times: int | None = None  # None: always


class FakeSms:
    def __init__(self) -> None:
        self.access_key_id = "LTAI" + secrets.token_hex(8)
        self.access_key_secret = secrets.token_urlsafe(24)
        self.messages: list[dict] = []
        self.requests = 0
        self.delay = 0.0
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    def start(self) -> FakeSms:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeSms:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def config(self) -> dict[str, str]:
        """The app settings that point the real client at this fake."""
        return {
            "SMS_BACKEND": "aliyun",
            "SMS_ENDPOINT": self.url,
            "ALIYUN_ACCESS_KEY_ID": self.access_key_id,
            "ALIYUN_ACCESS_KEY_SECRET": self.access_key_secret,
            "SMS_SIGN_NAME": "甬志愿",
            "SMS_TEMPLATE_CODE": "SMS_000000001",
        }

    def script(self, phone: str, code: str, status: int = 200, times: int | None = None) -> None:
        """Answer ``code`` (with HTTP ``status``) for ``phone`` (national form), always or ``times`` times."""
        with self._lock:
            self._scripts[phone] = Script(code, status, times)

    def messages_to(self, phone: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m["PhoneNumbers"] == phone]

    def _take_script(self, phone: str) -> Script | None:
        with self._lock:
            script = self._scripts.get(phone)
            if script is None:
                return None
            if script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    del self._scripts[phone]
            return script

    def signature_ok(self, method: str, path: str, query: str, headers) -> bool:
        auth = headers.get("Authorization") or ""
        if not auth.startswith(SIGN_TYPE + " "):
            return False
        parts = dict(item.split("=", 1) for item in auth[len(SIGN_TYPE) + 1 :].split(",") if "=" in item)
        if parts.get("Credential") != self.access_key_id:
            return False
        signed = parts.get("SignedHeaders", "").split(";")
        canonical_headers = "".join(f"{name}:{(headers.get(name) or '').strip()}\n" for name in signed)
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        canonical_query = "&".join(
            f"{k}={urllib.parse.quote(v, safe='~')}" for k, v in sorted(params, key=lambda kv: kv[0])
        )
        canonical = "\n".join(
            [method, path or "/", canonical_query, canonical_headers, ";".join(signed), headers["x-acs-content-sha256"]]
        )
        to_sign = f"{SIGN_TYPE}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(self.access_key_secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, parts.get("Signature", ""))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSms


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with fake._lock:
            fake.requests += 1
        path, _, query = self.path.partition("?")
        request_id = f"FAKE-{next(fake._ids)}"
        if self.headers.get("x-acs-action") != "SendSms" or self.headers.get("x-acs-version") != "2017-05-25":
            self._reply(404, {"Code": "InvalidAction.NotFound", "Message": "no such action", "RequestId": request_id})
            return
        if not fake.signature_ok("POST", path, query, self.headers):
            body = {"Code": "SignatureDoesNotMatch", "Message": "bad signature", "RequestId": request_id}
            self._reply(400, body)
            return
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        missing = [k for k in ("PhoneNumbers", "SignName", "TemplateCode") if not params.get(k)]
        if missing:
            body = {"Code": "MissingParameter", "Message": f"{missing[0]} is mandatory", "RequestId": request_id}
            self._reply(400, body)
            return
        script = fake._take_script(params["PhoneNumbers"])
        if script is not None:
            self._reply(script.status, {"Code": script.code, "Message": script.code, "RequestId": request_id})
            return
        # Accepted when it arrives, as Aliyun would: a late answer does not unsend it.
        with fake._lock:
            fake.messages.append(
                {
                    "PhoneNumbers": params["PhoneNumbers"],
                    "SignName": params["SignName"],
                    "TemplateCode": params["TemplateCode"],
                    "TemplateParam": json.loads(params.get("TemplateParam") or "{}"),
                }
            )
        if fake.delay:
            time.sleep(fake.delay)
        self._reply(200, {"Code": "OK", "Message": "OK", "BizId": f"{time.time_ns()}", "RequestId": request_id})
