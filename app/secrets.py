"""The app's keys: required and checked in production, generated once in development.

Three keys guard everything a forger would want: ``SECRET_KEY`` (Flask, and
the signature of list cursors and stored replays), ``JWT_SECRET_KEY`` (access
and refresh tokens) and ``ID_HASH_KEY`` (the keyed hash of ID-card numbers).

- In production (``APP_ENV=production``, the default) each must be set on its
  own (no two alike), at least 32 bytes, without blanks, of some variety (not
  ``aaaa…``: at least 128 bits by its characters' spread), and none of the values
  this repository publishes — those of ``KNOWN_DEFAULTS`` (its history) and any
  that appears in a file of the checkout the app runs from; otherwise the app
  refuses to start and names every key that is wrong (``flask doctor`` says
  the same: both ask :func:`production_problems`).
- In development (``APP_ENV=development``, what ``make run`` sets) a missing
  key is generated once and kept in ``instance/dev-keys.json`` (mode 0600), so
  tokens survive a restart and nothing secret is ever a constant in the code.
- Tests generate their own keys when they start (``TestConfig``): no key is a
  constant in the code.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
from collections import Counter
from collections.abc import Iterable

from flask import Flask

from app.config import is_development

KEYS = ("SECRET_KEY", "JWT_SECRET_KEY", "ID_HASH_KEY")
MIN_KEY_BYTES = 32
# Values published in this repository or its history: never acceptable in production.
KNOWN_DEFAULTS = frozenset(
    {
        "dev-only-change-me",
        "change-me-to-a-long-random-string",
        "test-secret-key-that-is-long-enough-for-hs256",
        "test-jwt-key-that-is-long-enough-for-hs256",
        "test-id-hash-key",
        "bench-secret-key-that-is-long-enough-for-hs256",
        "probe-secret-key-long-enough-for-hs256",
        "secret",
        "changeme",
        "change-me",
    }
)
DEV_KEYS_FILE = "dev-keys.json"
# A key's variety: the bits its length and its characters' spread (Shannon) give, at least.
MIN_KEY_BITS = 128
# The checkout a key must not appear in: everything beside the app package but
# what is not the repository's (environments, caches, an operator's .env, the
# generated development keys).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NOT_THE_REPO = {".git", ".venv", "venv", "node_modules", "instance", "__pycache__", ".pytest_cache", ".ruff_cache"}
_LARGEST_FILE = 4 * 1024 * 1024


class UnsafeConfiguration(RuntimeError):
    """The app was asked to run in production with settings that would open it."""


def key_problems(config, names: Iterable[str] = KEYS) -> list[str]:
    """What is wrong with the keys for production, one sentence each (empty: nothing)."""
    problems = []
    names = list(names)
    for name in names:
        value = config.get(name)
        if not value:
            problems.append(f"{name} is not set")
        elif value in KNOWN_DEFAULTS or value.strip() in KNOWN_DEFAULTS:
            problems.append(f"{name} is a published default value")
        elif any(char.isspace() for char in value):
            problems.append(f"{name} contains whitespace (a copy-and-paste slip?)")
        elif len(value.encode()) < MIN_KEY_BYTES:
            problems.append(f"{name} is shorter than {MIN_KEY_BYTES} bytes")
        elif key_bits(value) < MIN_KEY_BITS:
            problems.append(f"{name} has too little variety (repeated or too few distinct characters)")
        elif published_in_repo(value):
            problems.append(f"{name} is a value published in this repository")
    seen: dict[str, str] = {}
    for name in names:
        value = config.get(name)
        if value and value in seen:
            problems.append(f"{name} is the same value as {seen[value]}: each key needs its own")
        elif value:
            seen[value] = name
    return problems


def key_bits(value: str) -> float:
    """A key's variety in bits: its length times the Shannon entropy of its
    characters' spread (``aaaa…``: 0; 64 hex digits: about 250)."""
    counts = Counter(value)
    total = len(value)
    return total * -sum(n / total * math.log2(n / total) for n in counts.values())


@functools.cache
def published_in_repo(value: str, root: str = REPO_ROOT) -> bool:
    """Whether ``value`` appears in a file of the checkout under ``root`` (what a
    forger can read in the repository: examples, tests, benchmarks, docs)."""
    needle = value.encode()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _NOT_THE_REPO]
        for filename in files:
            if filename == ".env" or (filename.startswith(".env.") and not filename.endswith(".example")):
                continue  # an operator's own settings, never in the repository
            path = os.path.join(folder, filename)
            try:
                if os.path.getsize(path) > _LARGEST_FILE:
                    continue
                with open(path, "rb") as f:
                    if needle in f.read():
                        return True
            except OSError:
                continue
    return False


def clock_problems(config) -> list[str]:
    """A clock that is not the wall clock (CLOCK_SHIFT_DAYS, a test setting)."""
    days = int(config.get("CLOCK_SHIFT_DAYS") or 0)
    if days:
        return [f"CLOCK_SHIFT_DAYS is {days}: the clock runs {days} days off the real time (tests only); unset it"]
    return []


def base_url_problems(config) -> list[str]:
    """Links (calendar and verification URLs, QR codes) are built on
    ``PUBLIC_BASE_URL``, never on a request's ``Host``, which a client forges."""
    url = config.get("PUBLIC_BASE_URL")
    if not url:
        return ["PUBLIC_BASE_URL is not set (links would follow the request's Host header)"]
    if not url.startswith(("https://", "http://")) or any(char.isspace() for char in url):
        return [f"PUBLIC_BASE_URL must be an absolute http(s) URL, not {url!r}"]
    return []


def production_problems(app: Flask) -> list[str]:
    """Everything production refuses: the three keys, ``PUBLIC_BASE_URL``, a
    malformed ``METRICS_ADDRESS``, the certificate signing key,
    an SMS provider that proves nothing (``log``) or lacks its settings, photos
    on one machine's disk (``STORAGE_BACKEND=local`` without ``STORAGE_LOCAL_OK``)
    and a shifted clock."""
    from app import metrics, storage
    from app.certificate_keys import CertificateKeyError, certificate_key
    from app.sms import configuration_problems

    problems = (
        key_problems(app.config)
        + base_url_problems(app.config)
        + metrics.address_problems(app.config)
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
