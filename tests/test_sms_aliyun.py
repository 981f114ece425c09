"""The Aliyun provider: the official client (alibabacloud-dysmsapi20170525)
against a local fake SendSms server (tests/fake_sms.py), and every answer
read the way the API promises."""

from __future__ import annotations

import pytest

from app.sms import configuration_problems, provider_for
from tests.fake_sms import FakeSms
from tests.helpers import SMS_CODES, assert_error

pytestmark = pytest.mark.slow  # the official client against a local fake server


@pytest.fixture
def fake():
    with FakeSms() as server:
        yield server


@pytest.fixture
def aliyun_app(app, make_app, fake):
    return make_app(**fake.config(), SMS_TIMEOUT_SECONDS=5)


def ask(client, phone="13812345678", purpose="register"):
    return client.post(SMS_CODES, json={"phone": phone, "purpose": purpose})


def test_a_code_goes_out_through_the_real_client(aliyun_app, fake):
    client = aliyun_app.test_client()
    resp = ask(client)
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json() == {"resend_after_s": 60, "expires_in_s": 300}
    (message,) = fake.messages_to("13812345678")
    assert message["SignName"] == "甬志愿" and message["TemplateCode"] == "SMS_000000001"
    code = message["TemplateParam"]["code"]
    assert len(code) == 6 and code.isdigit()
    # The code that arrived is the one the app takes.
    body = {
        "phone": "13812345678",
        "sms_code": code,
        "password": "long-enough-pw",
        "display_name": "小王",
        "privacy_version": aliyun_app.config["PRIVACY_VERSION"],
    }
    assert client.post("/api/v1/auth/register", json=body).status_code == 201


def test_a_client_with_another_secret_is_refused_and_nothing_is_usable(app, make_app, fake):
    app = make_app(**{**fake.config(), "ALIYUN_ACCESS_KEY_SECRET": "not-the-secret"})
    assert_error(ask(app.test_client()), 503, "sms_unavailable")
    assert fake.requests == 1 and fake.messages == []


@pytest.mark.parametrize(
    ("code", "status", "answer", "slug"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", 200, 429, "sms_too_frequent"),
        ("isv.DAY_LIMIT_CONTROL", 200, 429, "sms_too_frequent"),
        ("Throttling.User", 400, 429, "sms_too_frequent"),
        ("isv.MOBILE_NUMBER_ILLEGAL", 200, 422, "validation_error"),
        ("isv.AMOUNT_NOT_ENOUGH", 200, 503, "sms_unavailable"),
        ("isv.SMS_TEMPLATE_ILLEGAL", 200, 503, "sms_unavailable"),
        ("ServiceUnavailable", 503, 503, "sms_unavailable"),
    ],
)
def test_the_providers_answers_are_mapped(aliyun_app, fake, code, status, answer, slug):
    fake.script("13812345678", code, status=status)
    resp = ask(aliyun_app.test_client())
    body = assert_error(resp, answer, slug)
    if answer == 422:
        assert body["errors"]["json"]["phone"]
    else:
        assert 1 <= int(resp.headers["Retry-After"]) <= 60


def test_a_number_the_provider_refuses_can_be_corrected_at_once(aliyun_app, fake):
    """Nothing was sent: the phone's slot and its day's count are given back."""
    client = aliyun_app.test_client()
    fake.script("13812345678", "isv.MOBILE_NUMBER_ILLEGAL", times=1)
    assert ask(client).status_code == 422
    assert ask(client).status_code == 202
    assert len(fake.messages_to("13812345678")) == 1


def test_a_provider_rate_limit_keeps_the_slot(aliyun_app, fake):
    client = aliyun_app.test_client()
    fake.script("13812345678", "isv.BUSINESS_LIMIT_CONTROL", times=1)
    assert ask(client).status_code == 429
    assert_error(ask(client), 429, "sms_too_frequent")  # our own 60 s now
    assert fake.requests == 1


def test_a_timeout_counts_as_perhaps_sent_and_the_code_is_not_usable(app, make_app, fake):
    app = make_app(**fake.config(), SMS_TIMEOUT_SECONDS=0.3)
    fake.delay = 1.0
    client = app.test_client()
    resp = ask(client)
    assert_error(resp, 503, "sms_unavailable")
    fake.delay = 0
    (message,) = fake.messages_to("13812345678")  # it did arrive ...
    body = {
        "phone": "13812345678",
        "sms_code": message["TemplateParam"]["code"],
        "password": "long-enough-pw",
        "display_name": "小王",
        "privacy_version": app.config["PRIVACY_VERSION"],
    }
    # ... but a code the app was not told was sent is not usable, and the slot stays taken.
    assert_error(client.post("/api/v1/auth/register", json=body), 422, "invalid_sms_code")
    assert_error(ask(client), 429, "sms_too_frequent")


def test_an_unreachable_endpoint_is_503(app, make_app, fake):
    url = fake.url
    fake.stop()
    app = make_app(**{**fake.config(), "SMS_ENDPOINT": url})
    assert_error(ask(app.test_client()), 503, "sms_unavailable")


def test_the_settings_are_checked(app):
    base = {"SMS_BACKEND": "aliyun"}
    problems = configuration_problems(base, production=True)
    for name in ("ALIYUN_ACCESS_KEY_ID", "ALIYUN_ACCESS_KEY_SECRET", "SMS_SIGN_NAME", "SMS_TEMPLATE_CODE"):
        assert any(name in p for p in problems), name
    full = {
        **base,
        "ALIYUN_ACCESS_KEY_ID": "id",
        "ALIYUN_ACCESS_KEY_SECRET": "secret",
        "SMS_SIGN_NAME": "甬志愿",
        "SMS_TEMPLATE_CODE": "SMS_1",
    }
    assert configuration_problems(full, production=True) == []
    assert configuration_problems({**full, "SMS_ENDPOINT": "ftp://x"}, production=True)
    assert configuration_problems({**full, "SMS_ENDPOINT": "https://h/path"}, production=True)
    assert configuration_problems({"SMS_BACKEND": "log"}, production=True)
    assert configuration_problems({"SMS_BACKEND": "log"}, production=False) == []
    assert configuration_problems({"SMS_BACKEND": "carrier-pigeon"}, production=False)


def test_the_provider_is_built_once_per_app(aliyun_app):
    with aliyun_app.app_context():
        assert provider_for(aliyun_app) is provider_for(aliyun_app)
        assert provider_for(aliyun_app).name == "aliyun"
