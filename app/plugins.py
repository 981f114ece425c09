"""Outside services as plug-ins (CONVENTIONS §12): one registry for every kind.

A provider of an outside service is one module that registers its class under
its name in its kind's :class:`Registry`:

- object storage, ``app.storage`` (``STORAGE_BACKEND``: ``s3``, ``local``);
- SMS codes, ``app.sms`` (``SMS_BACKEND``: ``aliyun``, ``log``, ``memory``);
- push, ``notifications.senders`` (``PUSH_BACKEND``: ``fcm``, ``jpush``, ``log``, ``memory``).

The core picks a provider by the name a setting holds and never names one
itself: adding a provider is adding a module. What a provider class offers is
its kind's interface (the storage ``ObjectStorage`` protocol, ``SmsProvider``,
``PushProvider``); each declares the settings it reads, what is wrong with
them (checked at start-up in production and by ``flask doctor``) and how it is
built from the configuration.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """The providers of one kind of outside service, each a module of ``package``
    that registers its class on import (``@registry.register("name")``)."""

    def __init__(self, kind: str, package: str, setting: str) -> None:
        self.kind = kind
        self.package = package
        self.setting = setting
        # The registered classes by name: read it, register through :meth:`register`.
        self.by_name: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(provider: T) -> T:
            if self.by_name.get(name, provider) is not provider:
                raise ValueError(f"two {self.kind} providers are called {name!r}")
            provider.name = name
            self.by_name[name] = provider
            return provider

        return decorate

    def _load(self) -> None:
        """Import every module of the package once: each registers what it provides."""
        with self._lock:
            if self._loaded:
                return
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            self._loaded = True

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(sorted(self.by_name))

    def items(self) -> list[tuple[str, T]]:
        """Every provider, ``(name, class)``, by name."""
        self._load()
        return sorted(self.by_name.items())

    def get(self, name: str | None) -> T:
        """The provider called ``name``; ValueError naming the choices for any other."""
        self._load()
        provider = self.by_name.get((name or "").strip().lower())
        if provider is None:
            raise ValueError(f"unknown {self.setting} {name!r} (one of {', '.join(self.names())})")
        return provider
