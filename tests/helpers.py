"""HTTP helpers shared by the tests: SMS codes as a phone app gets them, the
sign-up over HTTP, and the error assertion."""

from __future__ import annotations

from flask import Flask

from app.sms import provider_for
from app.validators import normalize_cn_mobile

REGISTER = "/api/v1/auth/register"
# What a production app needs to say about SMS to start (nothing is sent in the tests that use it).
PRODUCTION_SMS = {
    "SMS_BACKEND": "aliyun",
    "ALIYUN_ACCESS_KEY_ID": "test-access-key-id",
    "ALIYUN_ACCESS_KEY_SECRET": "test-access-key-secret",
    "SMS_SIGN_NAME": "甬志愿",
    "SMS_TEMPLATE_CODE": "SMS_000000001",
}
SMS_CODES = "/api/v1/auth/sms-codes"


def sent_code(app: Flask, phone: str, purpose: str | None = None) -> str | None:
    """The newest code the (memory) provider delivered to ``phone`` (for ``purpose``)."""
    return provider_for(app).last_code(normalize_cn_mobile(phone), purpose)


def sms_code(app: Flask, client, phone: str, purpose: str, **request) -> str:
    """Ask for a code (202) and read it from the provider, as the phone's owner would
    (``request``: more arguments of the request, ``headers``, ``environ_base``)."""
    resp = client.post(SMS_CODES, json={"phone": phone, "purpose": purpose}, **request)
    assert resp.status_code == 202, resp.get_json()
    code = sent_code(app, phone, purpose)
    assert code is not None
    return code


def register(
    app: Flask,
    client,
    phone: str = "13812345678",
    password: str = "long-enough-pw",
    display_name: str = "小王",
    *,
    headers: dict | None = None,
    **extra,
):
    """Sign up over HTTP as the app does: a code for ``register``, then the account
    with the current privacy version. ``extra`` adds or overrides body fields."""
    body = {
        "phone": phone,
        "sms_code": sms_code(app, client, phone, "register"),
        "password": password,
        "display_name": display_name,
        "privacy_version": app.config["PRIVACY_VERSION"],
        **extra,
    }
    return client.post(REGISTER, json=body, headers=headers or {})


def assert_error(resp, code: int, slug: str) -> dict:
    """The answer is the error envelope with ``code`` and ``slug``; its body."""
    body = resp.get_json()
    assert resp.status_code == code, body
    assert body["code"] == code and body["error"] == slug, body
    return body
