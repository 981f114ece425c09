"""The port through which the scheduler and ``flask doctor`` reach push delivery.

``app/`` writes the outbox (app/outbox) and knows that pushes are delivered,
never how: the delivery layer (``notifications/``, which imports ``app``, never
the other way round) registers an object of this shape on each app
(``notifications.init_app``, run when the notifications blueprint is
registered). The ``dispatch_push`` job and the ``push`` check of ``flask
doctor`` ask it; the job table stays here, with the other jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from flask import Flask

_KEY = "push_delivery"


class PushDelivery(Protocol):
    # What one dispatch run counts (the job's log line and metrics use the same names).
    counters: tuple[str, ...]
    # Rows claimed at once, unless the job is told otherwise.
    batch_size: int

    def dispatch(self, batch_size: int, *, should_stop: Callable[[], bool]) -> dict[str, int]:
        """Send due notifications in batches of ``batch_size`` until none is due or
        ``should_stop()``; return the counts."""
        ...

    def problems(self) -> str | None:
        """What is wrong with the push settings (``flask doctor``); None when nothing."""
        ...


def register_push_delivery(app: Flask, delivery: PushDelivery) -> None:
    app.extensions[_KEY] = delivery


def push_delivery(app: Flask) -> PushDelivery:
    try:
        return app.extensions[_KEY]
    except KeyError:
        raise RuntimeError("no push delivery is registered on this app (notifications.init_app)") from None
