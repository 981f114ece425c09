"""Aliyun SMS (阿里云短信服务) through its official client, ``alibabacloud-dysmsapi20170525``
(``SMS_BACKEND=aliyun``).

Settings: ``ALIYUN_ACCESS_KEY_ID`` and ``ALIYUN_ACCESS_KEY_SECRET`` (a RAM user
allowed ``dysms:SendSms`` only), ``SMS_SIGN_NAME`` (the approved signature, 签名),
``SMS_TEMPLATE_CODE`` (an approved template with one variable, ``${code}``),
``SMS_ENDPOINT`` (default ``https://dysmsapi.aliyuncs.com``; any server that
speaks the Dysmsapi ``SendSms`` call, e.g. ``http://127.0.0.1:9000`` — its
scheme picks HTTP or HTTPS, its host and port where the client connects) and
``SMS_TIMEOUT_SECONDS`` (connect and read, default 5).

How an answer is read. Aliyun answers a refused send in two ways: HTTP 200 with
a ``Code`` other than ``OK`` in the body (``isv.*`` business errors), or an
HTTP error the client raises as an exception (gateway throttling, signature or
permission problems, server errors). Both are mapped by code:

- the provider's rate limits — ``isv.BUSINESS_LIMIT_CONTROL`` (the number got
  too many messages), ``isv.DAY_LIMIT_CONTROL``, ``Throttling*`` and any HTTP 429
  — are ``rate_limited`` (the API answers 429);
- ``isv.MOBILE_NUMBER_ILLEGAL`` and its kin are ``invalid_number`` (422);
- a timeout after the request went out is ``unknown`` (it may have been sent:
  the code stays unusable, but it counts against the limits and the budget);
- everything else is ``failed`` (503 ``sms_unavailable``), logged with its code.

The client's own retries are off: one request per code, so a slow answer
never becomes two messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from app.sms import SendResult, SmsProvider, providers

log = logging.getLogger(__name__)

RATE_LIMIT_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "isv.DAY_LIMIT_CONTROL",
        "isv.MONTH_LIMIT_CONTROL",
        "isv.SMS_OVER_LIMIT",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "Throttling.AllocationQuota",
    }
)
INVALID_NUMBER_CODES = frozenset(
    {"isv.MOBILE_NUMBER_ILLEGAL", "isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "isv.MOBILE_IN_BLACK"}
)
REQUIRED = ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET", "SMS_SIGN_NAME", "SMS_TEMPLATE_CODE")


def classify(code: str | None, status: int | None = None) -> str:
    """The outcome of an answer with the error ``code`` (and HTTP ``status``)."""
    code = code or ""
    if code in RATE_LIMIT_CODES or code.startswith("Throttling") or status == 429:
        return "rate_limited"
    if code in INVALID_NUMBER_CODES:
        return "invalid_number"
    return "failed"


def endpoint_parts(url: str) -> tuple[str, str]:
    """``(protocol, host[:port])`` of ``SMS_ENDPOINT``; ValueError when it is not an http(s) URL."""
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError("SMS_ENDPOINT must be an http(s) URL with no path, e.g. https://dysmsapi.aliyuncs.com")
    return parts.scheme, parts.netloc


@providers.register("aliyun")
class AliyunProvider(SmsProvider):
    settings = (*REQUIRED, "SMS_ENDPOINT", "SMS_TIMEOUT_SECONDS")

    def __init__(self, config: Mapping[str, Any]) -> None:
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi import utils_models

        protocol, host = endpoint_parts(config.get("SMS_ENDPOINT") or "https://dysmsapi.aliyuncs.com")
        timeout_ms = int(float(config.get("SMS_TIMEOUT_SECONDS") or 5) * 1000)
        self.sign_name = config["SMS_SIGN_NAME"]
        self.template_code = config["SMS_TEMPLATE_CODE"]
        self.timeout_ms = timeout_ms
        self.client = Client(
            utils_models.Config(
                access_key_id=config["ALIYUN_ACCESS_KEY_ID"],
                access_key_secret=config["ALIYUN_ACCESS_KEY_SECRET"],
                endpoint=host,
                protocol=protocol,
                connect_timeout=timeout_ms,
                read_timeout=timeout_ms,
            )
        )

    @classmethod
    def problems(cls, config: Mapping[str, Any]) -> list[str]:
        problems = [f"SMS_BACKEND=aliyun but {name} is not set" for name in REQUIRED if not config.get(name)]
        try:
            endpoint_parts(config.get("SMS_ENDPOINT") or "https://dysmsapi.aliyuncs.com")
        except ValueError as exc:
            problems.append(str(exc))
        try:
            if float(config.get("SMS_TIMEOUT_SECONDS") or 5) <= 0:
                problems.append("SMS_TIMEOUT_SECONDS must be positive")
        except ValueError:
            problems.append("SMS_TIMEOUT_SECONDS must be a number of seconds")
        return problems

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AliyunProvider:
        problems = cls.problems(config)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(config)

    def send(self, phone: str, code: str, purpose: str) -> SendResult:
        from alibabacloud_dysmsapi20170525 import models
        from darabonba.runtime import RuntimeOptions

        request = models.SendSmsRequest(
            # Aliyun takes mainland numbers without the country code.
            phone_numbers=phone.removeprefix("+86"),
            sign_name=self.sign_name,
            template_code=self.template_code,
            template_param=json.dumps({"code": code}),
        )
        runtime = RuntimeOptions(
            autoretry=False, connect_timeout=self.timeout_ms, read_timeout=self.timeout_ms, max_attempts=0
        )
        try:
            body = self.client.send_sms_with_options(request, runtime).body
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome, never an exception
            return self._failure(exc)
        if body is not None and body.code == "OK":
            return SendResult("sent")
        error = getattr(body, "code", None) or "no code"
        outcome = classify(error)
        log.warning("sms not sent: %s (%s)", outcome, error)
        return SendResult(outcome, error)

    def _failure(self, exc: Exception) -> SendResult:
        inner = getattr(exc, "inner_exception", None) or exc
        code = getattr(inner, "code", None)
        status = getattr(inner, "status_code", None) or getattr(inner, "statusCode", None)
        if code or status:
            outcome = classify(code, status)
            detail = f"{code or status}"
        elif _is_timeout(inner):
            # The request may have reached the provider: treat the code as perhaps sent.
            outcome, detail = "unknown", f"timeout ({type(inner).__name__})"
        else:
            outcome, detail = "failed", type(inner).__name__
        log.warning("sms not sent: %s (%s)", outcome, detail)
        return SendResult(outcome, detail)


def _is_timeout(exc: BaseException | None) -> bool:
    """Whether the request went out and no answer came (a read timeout), through any wrapping."""
    import requests

    while exc is not None:
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return True
        if isinstance(exc, requests.exceptions.ConnectionError):
            return False  # never connected (a connect timeout too): nothing was sent
        if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
