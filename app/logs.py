"""Logging: one handler, JSON lines or text, request and job context, redaction.

``configure_logging(app)`` puts one handler on the root logger (stderr). Its
format is ``LOG_FORMAT``: ``json`` (one JSON object a line, python-json-logger)
or ``text`` (a readable line). Unset, it is ``text`` in development
(``APP_ENV=development``, ``make run``) and under the debugger, ``json``
everywhere else.

Context comes from one place, :data:`_context` (a contextvar, copied onto\nevery record when it is made): a request sets
``request_id``, ``method`` and ``route`` (the URL rule, never the raw path,
which may hold a calendar feed's token) when it starts, and every line logged
while it runs carries them, plus ``user_id`` once the caller is known; a job
run sets ``job``. Each request ends with one access line (``app.access``:
``status``, ``duration_ms``); probes (``/healthz``, ``/readyz``, ``/metrics``)
log theirs at DEBUG unless they fail.

Nothing secret reaches the output: the formatters redact JSON Web Tokens,
mainland mobile numbers, 18-character ID-card numbers, passwords inside URLs
and the configured key values (:data:`SECRET_SETTINGS`) from the finished
line, whatever logger or traceback they came from.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import secrets
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from flask import Flask, g, has_request_context, request
from flask.logging import default_handler
from flask_jwt_extended import get_jwt
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "text")
# Settings whose values never appear in a log (app/config.py reads them).
SECRET_SETTINGS = ("SECRET_KEY", "JWT_SECRET_KEY", "ID_HASH_KEY", "CERTIFICATE_SIGNING_KEY", "ALIYUN_ACCESS_KEY_SECRET")
# Fields a line may carry besides the message, in the order the text format prints them.
CONTEXT_FIELDS = ("request_id", "user_id", "method", "route", "job")
# Requests whose access line is DEBUG unless they fail: probes and scrapes every few seconds.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
REDACTED = "[redacted]"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

access_log = logging.getLogger("app.access")

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)

# The standard attributes of a LogRecord: everything else on a record is an extra field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"),  # a JWT, or its header.payload
    # Numbers stand alone: a run of digits inside a longer token (a hex id) is not one.
    re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])"),  # 居民身份证号码, 18 characters
    re.compile(r"(?<![0-9A-Za-z])(?:\+?86[- ]?)?1[3-9]\d{9}(?![0-9A-Za-z])"),  # a mainland mobile number
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password@ in a URL
)
_secrets: set[str] = set()


def remember_secrets(values: Any) -> None:
    """Add configured secret values to what is redacted (every app built in this process)."""
    for value in values:
        if isinstance(value, str) and len(value) >= 8:
            _secrets.add(value)
            _secrets.add(json.dumps(value)[1:-1])  # as it appears inside a JSON string


def redact(text: str) -> str:
    """``text`` without tokens, phone numbers, ID numbers, URL passwords and configured secrets."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


# --- context ---------------------------------------------------------------------------------------------------------


def current_context() -> dict[str, Any]:
    """The fields every line logged now carries."""
    fields = dict(_context.get())
    if has_request_context() and "request_id" in fields:
        user_id = _request_user_id()
        if user_id is not None:
            fields["user_id"] = user_id
    return fields


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged inside the block (a job run's ``job``)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def _request_user_id() -> int | None:
    """The signed-in caller, once the request's access token has been verified.
    Read from the token's claims, never from the database (a log line must not
    query, nor fail when the session is gone)."""
    try:
        decoded = get_jwt()
    except RuntimeError:  # no token was looked at in this request
        return None
    if decoded.get("type") != "access":
        return None
    try:
        return int(decoded.get("sub"))
    except (TypeError, ValueError):
        return None


def _install_record_factory() -> None:
    """Every record gets the current context when it is made, whoever handles it
    afterwards (our handler, a test's capture). Context keys are never passed as ``extra``."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_log_context", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            context = current_context()
        except Exception:  # noqa: BLE001 - a log line goes out without its context rather than not at all
            context = {}
        for key, value in context.items():
            setattr(record, key, value)
        return record

    factory.adds_log_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}


# --- formats ---------------------------------------------------------------------------------------------------------


class JsonLineFormatter(JsonFormatter):
    """One JSON object a line: time, level, logger, message, context and extras; redacted."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextFormatter(logging.Formatter):
    """``time level logger message key=value …``; redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        ordered = [k for k in CONTEXT_FIELDS if k in extras] + [k for k in extras if k not in CONTEXT_FIELDS]
        pairs = []
        for key in ordered:
            value = extras[key]
            if value is not None and not isinstance(value, Mapping):  # a mapping is in the message
                pairs.append(f"{key}={value}")
        if pairs:
            head, sep, tail = line.partition("\n")  # a traceback stays below the line
            line = f"{head} {' '.join(pairs)}{sep}{tail}"
        return redact(line)


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonLineFormatter() if log_format == "json" else TextFormatter()


def log_format_of(config: Mapping[str, Any], debug: bool = False) -> str:
    """``LOG_FORMAT`` if set, else text in development or under the debugger, json otherwise."""
    chosen = (config.get("LOG_FORMAT") or "").strip().lower()
    if chosen:
        if chosen not in LOG_FORMATS:
            raise RuntimeError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {chosen!r}")
        return chosen
    return "text" if debug or config.get("APP_ENV") == "development" else "json"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(app: Flask) -> None:
    """Install (or re-format) the process's one log handler and add request logging to ``app``."""
    remember_secrets(app.config.get(name) for name in SECRET_SETTINGS)
    _install_record_factory()
    formatter = make_formatter(log_format_of(app.config, app.debug))
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(formatter)
    root.setLevel(app.config.get("LOG_LEVEL") or "INFO")
    # Flask's own handler on the "app" logger (the parent of app.access, app.jobs…)
    # would print every line a second time, unformatted.
    app.logger.removeHandler(default_handler)
    _register_request_logging(app)


def _register_request_logging(app: Flask) -> None:
    def start() -> None:
        g.started_at = time.perf_counter()
        rule = request.url_rule
        g.log_context_token = _context.set(
            {"request_id": assign_request_id(), "method": request.method, "route": rule.rule if rule else None}
        )

    # First of all before-request functions: a request the limiter or a body check
    # refuses is logged with its id too.
    app.before_request_funcs.setdefault(None, []).insert(0, start)

    @app.after_request
    def log_access(response):
        started = g.get("started_at")
        duration_ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
        fields = current_context()
        quiet = fields.get("route") in QUIET_ROUTES and response.status_code < 400
        access_log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %s",
            request.method,
            fields.get("route") or "(no route)",
            response.status_code,
            extra={"status": response.status_code, "duration_ms": duration_ms},
        )
        from app import metrics

        metrics.observe_request(request.method, fields.get("route"), response.status_code, started)
        return response

    @app.teardown_request
    def end(_exc) -> None:
        token = g.pop("log_context_token", None)
        if token is not None:
            try:
                _context.reset(token)
            except ValueError:  # set in another context (a nested test request): just clear
                _context.set({})


def new_request_id() -> str:
    """A new request id: 32 hex characters, the first a letter, so no run of their digits
    ever stands alone as a number the redaction would take for a phone or ID number."""
    return secrets.choice("abcdef") + uuid.uuid4().hex[1:]


def assign_request_id() -> str:
    """The request's id (``g.request_id``): the caller's ``X-Request-ID`` when it is
    a sane token (nginx sets one), else a new one. The answer's header repeats it."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()
    return g.request_id
