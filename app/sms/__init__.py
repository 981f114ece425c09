"""SMS delivery providers (短信通道) as plug-ins.

A provider is one module of this package that registers itself in
:data:`providers` under its name (``@providers.register("aliyun")``, see
``app.plugins``); ``SMS_BACKEND`` picks one. The core
(``app.services.sms_codes``) asks :func:`provider_for` and never names a
provider. Each provider declares

- ``settings``: the configuration names it reads (for the docs and ``doctor``);
- ``production_ok``: whether a production install may use it (``log`` and
  ``memory`` may not: a code in a log is no proof of a phone);
- :meth:`SmsProvider.problems`: what is wrong with its settings, one sentence
  each (checked at start-up in production and by ``flask doctor``);
- :meth:`SmsProvider.send`: deliver one code, and say what happened as an
  :class:`SendResult` — it never raises for a refused or failed delivery.

Outcomes: ``sent`` (the provider accepted it), ``rate_limited`` (the provider
refuses this number or this account for now), ``invalid_number`` (the number
cannot receive messages), ``failed`` (nothing was sent, e.g. a refused
request) and ``unknown`` (no answer: it may have been sent, so it counts).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from flask import Flask

from app.plugins import Registry

Outcome = Literal["sent", "rate_limited", "invalid_number", "failed", "unknown"]
OUTCOMES: tuple[Outcome, ...] = ("sent", "rate_limited", "invalid_number", "failed", "unknown")


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    # The provider's own word for it (an error code), for the log and the metrics; never a phone.
    detail: str | None = None


class SmsProvider(ABC):
    """The interface every provider implements (and the registry's base class)."""

    name: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ()
    production_ok: ClassVar[bool] = True

    @classmethod
    def problems(cls, config: Mapping[str, Any]) -> list[str]:
        """What is wrong with this provider's settings (empty: nothing)."""
        return []

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmsProvider:
        return cls()

    @abstractmethod
    def send(self, phone: str, code: str, purpose: str) -> SendResult:
        """Deliver ``code`` to ``phone`` (E.164). Never raises for a delivery that failed."""

    def check(self) -> str | None:
        """A live check for ``flask doctor`` (None: all well, or nothing to check)."""
        return None


providers: Registry[type[SmsProvider]] = Registry("SMS", __name__, "SMS_BACKEND")


def provider_class(config: Mapping[str, Any]) -> type[SmsProvider]:
    """The provider ``SMS_BACKEND`` names (``log`` when unset); ValueError for an unknown name."""
    return providers.get(config.get("SMS_BACKEND") or "log")


def configuration_problems(config: Mapping[str, Any], *, production: bool) -> list[str]:
    """What keeps the configured provider from working (and, in production, from being used at all)."""
    try:
        cls = provider_class(config)
    except ValueError as exc:
        return [str(exc)]
    problems = list(cls.problems(config))
    if production and not cls.production_ok:
        problems.insert(0, f"SMS_BACKEND={cls.name} is for development: a code that is not sent proves no phone")
    return problems


def provider_for(app: Flask) -> SmsProvider:
    """The app's provider, built once from its configuration."""
    provider = app.extensions.get("sms_provider")
    if provider is None:
        provider = app.extensions["sms_provider"] = provider_class(app.config).from_config(app.config)
    return provider
