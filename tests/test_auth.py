"""POST /auth/register and /auth/login (with a password or an SMS code)."""

from __future__ import annotations

import re

import argon2
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Consent, RefreshToken, User
from tests.factories import PASSWORD, make_user
from tests.helpers import REGISTER, SMS_CODES, assert_error, sms_code
from tests.helpers import register as register_over_http

LOGIN = "/api/v1/auth/login"
USER_KEYS = {
    "id",
    "phone_masked",
    "display_name",
    "email",
    "roles",
    "locale",
    "volunteer",
    "orgs",
    "consent_required",
    "deletion_scheduled_at",
    "created_at",
}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def signup_body(app, code: str) -> dict:
    return {
        "phone": "13812345678",
        "sms_code": code,
        "password": "long-enough-pw",
        "display_name": "小王",
        "privacy_version": app.config["PRIVACY_VERSION"],
    }


@pytest.fixture
def register(app):
    """Sign up over HTTP with a code sent for ``register`` (tests.helpers.register)."""

    def sign_up(client, phone="13812345678", password="long-enough-pw", display_name="小王", **extra):
        return register_over_http(app, client, phone, password, display_name, **extra)

    return sign_up


def user_rows(app) -> list[User]:
    with app.app_context():
        rows = db.session.scalars(sa.select(User).order_by(User.id)).all()
        db.session.expunge_all()
        return rows


def assert_422(resp, *fields: str) -> dict:
    body = resp.get_json()
    assert resp.status_code == 422, body
    assert body["code"] == 422 and body["error"] == "validation_error"
    assert set(body["errors"]["json"]) == set(fields), body["errors"]
    return body


# --- register -------------------------------------------------------------------


def test_register_returns_user_and_tokens(app, client, register):
    resp = register(client)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"user", "access_token", "refresh_token"}
    user = body["user"]
    assert USER_KEYS <= set(user)
    assert user["phone_masked"] == "138****5678"
    assert user["display_name"] == "小王"
    assert user["email"] is None
    assert user["roles"] == ["user"]
    assert user["locale"] == "zh-CN"
    assert user["volunteer"] is None
    assert user["orgs"] == []
    assert RFC3339_Z.match(user["created_at"])
    assert "password" not in resp.get_data(as_text=True)
    assert "13812345678" not in resp.get_data(as_text=True)
    (row,) = user_rows(app)
    assert row.id == user["id"]
    assert row.phone == "+8613812345678"
    assert row.is_admin is False
    # The tokens work at once.
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == row.id
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RefreshToken)) == 1


@pytest.mark.parametrize(
    "phone",
    ["13812345678", "+8613812345678", "+86 138 1234 5678", "138-1234-5678", "008613812345678", " 13812345678 "],
)
def test_register_stores_e164(app, client, phone, register):
    resp = register(client, phone=phone)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["user"]["phone_masked"] == "138****5678"
    assert [u.phone for u in user_rows(app)] == ["+8613812345678"]


@pytest.mark.parametrize(
    "phone",
    [
        "12345678901",  # not a mobile prefix
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits
        "+12025550123",  # US number
        "+85291234567",  # Hong Kong mobile, not mainland
        "02787654321",  # a Wuhan landline
        "abcdefghijk",
        "",
        "1" * 30,
    ],
)
def test_register_rejects_non_mainland_mobile(app, client, phone):
    for path, body in ((SMS_CODES, {"purpose": "register"}), (REGISTER, signup_body(app, "123456"))):
        body = assert_422(client.post(path, json={**body, "phone": phone}), "phone")
        assert body["errors"]["json"]["phone"]
    assert user_rows(app) == []


def test_register_rejects_non_string_phone(app, client):
    assert_422(client.post(REGISTER, json={**signup_body(app, "123456"), "phone": 13812345678}), "phone")


def test_duplicate_phone_is_409_in_either_form(app, client, register):
    assert register(client, phone="13812345678").status_code == 201
    for phone in ("13812345678", "+8613812345678"):
        resp = client.post(SMS_CODES, json={"phone": phone, "purpose": "register"})
        assert resp.status_code == 409
        assert resp.get_json() == {
            "code": 409,
            "status": "Conflict",
            "error": "phone_taken",
            "message": "该手机号已注册",
        }
    assert [u.display_name for u in user_rows(app)] == ["小王"]


def test_a_number_taken_while_its_code_was_out_is_409(app, client):
    """The code went out while the number was free; another sign-up took it first."""
    code = sms_code(app, client, "13812345678", "register")
    make_user(app, phone="+8613812345678", name="先到的")
    resp = client.post(REGISTER, json={**signup_body(app, code), "phone": "+86 138 1234 5678"})
    assert_error(resp, 409, "phone_taken")
    assert [u.display_name for u in user_rows(app)] == ["先到的"]


def test_register_needs_a_right_code(app, client):
    sms_code(app, client, "13812345678", "register")
    for code in ("000000", None):
        body = signup_body(app, code or "123456")
        if code is None:  # a code sent for another purpose does not register
            body["sms_code"] = sms_code(app, client, "13812345679", "guardian_consent")
            body["phone"] = "13812345679"
        assert_error(client.post(REGISTER, json=body), 422, "invalid_sms_code")
    assert user_rows(app) == []


def test_register_needs_the_current_privacy_version(app, client, make_app):
    code = sms_code(app, client, "13812345678", "register")
    for version in ("0", "older", app.config["PRIVACY_VERSION"] + "-draft"):
        body = assert_error(
            client.post(REGISTER, json={**signup_body(app, code), "privacy_version": version}), 422, "consent_outdated"
        )
        assert body["errors"]["json"]["privacy_version"]
    # ... and the code was not spent by the refusals.
    resp = client.post(REGISTER, json=signup_body(app, code))
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["user"]["consent_required"] is False
    with app.app_context():
        (consent,) = db.session.scalars(sa.select(Consent)).all()
        assert (consent.document, consent.version) == ("privacy", app.config["PRIVACY_VERSION"])
        assert db.session.get(User, consent.user_id).privacy_version == app.config["PRIVACY_VERSION"]


@pytest.mark.parametrize("password", ["", "1234567", "short"])
def test_short_password_is_422(app, client, password, register):
    assert_422(register(client, password=password), "password")
    assert user_rows(app) == []


def test_eight_character_password_is_enough(client, register):
    assert register(client, password="12345678").status_code == 201


def test_overlong_password_is_422(client, register):
    assert_422(register(client, password="x" * 129), "password")


def test_missing_fields_are_422(client):
    resp = client.post(REGISTER, json={})
    assert_422(resp, "phone", "sms_code", "password", "display_name", "privacy_version")


@pytest.mark.parametrize("name", ["", "x" * 41])
def test_display_name_length(client, name, register):
    assert_422(register(client, display_name=name), "display_name")


def test_register_with_email_lowercases_it(app, client, register):
    resp = register(client, email="Wang.Xiao@Example.COM")
    assert resp.status_code == 201
    assert resp.get_json()["user"]["email"] == "wang.xiao@example.com"
    assert user_rows(app)[0].email == "wang.xiao@example.com"


def test_register_bad_email_is_422(client, register):
    assert_422(register(client, email="not-an-email"), "email")


def test_duplicate_email_is_409_email_taken(app, client, register):
    assert register(client, phone="13812345678", email="a@example.com").status_code == 201
    resp = register(client, phone="13912345678", email="A@Example.com")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "email_taken"
    assert len(user_rows(app)) == 1


def test_register_stores_argon2_hash(app, client, register):
    register(client, password="long-enough-pw")
    (row,) = user_rows(app)
    assert row.password_hash.startswith("$argon2id$")
    assert "long-enough-pw" not in row.password_hash
    assert argon2.PasswordHasher().verify(row.password_hash, "long-enough-pw")


def test_register_cannot_make_an_admin(app, client, register):
    resp = register(client, is_admin=True)
    assert_422(resp, "is_admin")
    assert user_rows(app) == []


# --- login ---------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["13812345678", "+8613812345678", "+86 138-1234-5678"])
def test_login_by_phone(app, client, phone):
    account = make_user(app, phone="+8613812345678")
    resp = client.post(LOGIN, json={"phone": phone, "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"user", "access_token", "refresh_token"}
    assert body["user"]["id"] == account.id
    assert body["user"]["phone_masked"] == "138****5678"
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.get_json()["id"] == account.id


def test_login_by_email_is_case_insensitive(app, client):
    account = make_user(app, email="li@example.com")
    resp = client.post(LOGIN, json={"email": "LI@Example.com", "password": PASSWORD})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["user"]["id"] == account.id


def test_each_login_opens_a_new_family(app, client):
    account = make_user(app)
    for _ in range(2):
        assert client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD}).status_code == 200
    with app.app_context():
        families = db.session.scalars(sa.select(RefreshToken.family_id).where(RefreshToken.user_id == account.id))
        assert len(set(families)) == 3


def test_wrong_password_and_unknown_account_answer_the_same(app, client):
    account = make_user(app, email="li@example.com")
    answers = [
        client.post(LOGIN, json={"phone": account.phone, "password": "wrong-password"}),
        client.post(LOGIN, json={"phone": "13700000000", "password": "wrong-password"}),
        client.post(LOGIN, json={"phone": "13700000000", "password": PASSWORD}),
        client.post(LOGIN, json={"email": "li@example.com", "password": "wrong-password"}),
        client.post(LOGIN, json={"email": "nobody@example.com", "password": PASSWORD}),
    ]
    expected = {"code": 401, "status": "Unauthorized", "error": "invalid_credentials", "message": "手机号或密码错误"}
    for resp in answers:
        assert resp.status_code == 401
        assert resp.get_json() == expected
    assert len({tuple(sorted(k for k, _ in r.headers if k != "X-Request-ID")) for r in answers}) == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RefreshToken)) == 1


def test_unknown_account_costs_a_hash_verification(app, client, monkeypatch):
    """No timing oracle: an unknown phone still runs argon2 once."""
    account = make_user(app)
    calls = []
    original = argon2.PasswordHasher.verify

    def counting_verify(self, hash, password):  # noqa: A002 - argon2's own name
        calls.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counting_verify)
    client.post(LOGIN, json={"phone": "13700000000", "password": "whatever-pw"})
    client.post(LOGIN, json={"phone": account.phone, "password": "whatever-pw"})
    assert len(calls) == 2
    assert all(h.startswith("$argon2id$") for h in calls)


def test_login_rehashes_outdated_hash(app, client):
    account = make_user(app)
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=512, parallelism=1).hash(PASSWORD)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == account.id).values(password_hash=weak))
        db.session.commit()
    assert client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD}).status_code == 200
    (row,) = user_rows(app)
    assert row.password_hash != weak
    assert argon2.PasswordHasher().verify(row.password_hash, PASSWORD)
    assert client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"phone": "13812345678", "email": "a@example.com", "password": PASSWORD},
    ],
)
def test_login_needs_exactly_one_identifier(client, body):
    resp = client.post(LOGIN, json=body)
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"json": {"_schema": ["请填写手机号或邮箱（二选一）。"]}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"phone": "13812345678"}, "请填写密码或短信验证码（二选一）。"),
        ({"phone": "13812345678", "password": PASSWORD, "sms_code": "123456"}, "请填写密码或短信验证码（二选一）。"),
        ({"email": "a@example.com", "sms_code": "123456"}, "短信验证码登录需填写接收验证码的手机号。"),
    ],
)
def test_login_needs_a_password_or_a_code(client, body, message):
    resp = client.post(LOGIN, json=body)
    assert resp.status_code == 422
    assert resp.get_json()["errors"] == {"json": {"_schema": [message]}}


def test_login_unknown_field_is_422(client):
    assert_422(client.post(LOGIN, json={"phone": "13812345678", "password": PASSWORD, "remember": True}), "remember")
