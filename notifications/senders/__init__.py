"""Push senders behind one interface (the provider pattern of CTFd's email providers).

A sender takes a list of :class:`PushMessage` (one per device token) and
returns one :class:`PushResult` per message, in the same order. It never
raises for a failed delivery: the outcome of every token is a value, so the
dispatcher can record each one. ``PUSH_BACKEND`` picks the sender:

- ``fcm``: Firebase Cloud Messaging through firebase-admin (production);
- ``log``: writes each push to the log (the development default);
- ``memory``: keeps pushes in a list and can be told to fail (tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# sent: the provider accepted it. dead_token: the token will never work again
# (delete the device). retry: a transient failure (back off, try again).
# failed: a permanent failure for this message.
Outcome = Literal["sent", "dead_token", "retry", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "dead_token", "retry", "failed")


@dataclass(frozen=True)
class PushMessage:
    """One push to one device token."""

    notification_id: int
    token: str
    platform: str  # android | ios | web
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    collapse_key: str | None = None
    high_priority: bool = False
    badge: int | None = None


@dataclass(frozen=True)
class PushResult:
    """What happened to one :class:`PushMessage`."""

    outcome: Outcome
    error: str | None = None
    message_id: str | None = None
    # A provider's Retry-After (seconds), honoured as the least back-off.
    retry_after: float | None = None


class PushSender(Protocol):
    """The interface every backend implements."""

    name: str

    def send(self, messages: Sequence[PushMessage]) -> list[PushResult]:
        """Deliver ``messages``; one result per message, in order. Never raises for a delivery failure."""
        ...


def get_sender(config: Mapping[str, Any]) -> PushSender:
    """The sender named by ``config["PUSH_BACKEND"]`` (``log`` when unset).

    Raises ``ValueError`` for an unknown backend, and for ``fcm`` without
    ``FIREBASE_CREDENTIALS``: a misconfigured production push should fail
    loudly at start, not silently drop messages.
    """
    backend = (config.get("PUSH_BACKEND") or "log").strip().lower()
    if backend == "log":
        from notifications.senders.log import LogSender

        return LogSender()
    if backend == "memory":
        from notifications.senders.memory import MemorySender

        return MemorySender()
    if backend == "fcm":
        from notifications.senders.fcm import FcmSender

        return FcmSender.from_config(config)
    raise ValueError(f"unknown PUSH_BACKEND {backend!r} (log, memory or fcm)")
