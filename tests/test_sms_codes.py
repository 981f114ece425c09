"""POST /auth/sms-codes: what a code is, and the limits that hold whatever the
request limiter does (it is off in the test config, as it may be anywhere)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import SmsCode, SmsCounter
from app.sms import provider_for
from tests.factories import make_user
from tests.helpers import REGISTER, SMS_CODES, assert_error, sent_code, sms_code

PHONE = "13812345678"


def ask(client, phone=PHONE, purpose="register", **kwargs):
    return client.post(SMS_CODES, json={"phone": phone, "purpose": purpose}, **kwargs)


def sign_up(app, client, code, phone=PHONE):
    body = {
        "phone": phone,
        "sms_code": code,
        "password": "long-enough-pw",
        "display_name": "小王",
        "privacy_version": app.config["PRIVACY_VERSION"],
    }
    return client.post(REGISTER, json=body)


def test_limits_are_not_the_request_limiters(app):
    assert app.config["RATELIMIT_ENABLED"] is False  # every test below runs without it


def test_a_code_is_six_digits_kept_only_as_a_keyed_hash(app, client):
    code = sms_code(app, client, PHONE, "register")
    assert len(code) == 6 and code.isdigit()
    with app.app_context():
        row = db.session.scalars(sa.select(SmsCode)).one()
        stored = " ".join(str(v) for v in (row.phone_key, row.code_hash, row.nonce, row.purpose))
    assert code not in stored and "13812345678" not in stored
    assert len(row.code_hash) == 64 and row.purpose == "register"
    assert row.sent_at is not None and row.expires_at - row.sent_at == timedelta(minutes=5)


def test_a_code_is_used_once(app, client):
    code = sms_code(app, client, PHONE, "register")
    assert sign_up(app, client, code).status_code == 201
    make_user(app, phone="+8613812345679")  # another number, same code typed
    assert_error(sign_up(app, client, code, phone="13812345679"), 422, "invalid_sms_code")


def test_a_code_expires_after_five_minutes(app, client):
    code = sms_code(app, client, PHONE, "register")
    clock.advance(timedelta(minutes=5, seconds=1))
    assert_error(sign_up(app, client, code), 422, "invalid_sms_code")


def test_a_newer_code_replaces_the_older(app, client):
    first = sms_code(app, client, PHONE, "register")
    clock.advance(timedelta(seconds=61))
    second = sms_code(app, client, PHONE, "register")
    if first != second:
        assert_error(sign_up(app, client, first), 422, "invalid_sms_code")
    assert sign_up(app, client, second).status_code == 201


def test_five_wrong_tries_spend_the_code(app, client):
    code = sms_code(app, client, PHONE, "register")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert_error(sign_up(app, client, wrong), 422, "invalid_sms_code")
    assert_error(sign_up(app, client, code), 422, "invalid_sms_code")


def test_a_code_is_for_its_purpose(app, client):
    make_user(app, phone="+86" + PHONE)
    code = sms_code(app, client, PHONE, "login")
    resp = client.post(
        "/api/v1/auth/password-reset", json={"phone": PHONE, "sms_code": code, "new_password": "brand-new-pw"}
    )
    assert_error(resp, 422, "invalid_sms_code")
    assert client.post("/api/v1/auth/login", json={"phone": PHONE, "sms_code": code}).status_code == 200


def test_one_code_per_phone_per_minute_whatever_the_purpose(app, client):
    make_user(app, phone="+86" + PHONE)
    assert ask(client, purpose="login").status_code == 202
    clock.advance(timedelta(seconds=20))
    for purpose in ("login", "reset_password", "delete_account", "guardian_consent"):
        resp = ask(client, purpose=purpose)
        assert_error(resp, 429, "sms_too_frequent")
        assert 39 <= int(resp.headers["Retry-After"]) <= 41
    clock.advance(timedelta(seconds=41))
    assert ask(client, purpose="reset_password").status_code == 202


def test_ten_codes_per_phone_a_day(app, client):
    for _ in range(10):
        assert ask(client, purpose="guardian_consent").status_code == 202
        clock.advance(timedelta(seconds=61))
    resp = ask(client, purpose="guardian_consent")
    assert_error(resp, 429, "sms_too_frequent")
    assert int(resp.headers["Retry-After"]) > 60  # until the day's end
    clock.advance(timedelta(days=1))
    assert ask(client, purpose="guardian_consent").status_code == 202


def test_twenty_codes_per_client_address_an_hour(app, client):
    for n in range(20):
        assert ask(client, phone=f"139000100{n:02d}", environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 202
    resp = ask(client, phone="13900010099", environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert_error(resp, 429, "sms_too_frequent")
    assert 1 <= int(resp.headers["Retry-After"]) <= 3600
    # Another address is not held back.
    assert ask(client, phone="13900010099", environ_base={"REMOTE_ADDR": "10.1.1.2"}).status_code == 202


def test_the_address_is_the_clients_behind_a_trusted_proxy(app, make_app):
    proxied = make_app(TRUSTED_PROXIES=1).test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.254"}
    for n in range(20):
        resp = ask(proxied, phone=f"139000200{n:02d}", environ_base=proxy, headers={"X-Forwarded-For": "1.2.3.4"})
        assert resp.status_code == 202
    forged = {"X-Forwarded-For": "9.9.9.9, 1.2.3.4"}  # a hop made up in front of the real one
    assert_error(ask(proxied, phone="13900020099", environ_base=proxy, headers=forged), 429, "sms_too_frequent")
    other = {"X-Forwarded-For": "5.6.7.8"}
    assert ask(proxied, phone="13900020099", environ_base=proxy, headers=other).status_code == 202
    # Without a trusted proxy the header is nobody's word.
    direct = make_app().test_client()
    for n in range(20):
        resp = ask(direct, phone=f"139000300{n:02d}", headers={"X-Forwarded-For": f"7.7.7.{n}"})
        assert resp.status_code == 202
    assert_error(ask(direct, phone="13900030099", headers={"X-Forwarded-For": "8.8.8.8"}), 429, "sms_too_frequent")


def test_the_daily_budget_ends_the_flood_at_503(app, make_app):
    limited = make_app(SMS_DAILY_BUDGET=3)
    client = limited.test_client()
    for n in range(3):
        assert ask(client, phone=f"1390004000{n}", environ_base={"REMOTE_ADDR": f"10.2.0.{n}"}).status_code == 202
    resp = ask(client, phone="13900040009", environ_base={"REMOTE_ADDR": "10.2.0.9"})
    body = assert_error(resp, 503, "sms_unavailable")
    assert body["message"] == "短信验证码暂时无法发送，请稍后再试。"
    assert int(resp.headers["Retry-After"]) > 60
    assert len(provider_for(limited).sent) == 3
    clock.advance(timedelta(days=1))
    assert ask(client, phone="13900040009", environ_base={"REMOTE_ADDR": "10.2.0.9"}).status_code == 202


def test_register_to_a_taken_number_is_409_and_sends_nothing(app, client):
    make_user(app, phone="+86" + PHONE)
    for purpose in ("register", "change_phone"):
        assert_error(ask(client, purpose=purpose), 409, "phone_taken")
    assert provider_for(app).sent == []


def test_login_and_reset_answer_alike_for_an_unknown_number(app, client):
    make_user(app, phone="+8613812345670")
    for purpose in ("login", "reset_password", "delete_account"):
        known = ask(client, phone="13812345670", purpose=purpose)
        unknown = ask(client, phone="13812345671", purpose=purpose)
        assert known.status_code == unknown.status_code == 202
        assert known.get_json() == unknown.get_json()
        assert set(known.headers.keys()) == set(unknown.headers.keys())
        clock.advance(timedelta(seconds=61))
    # Nothing went to the unknown number, and its limits are counted all the same.
    assert sent_code(app, "13812345671") is None
    assert sent_code(app, "13812345670") is not None
    assert ask(client, phone="13812345671", purpose="login").status_code == 202
    assert_error(ask(client, phone="13812345671", purpose="login"), 429, "sms_too_frequent")


def test_a_code_for_an_unknown_number_cannot_be_used(app, client):
    assert ask(client, purpose="login").status_code == 202
    with app.app_context():
        row = db.session.scalars(sa.select(SmsCode)).one()
        assert row.sent_at is None  # reserved, never sent, never usable
    for guess in ("000000", "123456"):
        resp = client.post("/api/v1/auth/login", json={"phone": PHONE, "sms_code": guess})
        assert_error(resp, 401, "invalid_credentials")


@pytest.mark.parametrize(
    ("outcome", "status", "slug", "retry_now"),
    [
        ("rate_limited", 429, "sms_too_frequent", 429),
        ("invalid_number", 422, "validation_error", 202),
        ("failed", 503, "sms_unavailable", 202),
        ("unknown", 503, "sms_unavailable", 429),
    ],
)
def test_what_the_provider_says_is_what_the_app_hears(app, client, outcome, status, slug, retry_now):
    provider = provider_for(app)
    provider.next_outcomes.append(outcome)
    resp = ask(client)
    assert_error(resp, status, slug)
    # A refused send is not usable, even when it did reach the phone ("unknown").
    code = sent_code(app, PHONE)
    if code is not None:
        assert_error(sign_up(app, client, code), 422, "invalid_sms_code")
    # Nothing sent (invalid number, a failure): the slot is free again; perhaps sent: it is not.
    assert ask(client).status_code == retry_now
    with app.app_context():
        day = db.session.scalar(sa.select(SmsCounter.count).where(SmsCounter.scope == "phone_day"))
        budget = db.session.scalar(sa.select(SmsCounter.count).where(SmsCounter.scope == "budget_day"))
    # Given back when nothing was sent, so whichever way it went one code is counted.
    assert (day, budget) == (1, 1)


def test_the_log_provider_writes_the_code_for_a_developer(app, make_app, caplog):
    logged = make_app(SMS_BACKEND="log")
    with caplog.at_level(logging.INFO, logger="app.sms"):
        assert ask(logged.test_client(), purpose="guardian_consent").status_code == 202
    (line,) = [r.getMessage() for r in caplog.records if r.name == "app.sms"]
    assert "138****5678" in line and "(guardian_consent)" in line
    assert line.split()[2].isdigit() and len(line.split()[2]) == 6


def test_bad_requests_are_422_and_send_nothing(app, client):
    for body in ({}, {"phone": PHONE}, {"phone": PHONE, "purpose": "spam"}, {"phone": "12345", "purpose": "login"}):
        assert_error(client.post(SMS_CODES, json=body), 422, "validation_error")
    assert provider_for(app).sent == []
