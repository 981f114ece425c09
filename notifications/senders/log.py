"""The development sender: every push goes to the log and counts as sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from notifications.senders import PushMessage, PushResult

log = logging.getLogger("notifications.push")


class LogSender:
    """Writes one INFO line per push; nothing leaves the machine."""

    name = "log"

    def send(self, messages: Sequence[PushMessage]) -> list[PushResult]:
        results = []
        for message in messages:
            log.info(
                "push notification=%s platform=%s token=%s… title=%r body=%r data=%s",
                message.notification_id,
                message.platform,
                message.token[:12],
                message.title,
                message.body,
                json.dumps(message.data, ensure_ascii=False, sort_keys=True),
            )
            results.append(PushResult("sent", message_id=f"log/{message.notification_id}"))
        return results
