"""A fake Firebase Cloud Messaging server: a real threaded HTTP server on 127.0.0.1.

It speaks the two protocols firebase-admin uses for messaging:

- the OAuth 2.0 token exchange (``POST /token``, JWT bearer grant, RFC 7523):
  the assertion's RS256 signature is checked against the public key of the
  service account it was issued for, with Google's audience, a messaging
  scope and an unexpired ``exp``; the answer is a bearer access token;
- FCM HTTP v1 (``POST /v1/projects/{project}/messages:send``): the bearer
  token must be one it issued, and the body is validated the way FCM does —
  exactly one of ``token``/``topic``/``condition`` (or ``fid``), ``data`` values strings
  only (and no reserved keys), ``android.priority`` normal/high, an integer
  APNs badge, the payload at most 4 KiB — answering FCM's own error bodies
  (``google.rpc.Status`` with an ``FcmError`` detail) so the SDK raises its
  real exception classes.

Every send request is recorded (``requests``; accepted messages in
``messages``). A token can be scripted to answer ``UNREGISTERED`` (404),
``QUOTA_EXCEEDED`` (429), ``UNAVAILABLE`` (503), ``INTERNAL`` (500),
``INVALID_ARGUMENT`` (400, naming the token), ``SENDER_ID_MISMATCH`` (403) or
to ``HANG`` (no answer until released), always or for the next ``times``
requests. ``delay`` (seconds) makes every send answer late: the message is
accepted when it arrives, as FCM would have, and the answer follows the delay
(a client whose timeout is shorter gives up on a message that was delivered).

Use :meth:`FakeFcm.service_account` for a freshly generated key whose
``token_uri`` points at the fake; no key is ever written to the repository.

``GET /_fake/stats`` answers the counters (and the process's CPU time), and
``python -m tests.fake_fcm`` serves it in a process of its own (bench/push.py).
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.loopback import JsonHandler, LoopbackServer

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MESSAGING_SCOPES = {
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
}
MAX_PAYLOAD_BYTES = 4096
TARGETS = ("token", "topic", "condition", "fid")  # fid: a Firebase installation ID
RESERVED_DATA_KEYS = {"from", "notification", "message_type", "collapse_key"}
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"

# scripted error -> (HTTP status, google.rpc status, message, FCM error code)
ERRORS: dict[str, tuple[int, str, str, str]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"),
    "QUOTA_EXCEEDED": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' of service 'fcm.googleapis.com'.",
        "QUOTA_EXCEEDED",
    ),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered.", "INTERNAL"),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
        "INVALID_ARGUMENT",
    ),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"),
}
HANG = "HANG"


@dataclass
class Script:
    error: str
    times: int | None  # None = every time
    retry_after: int | None = None


@dataclass
class RecordedRequest:
    path: str
    status: int
    token: str | None
    body: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class FakeFcm(LoopbackServer):
    """Start with ``with FakeFcm() as fcm:`` (or ``start()``/``stop()``); ``url`` is what FCM_ENDPOINT should be."""

    def __init__(self, project_id: str = "yz-fake-project", *, record: bool = True) -> None:
        super().__init__()
        self.project_id = project_id
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict] = []
        self.token_exchanges = 0
        self.delay = 0.0  # seconds every send answer is held back
        self.sends = 0  # send requests answered, and of those
        self.accepted = 0  # answered 200
        self._lock = threading.Lock()
        self._scripts: dict[str, Script] = {}
        self._public_keys: dict[str, Any] = {}  # client_email -> public key
        self._access_tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._private_key_pem: str | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    # --- credentials -------------------------------------------------------------

    def service_account(self) -> dict[str, str]:
        """A service-account key (fresh RSA 2048, generated once per fake) whose
        ``token_uri`` is this fake; its public key is registered here."""
        email = f"firebase-adminsdk-fake@{self.project_id}.iam.gserviceaccount.com"
        if self._private_key_pem is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self._private_key_pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            self._public_keys[email] = key.public_key()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": self._private_key_pem,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": f"{self.url}/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": f"{self.url}/certs",
            "client_x509_cert_url": f"{self.url}/certs/{email}",
            "universe_domain": "googleapis.com",
        }

    # --- scripting ---------------------------------------------------------------

    def script(self, token: str, error: str, times: int | None = None, *, retry_after: int | None = None) -> None:
        """Answer ``error`` (a key of ERRORS, or HANG) to sends to ``token``."""
        error = error.upper()
        if error not in ERRORS and error != HANG:
            raise ValueError(f"unknown FCM error {error!r}")
        with self._lock:
            self._scripts[token] = Script(error, times, retry_after)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.messages.clear()
            self.sends = 0
            self.accepted = 0
            self.delay = 0.0
            self._release.clear()

    # --- inspection --------------------------------------------------------------

    def messages_to(self, token: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m.get("token") == token]

    def requests_for(self, token: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.token == token]

    # --- internals ---------------------------------------------------------------

    def _take_script(self, token: str | None) -> Script | None:
        if token is None:
            return None
        with self._lock:
            script = self._scripts.get(token)
            if script is None:
                return None
            if script.times is not None:
                script.times -= 1
                if script.times <= 0:
                    del self._scripts[token]
            return script

    def _exchange_token(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type", [""])[0] != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}
        assertion = form.get("assertion", [""])[0]
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            public_key = self._public_keys[unverified["iss"]]
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                options={"require": ["iss", "aud", "exp", "iat"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {exc}"}
        if not MESSAGING_SCOPES & set(str(claims.get("scope", "")).split()):
            return 400, {"error": "invalid_scope", "error_description": "No messaging scope."}
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens.add(token)
            self.token_exchanges += 1
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return header[len("Bearer ") :] in self._access_tokens


def validate_message(message: Any) -> tuple[str, str] | None:
    """FCM's checks on a message: None when valid, else (field, description)."""
    if not isinstance(message, dict):
        return "message", "Invalid JSON payload: message must be an object"
    targets = [k for k in TARGETS if message.get(k) not in (None, "")]
    if len(targets) != 1:
        return "message", "Exactly one of token, topic, condition or fid must be specified"
    target = targets[0]
    if not isinstance(message[target], str):
        return f"message.{target}", f"Invalid value at 'message.{target}' (TYPE_STRING)"
    data = message.get("data")
    if data is not None:
        if not isinstance(data, dict):
            return "message.data", "Invalid value at 'message.data' (map<string, string>)"
        for i, (key, value) in enumerate(data.items()):
            if not isinstance(value, str):
                return f"message.data[{i}].value", f"Invalid value at 'message.data[{i}].value' (TYPE_STRING)"
            if key in RESERVED_DATA_KEYS or key.startswith(("google.", "gcm.")):
                return f"message.data[{i}].key", f"Invalid data key: {key} is reserved"
    android = message.get("android")
    if android is not None:
        if not isinstance(android, dict) or android.get("priority", "normal").lower() not in ("normal", "high"):
            return "message.android.priority", "Invalid value at 'message.android.priority'"
    aps = (((message.get("apns") or {}).get("payload") or {}).get("aps")) or {}
    if "badge" in aps and (not isinstance(aps["badge"], int) or isinstance(aps["badge"], bool)):
        return "message.apns.payload.aps.badge", "Invalid value at 'message.apns.payload.aps.badge'"
    payload = {k: v for k, v in message.items() if k not in TARGETS}
    if len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_PAYLOAD_BYTES:
        return "message", "Message is too big"
    return None


def error_body(status: int, rpc_status: str, message: str, fcm_code: str | None, field_name: str | None = None):
    details: list[dict] = []
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if field_name:
        details.append({"@type": BAD_REQUEST, "fieldViolations": [{"field": field_name, "description": message}]})
    return {"error": {"code": status, "message": message, "status": rpc_status, "details": details}}


class _Handler(JsonHandler):
    fake: FakeFcm
    _retry_after: int | None = None

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path == "/_fake/stats":
            fake = self.fake
            with fake._lock:
                stats = {
                    "sends": fake.sends,
                    "accepted": fake.accepted,
                    "token_exchanges": fake.token_exchanges,
                    "cpu_seconds": time.process_time(),  # of the whole process: meaningful when run alone
                }
            self._reply(200, stats)
            return
        self._reply(404, error_body(404, "NOT_FOUND", "Not found.", None))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            status, body = self.fake._exchange_token(urllib.parse.parse_qs(raw.decode()))
            self._reply(status, body)
            return
        parts = path.strip("/").split("/")
        if len(parts) == 4 and parts[0] == "v1" and parts[1] == "projects" and parts[3] == "messages:send":
            self._send_message(parts[2], raw)
            return
        self._reply(404, error_body(404, "NOT_FOUND", f"No such method: {path}", None))

    def _send_message(self, project: str, raw: bytes) -> None:
        fake = self.fake
        token = None
        body = None
        self._retry_after = None
        if not fake._authorized(self.headers.get("Authorization")):
            status, reply, error = (
                401,
                error_body(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", None),
                "UNAUTHENTICATED",
            )
        elif project != fake.project_id:
            status, reply, error = (
                403,
                error_body(403, "PERMISSION_DENIED", f"Permission denied on project {project}", None),
                "PERMISSION_DENIED",
            )
        else:
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else None
            token = message.get("token") if isinstance(message, dict) else None
            problem = validate_message(message)
            if problem is not None:
                field_name, description = problem
                status, reply, error = (
                    400,
                    error_body(400, "INVALID_ARGUMENT", description, "INVALID_ARGUMENT", field_name),
                    "INVALID_ARGUMENT",
                )
            else:
                status, reply, error = self._scripted_or_accepted(token, message)
                if status is None:
                    return  # hung up on
        headers = {}
        if status == 429:
            if self._retry_after is not None:
                headers["Retry-After"] = str(self._retry_after)
        with fake._lock:
            fake.sends += 1
            if status == 200:
                fake.accepted += 1
            if fake.record:
                fake.requests.append(
                    RecordedRequest(
                        "/v1/projects/" + project + "/messages:send",
                        status,
                        token,
                        body,
                        {k.lower(): v for k, v in self.headers.items()},
                        error,
                    )
                )
                if status == 200:
                    fake.messages.append(body["message"])
        if fake.delay:
            time.sleep(fake.delay)
        self._reply(status, reply, headers)

    def _scripted_or_accepted(self, token: str | None, message: dict):
        fake = self.fake
        script = fake._take_script(token)
        if script is not None and script.error == HANG:
            with fake._lock:
                fake.requests.append(RecordedRequest(self.path, 0, token, {"message": message}, {}, HANG))
            # hold the connection, never answer; the client's timeout fires first
            fake._release.wait(timeout=60)
            self.close_connection = True
            return None, None, None
        if script is not None:
            http_status, rpc_status, text, fcm_code = ERRORS[script.error]
            field_name = "message.token" if script.error == "INVALID_ARGUMENT" else None
            self._retry_after = script.retry_after
            return http_status, error_body(http_status, rpc_status, text, fcm_code, field_name), script.error
        message_id = f"projects/{fake.project_id}/messages/{next(fake._ids)}:{int(time.time() * 1000)}"
        return 200, {"name": message_id}, None


FakeFcm.handler = _Handler


def main() -> None:
    """``python -m tests.fake_fcm``: serve in this process (benchmarks run it apart from
    the client, so the two do not share a GIL). Prints one JSON line with ``url`` and a
    fresh ``service_account``, then serves until stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--project", default="yz-fake-project")
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    args = parser.parse_args()
    with FakeFcm(args.project, record=args.record) as fake:
        print(json.dumps({"url": fake.url, "service_account": fake.service_account()}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
