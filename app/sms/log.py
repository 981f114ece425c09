"""The development provider (``SMS_BACKEND=log``): every code goes to the log.

`make run` serves in the foreground, so the line appears in its terminal::

    sms code 123456 for 139****0001 (login), valid 5 min

The number is masked (the log redacts phone numbers anyway); the code is
what a developer types into the app. Refused in production.
"""

from __future__ import annotations

import logging

from app.policy import SMS_CODE_TTL
from app.sms import SendResult, SmsProvider, providers
from app.validators import mask_phone

log = logging.getLogger("app.sms")


@providers.register("log")
class LogProvider(SmsProvider):
    production_ok = False

    def send(self, phone: str, code: str, purpose: str) -> SendResult:
        minutes = int(SMS_CODE_TTL.total_seconds() // 60)
        log.info("sms code %s for %s (%s), valid %d min", code, mask_phone(phone), purpose, minutes)
        return SendResult("sent")
