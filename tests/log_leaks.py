"""What must never reach a log, and a handler that watches a whole test session for it.

The handler formats every record the way the app's log handler would (JSON
and text) and keeps each finished line that still holds a JSON Web Token, a
mainland mobile number, an 18-character ID number or a configured secret;
conftest.py fails the session when any was kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from app.logs import JsonLineFormatter, TextFormatter

LEAKS = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    # a number standing alone, not a run of digits inside a longer token (a hex request id)
    "phone": re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])"),
    "id_number": re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])"),
}


def find_leaks(line: str, secrets: Iterable[str]) -> list[str]:
    """The kinds of leak in ``line``: ``jwt``, ``phone``, ``id_number``, ``secret``."""
    found = [kind for kind, pattern in LEAKS.items() if pattern.search(line)]
    if any(secret and secret in line for secret in secrets):
        found.append("secret")
    return found


class LeakWatcher(logging.Handler):
    """Keeps (at most ``keep``) formatted lines that leak, and counts every record seen."""

    def __init__(self, secrets: Iterable[str], keep: int = 20) -> None:
        super().__init__(level=logging.DEBUG)
        self.secrets = tuple(secrets)
        self.formatters = (JsonLineFormatter(), TextFormatter())
        self.leaks: list[str] = []
        self.seen = 0
        self.keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        self.seen += 1
        for formatter in self.formatters:
            try:
                line = formatter.format(record)
            except Exception as exc:  # noqa: BLE001 - a line the formatter cannot write is a finding too
                line = f"unformattable record {record.name}: {exc!r}"
                self.leaks.append(line)
                continue
            kinds = find_leaks(line, self.secrets)
            if kinds and len(self.leaks) < self.keep:
                self.leaks.append(f"{','.join(kinds)}: {line[:500]}")
