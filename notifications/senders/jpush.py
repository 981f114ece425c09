"""JPush (极光推送) through its official Python client ``jpush`` (the ``jpush`` provider).

FCM does not reach Android phones in mainland China (no Google services);
JPush does, and carries the phone makers' own channels (Huawei, Honor,
Xiaomi, OPPO, vivo) and Apple's. A device registered with ``provider:
jpush`` gives its JPush registration ID as its token.

Each message is one call of the v3 push API (``POST {JPUSH_ENDPOINT}/v3/push``)
naming one registration ID, on a pool of ``JPUSH_CONCURRENCY`` threads kept
for the provider's life; each answer is handed to the dispatcher as it arrives.
A v3 call carries one payload, and ours differ from device to device (the
notification's id, the user's language, the iOS badge), so a call per device
is what the standard API allows; it is also the only shape in which JPush's
answer ("cannot find user by this audience") names the one registration ID it
is about. JPush's VIP-only batch single push (distinct payloads in one call)
is not used: it needs a commercial contract.

The push: the notification's title and body as the alert (Android ``title`` +
``alert``, iOS ``alert: {title, body}``), the same ``data`` as an FCM push in
``extras``, the unread count as the iOS badge, Android priority 2 for
time-critical kinds, and ``options``: ``apns_production``
(``JPUSH_APNS_PRODUCTION``, default true, JPush's own default: a development
build of the iOS app needs false), ``apns_collapse_id`` per posting and
``third_party_channel`` (``JPUSH_THIRD_PARTY_CHANNEL``, JSON; default
:data:`DEFAULT_THIRD_PARTY_CHANNEL`: the message classed as a service/system
message with each phone maker, so their channels do not throttle or fold it
as marketing).

Answers: a registration ID JPush does not know (error 1011) is a dead device;
a refused key (HTTP 401, errors 1004/1008, an app barred from the API:
2003/2004) is ``misconfigured``: the rows wait and the log says so, nothing is
dropped; the rate limit (HTTP 429, error 2002) stops this provider's calls
until ``X-Rate-Limit-Reset`` and its messages wait at least that long; JPush's
internal errors, unreachable or timed-out connections are retried. A call
whose answer timed out was received: it counts as sent ("unconfirmed"),
never sent twice.

Pointing the client elsewhere: ``jpush`` builds its URLs from its table of
zones (``jpush.common.ZONES``); the provider adds a zone for
``JPUSH_ENDPOINT`` (keeping the client's ``/v3/...`` paths), so the real
client talks to any server speaking the v3 push API (tests:
``tests/fake_jpush.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import jpush
import requests.adapters
import requests.exceptions
from jpush import common as jpush_common
from urllib3.util.retry import Retry

from notifications.senders import PushMessage, PushProvider, PushResult, providers

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.jpush.cn"
DEFAULT_CONCURRENCY = 100
DEFAULT_TIMEOUT = 10.0
# The message classed as a service/system message with each maker's channel.
DEFAULT_THIRD_PARTY_CHANNEL: dict[str, dict[str, Any]] = {
    "huawei": {"importance": "NORMAL", "category": "WORK"},
    "honor": {"importance": "NORMAL"},
    "vivo": {"classification": 1},
    "oppo": {"category": "TODO", "notify_level": 2},  # OPPO's own category name: to-do reminders (待办)
}
TIME_TO_LIVE_SECONDS = 86400  # offline phones get it within a day, as FCM keeps it

# JPush error codes (v3 push API)
UNKNOWN_AUDIENCE = 1011
RATE_LIMITED = 2002
MISCONFIGURED_CODES = frozenset({1004, 1008, 2003, 2004})
TRANSIENT_CODES = frozenset({1000, 1030})
MAX_RETRY_AFTER_SECONDS = 3600.0
_PROVIDER = {"provider": "jpush"}  # log lines carry the provider


def zone_for(endpoint: str) -> str:
    """The ``jpush`` zone whose push URL is ``{endpoint}/v3/`` (added to the client's table once)."""
    base = endpoint.rstrip("/")
    name = "YZ-" + hashlib.blake2b(base.encode(), digest_size=6).hexdigest().upper()
    if name not in jpush_common.ZONES:
        template = jpush_common.ZONES["DEFAULT"]
        jpush_common.ZONES[name] = {
            key: url.replace("https://api.jpush.cn", base) if url.startswith("https://api.jpush.cn") else url
            for key, url in template.items()
        }
    return name


def third_party_channel(config: Mapping[str, Any]) -> dict[str, Any]:
    """``JPUSH_THIRD_PARTY_CHANNEL`` (JSON object, or a mapping) or the default."""
    value = config.get("JPUSH_THIRD_PARTY_CHANNEL")
    if value in (None, ""):
        return DEFAULT_THIRD_PARTY_CHANNEL
    parsed = json.loads(value) if isinstance(value, str) else dict(value)
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise ValueError("JPUSH_THIRD_PARTY_CHANNEL must be a JSON object of objects, one per phone maker")
    return parsed


def as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


@providers.register("jpush")
class JPushProvider(PushProvider):
    """JPush through the official client; one client (one keep-alive session) per provider."""

    serves = ("jpush",)
    device_provider = True
    settings = (
        "JPUSH_APP_KEY",
        "JPUSH_MASTER_SECRET",
        "JPUSH_APNS_PRODUCTION",
        "JPUSH_ENDPOINT",
        "JPUSH_THIRD_PARTY_CHANNEL",
        "JPUSH_TIMEOUT_SECONDS",
        "JPUSH_CONCURRENCY",
    )

    def __init__(
        self,
        app_key: str,
        master_secret: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        apns_production: bool = True,
        channels: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.concurrency = max(1, int(concurrency))
        self.apns_production = apns_production
        self.channels = dict(DEFAULT_THIRD_PARTY_CHANNEL if channels is None else channels)
        self.client = jpush.JPush(app_key, master_secret, timeout=timeout, zone=zone_for(self.endpoint))
        # One connection per thread, kept alive; a connection that never opens is tried
        # once more, a request that was sent is never sent again by the HTTP layer.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=self.concurrency, max_retries=Retry(connect=1, read=False, status=0)
        )
        self.client.session.mount(self.endpoint + "/", adapter)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="jpush-send")
        self._paused_until = 0.0  # monotonic: the rate limit's reset
        self._pause_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> JPushProvider:
        key, secret = config.get("JPUSH_APP_KEY"), config.get("JPUSH_MASTER_SECRET")
        if not key or not secret:
            raise ValueError("PUSH_BACKEND jpush needs JPUSH_APP_KEY and JPUSH_MASTER_SECRET")
        return cls(
            key,
            secret,
            config.get("JPUSH_ENDPOINT") or DEFAULT_ENDPOINT,
            apns_production=as_bool(config.get("JPUSH_APNS_PRODUCTION"), True),
            channels=third_party_channel(config),
            timeout=float(config.get("JPUSH_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT),
            concurrency=int(config.get("JPUSH_CONCURRENCY") or DEFAULT_CONCURRENCY),
        )

    @classmethod
    def startup_problems(cls, config: Mapping[str, Any], *, batch_size: int, lease_seconds: float) -> list[str]:
        problems = []
        try:
            third_party_channel(config)
        except ValueError as exc:
            problems.append(str(exc))
        # a call is one attempt plus one connect retry, each at most the timeout
        longest = 2 * float(config.get("JPUSH_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT)
        rounds = math.ceil(2 * batch_size / max(1, int(config.get("JPUSH_CONCURRENCY") or DEFAULT_CONCURRENCY)))
        if lease_seconds <= longest * rounds:
            problems.append(
                f"PUSH_LEASE_SECONDS ({lease_seconds:g}) must exceed the longest time a claimed JPush push can take "
                f"({longest:g} s per call from JPUSH_TIMEOUT_SECONDS, times {rounds} rounds of JPUSH_CONCURRENCY)"
            )
        return problems

    @classmethod
    def doctor(cls, config: Mapping[str, Any]) -> str | None:
        problems = cls.startup_problems(config, batch_size=1, lease_seconds=float("inf"))
        if not config.get("JPUSH_APP_KEY") or not config.get("JPUSH_MASTER_SECRET"):
            problems.insert(0, "JPUSH_APP_KEY and JPUSH_MASTER_SECRET must both be set")
        return "; ".join(problems) or None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.session.close()

    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, PushResult]]:
        futures = {self._pool.submit(self.send_one, message): i for i, message in enumerate(messages)}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def build_push(self, message: PushMessage) -> jpush.Push:
        """The client's push for one device (its ``payload`` is the v3 body)."""
        push = self.client.create_push()
        push.audience = jpush.audience(jpush.registration_id(message.token))
        push.platform = jpush.platform("ios" if message.platform == "ios" else "android")
        extras = {str(k): str(v) for k, v in message.data.items()}
        push.notification = jpush.notification(
            alert=message.body,
            android=jpush.android(
                alert=message.body, title=message.title, extras=extras, priority=2 if message.high_priority else 0
            ),
            ios=jpush.ios(
                alert={"title": message.title, "body": message.body},
                badge=message.badge,
                sound="default",
                extras=extras,
                thread_id=message.collapse_key,
            ),
        )
        options: dict[str, Any] = {
            "apns_production": self.apns_production,
            "time_to_live": TIME_TO_LIVE_SECONDS,
            "third_party_channel": self.channels,
        }
        if message.collapse_key:
            options["apns_collapse_id"] = message.collapse_key
        push.options = options
        return push

    def send_one(self, message: PushMessage) -> PushResult:
        """One call for one device, read into an outcome."""
        if message.platform == "web":
            return PushResult("failed", "JPush does not deliver to web browsers")
        waiting = self._paused_until - time.monotonic()
        if waiting > 0:
            return PushResult("retry", "rate limited: waiting for the reset", retry_after=waiting)
        try:
            response = self.build_push(message).send()
        except jpush.Unauthorized as exc:
            return self._misconfigured(f"Unauthorized: {exc}")
        except jpush.JPushFailure as exc:
            return self.classify_failure(exc)
        except jpush_common.APIConnectionException as exc:
            return PushResult("retry", _short(f"connect timeout: {exc}"))
        except jpush_common.APIRequestException as exc:
            cause = exc.__context__
            if isinstance(cause, requests.exceptions.ReadTimeout):
                # the call reached JPush; only its answer is missing: never send it twice
                return PushResult("sent", _short(f"unconfirmed: {type(cause).__name__}: {cause}"))
            return PushResult("retry", _short(f"{type(cause or exc).__name__}: {cause or exc}"))
        except ValueError as exc:
            return PushResult("failed", _short(f"invalid message: {exc}"))
        return PushResult("sent", message_id=str((response.payload or {}).get("msg_id") or ""))

    def classify_failure(self, exc: jpush.JPushFailure) -> PushResult:
        """JPush's error answer to one call."""
        status = getattr(exc.response, "status_code", None)
        code = exc.error_code
        error = _short(f"JPush {status} {code}: {exc.details}")
        if code == UNKNOWN_AUDIENCE:
            return PushResult("dead_token", error)
        if code == RATE_LIMITED or status == 429:
            reset = _reset_seconds(exc.response)
            with self._pause_lock:
                self._paused_until = max(self._paused_until, time.monotonic() + reset)
            log.warning("jpush rate limit reached: pausing %.0f s", reset, extra=_PROVIDER)
            return PushResult("retry", error, retry_after=reset)
        if code in MISCONFIGURED_CODES or status in (401, 403):
            return self._misconfigured(error)
        if code in TRANSIENT_CODES or (status is not None and status >= 500):
            return PushResult("retry", error)
        return PushResult("failed", error)

    def _misconfigured(self, error: str) -> PushResult:
        log.error("jpush refused the call (%s): check JPUSH_APP_KEY and JPUSH_MASTER_SECRET", error, extra=_PROVIDER)
        return PushResult("misconfigured", _short(error))


def _reset_seconds(response) -> float:
    """``X-Rate-Limit-Reset`` (seconds until the window resets), bounded to [1 s, 1 h]."""
    value = response.headers.get("X-Rate-Limit-Reset") if response is not None else None
    try:
        seconds = float(value) if value else 60.0
    except ValueError:
        seconds = 60.0
    if not math.isfinite(seconds):
        seconds = MAX_RETRY_AFTER_SECONDS
    return min(MAX_RETRY_AFTER_SECONDS, max(1.0, seconds))


def _short(text: str) -> str:
    return text if len(text) <= 500 else text[:497] + "..."
