"""Push providers as plug-ins (Redash's ``destinations`` registry is the model).

Each provider is one module of this package holding one :class:`PushProvider`
subclass registered in :data:`providers` under its name
(``@providers.register("jpush")``, the registry of ``app.plugins``). The class says everything about its
provider: its ``name``, which devices it delivers to (``serves``), the settings
it reads, what stops the app from starting (:meth:`~PushProvider.startup_problems`)
and what ``flask doctor`` reports (:meth:`~PushProvider.doctor`), how it sends a
batch (:meth:`~PushProvider.send`, answers streamed as they arrive) and how it
reads each answer (one :class:`PushResult`). The dispatcher and the rest of the
app only iterate the registry; none of them names a provider. Adding the next
provider (APNs direct, Huawei Push Kit) is one new module here.

``PUSH_BACKEND`` (a comma-separated list) enables providers. A device names
its provider when it registers (``devices.provider``); its pushes go through
the enabled provider of that name, else through an enabled stand-in (a
provider serving every device kind: ``log`` in development, ``memory`` in
tests), else nowhere (``misconfigured``: the row waits, the log says why).
"""

from __future__ import annotations

import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from app.plugins import Registry

# not `log`: importing the submodule notifications.senders.log rebinds that name on this package
logger = logging.getLogger(__name__)

# sent: the provider accepted it. retry: a transient failure (back off, try
# again). dead_token: the device will never be reached again (delete it).
# misconfigured: our keys or settings are wrong (keep the device and the row,
# retry later, alert). failed: a permanent failure of this message.
Outcome = Literal["sent", "retry", "dead_token", "misconfigured", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "retry", "dead_token", "misconfigured", "failed")


@dataclass(frozen=True)
class PushMessage:
    """One push to one device."""

    notification_id: int
    token: str
    platform: str  # android | ios | web
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    collapse_key: str | None = None
    high_priority: bool = False
    badge: int | None = None
    device_id: int | None = None
    provider: str | None = None  # the device's provider (None: the default one)


@dataclass(frozen=True)
class PushResult:
    """What happened to one :class:`PushMessage`."""

    outcome: Outcome
    error: str | None = None
    message_id: str | None = None
    # How long the provider asked us to wait (Retry-After, a rate limit's reset), at least.
    retry_after: float | None = None


class PushProvider(ABC):
    """One way to reach phones. Subclasses set the class attributes and implement :meth:`send`."""

    name: ClassVar[str]
    # The device providers (``devices.provider``) this one delivers to; None: every kind (a stand-in).
    serves: ClassVar[tuple[str, ...] | None] = None
    # Whether phones register devices under this name (``POST /me/devices`` ``provider``).
    device_provider: ClassVar[bool] = False
    # The device provider a registration without ``provider`` gets (one provider says so).
    default_device_provider: ClassVar[bool] = False
    # The settings it reads (documented in docs/operations.md).
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PushProvider:
        return cls()

    @classmethod
    def startup_problems(cls, config: Mapping[str, Any], *, batch_size: int, lease_seconds: float) -> list[str]:
        """What makes the app refuse to start with this provider enabled (one sentence each)."""
        return []

    @classmethod
    def doctor(cls, config: Mapping[str, Any]) -> str | None:
        """What ``flask doctor`` says of this provider's settings: None when all is well."""
        return None

    @abstractmethod
    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, PushResult]]:
        """Deliver ``messages``; yield ``(index, result)`` for each as its answer arrives,
        in any order, one per message. Never raises for a delivery failure."""

    def close(self) -> None:  # noqa: B027 - optional: most providers hold nothing to release
        """Release connections and threads."""


providers: Registry[type[PushProvider]] = Registry("push", __name__, "PUSH_BACKEND")


def device_providers() -> tuple[str, ...]:
    """The providers a device may name, the default first."""
    names = [name for name, cls in providers.items() if cls.device_provider]
    return tuple(sorted(names, key=lambda name: not providers.by_name[name].default_device_provider))


def default_device_provider() -> str:
    return device_providers()[0]


def enabled_names(config: Mapping[str, Any]) -> list[str]:
    """The providers ``PUSH_BACKEND`` enables (``log`` when unset); ValueError for an unknown name."""
    names = [n.strip().lower() for n in str(config.get("PUSH_BACKEND") or "log").split(",") if n.strip()]
    known = providers.names()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        choices = ", ".join(known)
        raise ValueError(f"unknown PUSH_BACKEND {', '.join(unknown) or '(empty)'} (one or more of: {choices})")
    return list(dict.fromkeys(names))


def startup_problems(config: Mapping[str, Any], *, batch_size: int) -> list[str]:
    """Every enabled provider's refusals."""
    lease = float(config.get("PUSH_LEASE_SECONDS", 300))
    return [
        problem
        for name in enabled_names(config)
        for problem in providers.by_name[name].startup_problems(config, batch_size=batch_size, lease_seconds=lease)
    ]


def doctor_problems(config: Mapping[str, Any]) -> str | None:
    """What ``flask doctor`` says of push: each enabled provider's check."""
    try:
        names = enabled_names(config)
    except ValueError as exc:
        return str(exc)
    problems = [f"{name}: {problem}" for name in names if (problem := providers.by_name[name].doctor(config))]
    return "; ".join(problems) or None


UNROUTED = "no push provider enabled for {provider} devices (PUSH_BACKEND)"


class Router:
    """The enabled providers of one app, and which of them serves a device."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.providers: dict[str, PushProvider] = {}
        try:
            for name in enabled_names(config):
                self.providers[name] = providers.by_name[name].from_config(config)
        except BaseException:
            self.close()
            raise
        self._default = default_device_provider()

    def __getitem__(self, name: str) -> PushProvider:
        return self.providers[name]

    def provider_for(self, device_provider: str | None) -> str | None:
        """The enabled provider that delivers to a device of ``device_provider``."""
        wanted = device_provider or self._default
        if wanted in self.providers:
            return wanted
        for name, provider in self.providers.items():
            if provider.serves is None:
                return name
        return None

    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, str, PushResult]]:
        """``(index, provider, result)`` for every message as answers arrive."""
        answers: queue.Queue = queue.Queue()
        threads = self.start_sending(messages, answers.put)
        for _ in range(len(messages)):
            yield answers.get()
        for thread in threads:
            thread.join()

    def start_sending(
        self, messages: Sequence[PushMessage], sink: Callable[[tuple[int, str, PushResult]], None]
    ) -> list[threading.Thread]:
        """Hand ``sink`` each ``(index, provider, result)`` as its answer arrives (from the
        providers' threads); returns those threads. Each provider sends its share on a
        thread of its own, so one provider's outage (slow timeouts included) never holds
        up another's devices."""
        groups: dict[str | None, list[int]] = {}
        for i, message in enumerate(messages):
            groups.setdefault(self.provider_for(message.provider), []).append(i)
        threads = []
        for name, indexes in groups.items():
            if name is None:
                for i in indexes:
                    provider = messages[i].provider or self._default
                    sink((i, provider, PushResult("misconfigured", UNROUTED.format(provider=provider))))
                continue
            thread = threading.Thread(
                target=_drain, args=(self.providers[name], name, messages, indexes, sink), daemon=True
            )
            thread.start()
            threads.append(thread)
        return threads

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()


def _drain(provider: PushProvider, name: str, messages, indexes: list[int], sink: Callable) -> None:
    """Send one provider's share and hand every answer to ``sink``; a provider that
    breaks its contract (raises, or answers too few) makes its unanswered messages retry."""
    share = [messages[i] for i in indexes]
    answered: set[int] = set()
    try:
        for local, result in provider.send(share):
            if local in answered or not 0 <= local < len(share):
                raise RuntimeError(f"answer for message {local} twice or out of range")
            answered.add(local)
            sink((indexes[local], name, result))
        missing = None if len(answered) == len(share) else "the provider answered too few messages"
    except Exception as exc:  # noqa: BLE001 - every message must still be answered
        logger.exception("push provider %s failed", name, extra={"provider": name})
        missing = f"sender error: {type(exc).__name__}: {exc}"[:500]
    if missing:
        for local in range(len(share)):
            if local not in answered:
                sink((indexes[local], name, PushResult("retry", missing)))
