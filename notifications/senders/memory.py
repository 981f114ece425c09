"""The test provider (``PUSH_BACKEND=memory``): keeps every push in memory and can be scripted to fail."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from notifications.senders import OUTCOMES, PushMessage, PushProvider, PushResult, providers


@providers.register("memory")
class MemoryProvider(PushProvider):
    """Records pushes in ``sent``; ``fail(token, outcome)`` scripts a token's answer.

    It stands in for every device provider. Thread-safe, so two dispatchers in
    two threads can share one.
    """

    def __init__(self) -> None:
        self.sent: list[PushMessage] = []
        self.calls: list[int] = []  # size of every send() call
        self._scripted: dict[str, tuple[PushResult, int | None]] = {}
        self._lock = threading.Lock()

    def fail(self, token: str, outcome: str, error: str | None = None, times: int | None = None) -> None:
        """Answer ``outcome`` (retry, dead_token, misconfigured or failed) for ``token``,
        ``times`` times (None = always)."""
        if outcome not in OUTCOMES or outcome == "sent":
            raise ValueError(f"not a failure outcome: {outcome!r}")
        self._scripted[token] = (PushResult(outcome, error or outcome.upper()), times)  # type: ignore[arg-type]

    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, PushResult]]:
        with self._lock:
            self.calls.append(len(messages))
            results = [self._answer(message) for message in messages]
        yield from enumerate(results)

    def _answer(self, message: PushMessage) -> PushResult:
        scripted = self._scripted.get(message.token)
        if scripted is not None:
            result, times = scripted
            if times is not None:
                if times <= 1:
                    del self._scripted[message.token]
                else:
                    self._scripted[message.token] = (result, times - 1)
            return result
        self.sent.append(message)
        return PushResult("sent", message_id=f"memory/{len(self.sent)}")

    def to(self, token: str) -> list[PushMessage]:
        """The pushes delivered to ``token``."""
        with self._lock:
            return [m for m in self.sent if m.token == token]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
            self.calls.clear()
            self._scripted.clear()
