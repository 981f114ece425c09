"""The app's keys: required and checked in production, generated once in development.

Three keys guard everything a forger would want: ``SECRET_KEY`` (Flask, and
the signature of list cursors and stored replays), ``JWT_SECRET_KEY`` (access
and refresh tokens) and ``ID_HASH_KEY`` (the keyed hash of ID-card numbers).

- In production (``APP_ENV=production``, the default) each must be set on its
  own, at least 32 bytes, and none of the values this repository publishes;
  otherwise the app refuses to start and names every key that is wrong.
- In development (``APP_ENV=development``, what ``make run`` sets) a missing
  key is generated once and kept in ``instance/dev-keys.json`` (mode 0600), so
  tokens survive a restart and nothing secret is ever a constant in the code.
- Tests set their own keys (``TestConfig``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable

from flask import Flask

KEYS = ("SECRET_KEY", "JWT_SECRET_KEY", "ID_HASH_KEY")
MIN_KEY_BYTES = 32
# Values published in this repository or its history: never acceptable in production.
KNOWN_DEFAULTS = frozenset(
    {
        "dev-only-change-me",
        "change-me-to-a-long-random-string",
        "test-secret-key-that-is-long-enough-for-hs256",
        "test-id-hash-key",
        "bench-secret-key-that-is-long-enough-for-hs256",
        "probe-secret-key-long-enough-for-hs256",
        "secret",
        "changeme",
        "change-me",
    }
)
DEV_KEYS_FILE = "dev-keys.json"


class UnsafeConfiguration(RuntimeError):
    """The app was asked to run in production with settings that would open it."""


def is_development(app: Flask) -> bool:
    return app.config.get("APP_ENV") == "development" or app.debug or app.testing


def key_problems(config, names: Iterable[str] = KEYS) -> list[str]:
    """What is wrong with the keys for production, one sentence each (empty: nothing)."""
    problems = []
    for name in names:
        value = config.get(name)
        if not value:
            problems.append(f"{name} is not set")
        elif value in KNOWN_DEFAULTS:
            problems.append(f"{name} is a published default value")
        elif len(value.encode()) < MIN_KEY_BYTES:
            problems.append(f"{name} is shorter than {MIN_KEY_BYTES} bytes")
    return problems


def clock_problems(config) -> list[str]:
    """A clock that is not the wall clock (CLOCK_SHIFT_DAYS, a test setting)."""
    days = int(config.get("CLOCK_SHIFT_DAYS") or 0)
    if days:
        return [f"CLOCK_SHIFT_DAYS is {days}: the clock runs {days} days off the real time (tests only); unset it"]
    return []


def production_problems(app: Flask) -> list[str]:
    """Everything production refuses: the three keys, the certificate signing key,
    an SMS provider that proves nothing (``log``) or lacks its settings, photos
    on one machine's disk (``STORAGE_BACKEND=local`` without ``STORAGE_LOCAL_OK``)
    and a shifted clock."""
    from app import storage
    from app.services.certificates import CertificateKeyError, certificate_key
    from app.sms import configuration_problems

    problems = (
        key_problems(app.config)
        + configuration_problems(app.config, production=True)
        + storage.config_problems(app.config, production=True)
    )
    try:
        certificate_key(app)
    except CertificateKeyError as exc:
        problems.append(str(exc).split(":")[0])
    return problems + clock_problems(app.config)


def ensure_keys(app: Flask) -> None:
    """Fill development keys, or refuse to start production with unsafe settings
    (:func:`production_problems`). (Push settings that would duplicate messages are
    refused by the delivery layer, in every mode: notifications.init_app.)"""
    if is_development(app):
        missing = [name for name in KEYS if not app.config.get(name)]
        if missing:
            stored = _dev_keys(app.instance_path)
            for name in missing:
                app.config[name] = stored[name]
        return
    problems = production_problems(app)
    if problems:
        advice = " (or run with APP_ENV=development)."
        if key_problems(app.config):
            advice = (
                ". Set each key to its own random value of at least 32 bytes (e.g. `python -c "
                "'import secrets; print(secrets.token_urlsafe(48))'`), or run with APP_ENV=development."
            )
        raise UnsafeConfiguration("refusing to start in production: " + "; ".join(problems) + advice)


def _dev_keys(instance_path: str) -> dict[str, str]:
    """The development keys of this checkout, generated on first use."""
    path = os.path.join(instance_path, DEV_KEYS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        stored = {}
    if all(isinstance(stored.get(name), str) and stored[name] for name in KEYS):
        return stored
    stored = {name: stored.get(name) or secrets.token_urlsafe(48) for name in KEYS}
    os.makedirs(instance_path, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(stored, f)
    return stored
