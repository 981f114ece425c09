"""Push delivery: the dispatcher, the providers and the devices (推送).

Writing a notification — the inbox row that is also the push outbox — is part
of the domain (``app/outbox``, called by services in their transaction). This
package delivers those rows to phones: ``dispatch`` drains the outbox,
``senders`` holds the providers (FCM, JPush, and the log and memory stand-ins)
as plug-ins, ``devices`` registers phones and the user's settings, ``inbox``
reads the inbox back. It imports ``app``; ``app`` never imports it, and reaches
delivery only through the port in ``app/delivery.py``, which :func:`init_app`
fills.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from app.delivery import register_push_delivery
from app.secrets import UnsafeConfiguration


class _Delivery:
    """This package as the app's push delivery (app.delivery.PushDelivery)."""

    def __init__(self, app: Flask) -> None:
        from notifications.dispatch import COUNTERS, DEFAULT_BATCH_SIZE

        self.app = app
        self.counters = COUNTERS
        self.batch_size = DEFAULT_BATCH_SIZE

    def dispatch(self, batch_size: int, *, should_stop: Callable[[], bool]) -> dict[str, int]:
        from notifications.dispatch import dispatch_until_empty

        return dispatch_until_empty(batch_size, should_stop=should_stop)

    def problems(self) -> str | None:
        from notifications.senders import doctor_problems

        return doctor_problems(self.app.config)


def init_app(app: Flask) -> None:
    """Register delivery on ``app``; refuse to start with push settings that would lose
    or duplicate messages (each enabled provider's own checks)."""
    from notifications.dispatch import DEFAULT_BATCH_SIZE
    from notifications.senders import startup_problems

    try:
        problems = startup_problems(app.config, batch_size=DEFAULT_BATCH_SIZE)
    except ValueError as exc:
        problems = [str(exc)]
    if problems:
        raise UnsafeConfiguration("refusing to start: " + "; ".join(problems))
    register_push_delivery(app, _Delivery(app))
