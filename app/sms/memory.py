"""The test provider (``SMS_BACKEND=memory``): codes are kept in a list, and it
can be told to answer any outcome. Refused in production."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from app.sms import Outcome, SendResult, SmsProvider, providers


@dataclass(frozen=True)
class SentCode:
    phone: str
    code: str
    purpose: str


@providers.register("memory")
class MemoryProvider(SmsProvider):
    production_ok = False

    def __init__(self) -> None:
        self.sent: list[SentCode] = []
        self.next_outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def send(self, phone: str, code: str, purpose: str) -> SendResult:
        with self._lock:
            outcome = self.next_outcomes.pop(0) if self.next_outcomes else "sent"
            if outcome in ("sent", "unknown"):
                self.sent.append(SentCode(phone, code, purpose))
        return SendResult(outcome, None if outcome == "sent" else f"scripted {outcome}")

    def last_code(self, phone: str, purpose: str | None = None) -> str | None:
        """The newest code sent to ``phone`` (for ``purpose``), or None."""
        with self._lock:
            for item in reversed(self.sent):
                if item.phone == phone and purpose in (None, item.purpose):
                    return item.code
        return None
