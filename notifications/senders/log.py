"""The development provider (``PUSH_BACKEND=log``): every push goes to the log and counts as sent.

It stands in for every device provider, so ``make run`` shows what an FCM
phone and a JPush phone would each receive without any keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence

from notifications.senders import PushMessage, PushProvider, PushResult, providers

log = logging.getLogger("notifications.push")


@providers.register("log")
class LogProvider(PushProvider):
    """Writes one INFO line per push; nothing leaves the machine."""

    def send(self, messages: Sequence[PushMessage]) -> Iterator[tuple[int, PushResult]]:
        for i, message in enumerate(messages):
            log.info(
                "push notification=%s device_provider=%s platform=%s token=%s… title=%r body=%r data=%s",
                message.notification_id,
                message.provider,
                message.platform,
                message.token[:12],
                message.title,
                message.body,
                json.dumps(message.data, ensure_ascii=False, sort_keys=True),
                extra={"provider": self.name},
            )
            yield i, PushResult("sent", message_id=f"log/{message.notification_id}")
