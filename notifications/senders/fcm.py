"""Firebase Cloud Messaging through firebase-admin (the ``fcm`` provider).

Each message is one ``messages:send`` request (``messaging.send``) on a pool
of ``FCM_CONCURRENCY`` threads kept for the provider's life, and each answer
is handed to the dispatcher as it arrives, so the dispatcher records it at
once: a dispatcher killed mid-batch resends only what was still on the wire
(``send_each`` answers only when all 500 of its requests have). Each message
carries the deep-link ``data``, a ``collapse_key`` per posting,
``android.priority=high`` for time-critical kinds and the unread count as the
APNs badge.

Configuration (read by :meth:`FcmProvider.from_config`):

``FIREBASE_CREDENTIALS``
    A service-account key: a file path, or the JSON text itself.
``FCM_ENDPOINT``
    Base URL of the FCM HTTP v1 API (default ``https://fcm.googleapis.com``);
    messages are POSTed to ``{FCM_ENDPOINT}/v1/projects/{project_id}/messages:send``.
    The OAuth token exchange goes to the key's own ``token_uri``. Together
    they let the real client talk to any server speaking FCM (tests use
    ``tests/fake_fcm.py`` on loopback).
``FCM_TIMEOUT_SECONDS`` (default 10)
    Per-request HTTP timeout. The SDK's default (120 s) would hold a
    dispatcher's lease for minutes on one slow connection.
``FCM_CONCURRENCY`` (default 500)
    Requests in flight at once.
``FCM_SDK_RETRIES`` (default 4) and ``FCM_SDK_BACKOFF_SECONDS`` (default 0.5)
    The SDK's own urllib3 retries of HTTP 500/503, as firebase-admin ships
    them. Tests set the back-off to 0. ``Retry-After`` is not slept on inside
    the SDK: the dispatcher turns it into the row's ``next_attempt_at``.

Never twice after a timeout: once a request has been sent, a read timeout
means FCM may well have delivered it. The SDK does not resend it (``read``
retries are off, where firebase-admin ships one), and the message counts as
``sent`` with ``last_error`` "unconfirmed: …" instead of being retried; the
app can drop a repeat anyway (``data.notification_id``). A connect timeout
sent nothing and is retried. :func:`longest_send_seconds` is how long one
send can take at worst; the dispatcher's lease must exceed it.

Private API used — firebase-admin must stay pinned (requirements.txt: 7.7.0):
firebase-admin has no public setting for the FCM URL. :func:`point_at_endpoint`
sets ``firebase_admin.messaging._MessagingService._fcm_url`` (an instance
attribute that ``__init__`` fills from the class constant ``FCM_URL``,
``https://fcm.googleapis.com/v1/projects/{0}/messages:send``) on the app's
service, obtained with ``messaging._get_messaging_service(app)``, and mounts a
``requests`` adapter for the endpoint on ``service._client.session`` (the
SDK only mounts its pooled adapter for ``https://fcm.googleapis.com``).
It checks those attributes exist and fails loudly if an upgrade renamed them.

Targets: firebase-admin 7.7 marks ``Message.token`` deprecated in favour of
``fid`` (Firebase installation IDs). The app registers FCM registration tokens
(``POST /me/devices``), which FCM HTTP v1 takes as ``message.token``, so that
is what we send; the warning is silenced here rather than in every log line.
Moving to FIDs is a change of the app's registration, not of this module.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import firebase_admin
import google.auth.exceptions
import requests.adapters
import requests.exceptions
from firebase_admin import credentials, exceptions, messaging
from google.auth.transport.requests import Request as GoogleAuthRequest
from urllib3.util.retry import Retry

from notifications.senders import PushMessage, PushProvider, PushResult, providers

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 500  # requests in flight at once, as send_each's 500 threads were
DEFAULT_ENDPOINT = "https://fcm.googleapis.com"

# Per-token answers that mean the token is dead for good.
_DEAD_TOKEN_ERRORS = (messaging.UnregisteredError, messaging.SenderIdMismatchError)
# Our side is wrong (keys, the APNs certificate in the Firebase console): keep the device, retry, alert.
_MISCONFIGURED_ERRORS = (
    messaging.ThirdPartyAuthError,
    exceptions.UnauthenticatedError,
    exceptions.PermissionDeniedError,
)
# Transient answers: back off and try again.
_TRANSIENT_ERRORS = (
    messaging.QuotaExceededError,
    exceptions.ResourceExhaustedError,
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
)

_app_names = itertools.count(1)

warnings.filterwarnings("ignore", message=r"Message\.token is deprecated", category=DeprecationWarning)


def load_certificate(value: str | Mapping[str, Any]) -> credentials.Certificate:
    """A service-account certificate from a file path, the JSON text, or a mapping."""
    if isinstance(value, Mapping):
        return credentials.Certificate(dict(value))
    text = value.strip()
    if text.startswith("{"):
        return credentials.Certificate(json.loads(text))
    return credentials.Certificate(text)


CONNECT_RETRIES = 1


def sdk_retry(retries: int = 4, backoff: float = 0.5) -> Retry:
    """firebase-admin's own retry policy (``_http_client.DEFAULT_RETRY_CONFIG``) with
    tunable status retries and back-off, without sleeping on ``Retry-After``, and
    without resending a request whose answer timed out (it may have been delivered)."""
    return Retry(
        connect=CONNECT_RETRIES,
        read=False,
        status=retries,
        status_forcelist=[500, 503],
        raise_on_status=False,
        backoff_factor=backoff,
        allowed_methods=None,
        respect_retry_after_header=False,
    )


def longest_send_seconds(timeout: float, retries: int, backoff: float) -> float:
    """The longest one message's send can take: the token exchange, then every
    attempt (the first, connect retries, status retries) at its full timeout,
    with urllib3's back-off between status retries (capped at 120 s each)."""
    sleeps = sum(min(120.0, backoff * 2 ** (n - 1)) for n in range(1, retries + 1)) if backoff else 0.0
    return timeout + (1 + CONNECT_RETRIES + retries) * timeout + sleeps


def point_at_endpoint(
    app: firebase_admin.App, endpoint: str, *, retry: Retry, pool_size: int = DEFAULT_CONCURRENCY
) -> messaging._MessagingService:
    """Make ``app``'s messaging service send to ``{endpoint}/v1/projects/{project}/messages:send``.

    Uses the private ``_MessagingService._fcm_url`` and ``_client.session`` of
    firebase-admin 7.7.0 (see the module docstring).
    """
    service = messaging._get_messaging_service(app)
    if not hasattr(service, "_fcm_url") or not hasattr(getattr(service, "_client", None), "session"):
        raise RuntimeError(
            "firebase-admin no longer has _MessagingService._fcm_url/_client.session; "
            "FCM_ENDPOINT cannot be applied. Keep firebase-admin pinned to 7.7.0 "
            "or update notifications/senders/fcm.py."
        )
    base = endpoint.rstrip("/")
    service._fcm_url = f"{base}/v1/projects/{service._project_id}/messages:send"
    # The provider runs FCM_CONCURRENCY requests at once; a smaller pool would open
    # and throw away a connection per request beyond its size.
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
    service._client.session.mount(base + "/", adapter)
    return service


@providers.register("fcm")
class FcmProvider(PushProvider):
    """Firebase Cloud Messaging through the real firebase-admin client; one firebase App
    and one pool of ``FCM_CONCURRENCY`` sending threads per provider."""

    serves = ("fcm",)
    device_provider = True
    default_device_provider = True
    settings = (
        "FIREBASE_CREDENTIALS",
        "FCM_ENDPOINT",
        "FCM_TIMEOUT_SECONDS",
        "FCM_SDK_RETRIES",
        "FCM_SDK_BACKOFF_SECONDS",
        "FCM_CONCURRENCY",
    )

    def __init__(
        self,
        service_account: str | Mapping[str, Any],
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = 10.0,
        sdk_retries: int = 4,
        sdk_backoff: float = 0.5,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        certificate = load_certificate(service_account)
        self.project_id = certificate.project_id
        self.endpoint = endpoint.rstrip("/")
        self.concurrency = max(1, int(concurrency))
        self.app = firebase_admin.initialize_app(
            certificate,
            {"httpTimeout": timeout, "projectId": certificate.project_id},
            name=f"yz-push-{next(_app_names)}",
        )
        self._service = point_at_endpoint(
            self.app, self.endpoint, retry=sdk_retry(sdk_retries, sdk_backoff), pool_size=self.concurrency
        )
        self._credential = self.app.credential.get_credential()
        self._auth_request = GoogleAuthRequest()
        self._refresh_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fcm-send")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FcmProvider:
        secret = config.get("FIREBASE_CREDENTIALS")
        if not secret:
            raise ValueError("PUSH_BACKEND fcm needs FIREBASE_CREDENTIALS (a key file path or its JSON)")
        return cls(
            secret,
            config.get("FCM_ENDPOINT") or DEFAULT_ENDPOINT,
            timeout=float(config.get("FCM_TIMEOUT_SECONDS", 10)),
            sdk_retries=int(config.get("FCM_SDK_RETRIES", 4)),
            sdk_backoff=float(config.get("FCM_SDK_BACKOFF_SECONDS", 0.5)),
            concurrency=int(config.get("FCM_CONCURRENCY") or DEFAULT_CONCURRENCY),
        )

    @classmethod
    def startup_problems(cls, config: Mapping[str, Any], *, batch_size: int, lease_seconds: float) -> list[str]:
        longest = longest_send_seconds(
            float(config.get("FCM_TIMEOUT_SECONDS", 10)),
            int(config.get("FCM_SDK_RETRIES", 4)),
            float(config.get("FCM_SDK_BACKOFF_SECONDS", 0.5)),
        )
        # Two batches may be queued on the pool at once (the dispatcher claims the next
        # while the first is on the wire): the last message of the second waits for
        # ceil(2 * batch / concurrency) sends before its own.
        rounds = math.ceil(2 * batch_size / max(1, int(config.get("FCM_CONCURRENCY") or DEFAULT_CONCURRENCY)))
        if lease_seconds <= longest * rounds:
            return [
                f"PUSH_LEASE_SECONDS ({lease_seconds:g}) must exceed the longest time a claimed FCM push can take "
                f"({longest:g} s per send from FCM_TIMEOUT_SECONDS, FCM_SDK_RETRIES and FCM_SDK_BACKOFF_SECONDS, "
                f"times {rounds} rounds of FCM_CONCURRENCY), or another dispatcher resends rows still in flight"
            ]
        return []

    @classmethod
    def doctor(cls, config: Mapping[str, Any]) -> str | None:
        secret = config.get("FIREBASE_CREDENTIALS")
        if not secret:
            return "FIREBASE_CREDENTIALS is not set"
        try:
            load_certificate(secret)
        except Exception as exc:  # noqa: BLE001
            return f"FIREBASE_CREDENTIALS cannot be read as a service-account key ({type(exc).__name__})"
        return None

    @property
    def messages_url(self) -> str:
        return self._service._fcm_url

    def close(self) -> None:
        """Stop the sending threads and release the firebase App (its HTTP sessions)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        firebase_admin.delete_app(self.app)

    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, PushResult]]:
        """One ``messages:send`` request per message on the pool, each answer yielded as it arrives."""
        if not messages:
            return
        try:
            self._ensure_access_token()
        except Exception as exc:  # noqa: BLE001 - every message shares the credential
            log.warning("fcm token exchange failed: %s", exc, extra={"provider": self.name})
            outcome = "misconfigured" if isinstance(exc, google.auth.exceptions.RefreshError) else "retry"
            error = _short(f"auth: {type(exc).__name__}: {exc}")
            yield from ((i, PushResult(outcome, error)) for i in range(len(messages)))
            return
        futures = {self._pool.submit(self.send_one, message): i for i, message in enumerate(messages)}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def send_one(self, message: PushMessage) -> PushResult:
        """Send one message and read FCM's answer."""
        try:
            message_id = messaging.send(build_message(message), app=self.app)
        except ValueError as exc:
            return PushResult("failed", _short(f"invalid message: {exc}"))
        except exceptions.FirebaseError as exc:
            return classify_error(exc)
        except Exception as exc:  # noqa: BLE001 - one message's surprise is a retry, not a lost batch
            return PushResult("retry", _short(f"{type(exc).__name__}: {exc}"))
        return PushResult("sent", message_id=message_id)

    def _ensure_access_token(self) -> None:
        """Exchange the key for an access token once, before the pool's threads would each try."""
        if self._credential.valid:
            return
        with self._refresh_lock:
            if not self._credential.valid:
                self._credential.refresh(self._auth_request)


def build_message(message: PushMessage) -> messaging.Message:
    """The FCM HTTP v1 message for one token; platform blocks only for its platform."""
    android = apns = webpush = None
    # A token of an unknown platform gets every block; FCM applies the one that fits.
    every = message.platform not in ("android", "ios", "web")
    if every or message.platform == "android":
        android = messaging.AndroidConfig(
            priority="high" if message.high_priority else "normal",
            collapse_key=message.collapse_key,
        )
    if every or message.platform == "ios":
        headers = {"apns-priority": "10" if message.high_priority else "5"}
        if message.collapse_key:
            headers["apns-collapse-id"] = message.collapse_key
        apns = messaging.APNSConfig(
            headers=headers,
            payload=messaging.APNSPayload(aps=messaging.Aps(badge=message.badge, sound="default")),
        )
    if every or message.platform == "web":
        webpush = messaging.WebpushConfig(headers={"Urgency": "high" if message.high_priority else "normal"})
    return messaging.Message(
        token=message.token,
        notification=messaging.Notification(title=message.title, body=message.body),
        data={k: str(v) for k, v in message.data.items()},
        android=android,
        apns=apns,
        webpush=webpush,
    )


def classify_error(exc: exceptions.FirebaseError) -> PushResult:
    """Map FCM's answer to one failed send to an outcome (see DESIGN.md, Push)."""
    error = _short(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, _DEAD_TOKEN_ERRORS):
        return PushResult("dead_token", error)
    if isinstance(exc, exceptions.DeadlineExceededError) and _answer_timed_out(exc):
        # The request reached FCM; only its answer is missing. Sending it again
        # would deliver it twice far more often than it would save a message.
        return PushResult("sent", _short(f"unconfirmed: {error}"))
    if isinstance(exc, exceptions.InvalidArgumentError) and names_the_token(exc):
        return PushResult("dead_token", error)
    if isinstance(exc, _MISCONFIGURED_ERRORS):
        return PushResult("misconfigured", error)
    if isinstance(exc, _TRANSIENT_ERRORS):
        return PushResult("retry", error, retry_after=_retry_after(exc))
    return PushResult("failed", error)


def names_the_token(exc: exceptions.FirebaseError) -> bool:
    """Whether an INVALID_ARGUMENT is about the registration token (not the payload).

    FCM says so in a ``google.rpc.BadRequest`` detail whose field violation is
    ``message.token``, and in its message ("...registration token...").
    """
    response = getattr(exc, "http_response", None)
    if response is not None:
        try:
            details = response.json().get("error", {}).get("details", [])
        except (ValueError, AttributeError):
            details = []
        for detail in details if isinstance(details, list) else []:
            for violation in (detail or {}).get("fieldViolations", []) if isinstance(detail, dict) else []:
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    return "registration token" in str(exc).lower()


def _answer_timed_out(exc: exceptions.FirebaseError) -> bool:
    """A read timeout (sent, unanswered), as opposed to a connect timeout (never sent)."""
    cause = getattr(exc, "cause", None)
    return isinstance(cause, requests.exceptions.ReadTimeout) and not isinstance(
        cause, requests.exceptions.ConnectTimeout
    )


MAX_RETRY_AFTER_SECONDS = 3600.0


def _retry_after(exc: exceptions.FirebaseError) -> float | None:
    """FCM's ``Retry-After`` in seconds, bounded to [0, 1 h] (a huge or infinite
    value must not stall a row forever, nor overflow a date)."""
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None  # an HTTP date; the exponential back-off covers it
    if seconds is None or not math.isfinite(seconds):
        return None if seconds is None else MAX_RETRY_AFTER_SECONDS
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))


def _short(text: str) -> str:
    return text if len(text) <= 500 else text[:497] + "..."
