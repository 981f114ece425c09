"""Outside services as plug-ins (CONVENTIONS §12).

A provider of an outside service — object storage (S3-compatible, local files),
and alike SMS or push — is one module that registers itself under its name in
its kind's :class:`Registry`, together with the settings it reads. The core
picks a provider by the name a setting holds (``STORAGE_BACKEND=s3``) and never
names one itself: adding a provider is adding a module.

A provider class offers at least::

    settings: tuple[str, ...]                       # the config keys it reads
    config_problems(config, *, production) -> list  # classmethod: what is wrong, no network
    from_app(app) -> instance                       # classmethod: build it for one app
    check() -> str | None                           # `flask doctor`: reachable? (None: fine)
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
        self._providers: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(provider: T) -> T:
            if self._providers.get(name, provider) is not provider:
                raise ValueError(f"two {self.kind} providers are called {name!r}")
            provider.name = name
            self._providers[name] = provider
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
        return tuple(sorted(self._providers))

    def get(self, name: str | None) -> T:
        """The provider called ``name``; ValueError naming the choices for any other."""
        self._load()
        provider = self._providers.get((name or "").strip().lower())
        if provider is None:
            raise ValueError(f"unknown {self.setting} {name!r} (one of {', '.join(self.names())})")
        return provider
