"""POST /auth/register and /auth/login."""

from __future__ import annotations

import re

import argon2
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import RefreshToken, User
from tests.factories import PASSWORD, make_user

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
USER_KEYS = {"id", "phone_masked", "display_name", "email", "roles", "locale", "volunteer", "orgs", "created_at"}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def register(client, phone="13812345678", password="long-enough-pw", display_name="小王", **extra):
    return client.post(REGISTER, json={"phone": phone, "password": password, "display_name": display_name, **extra})


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


def test_register_returns_user_and_tokens(app, client):
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
def test_register_stores_e164(app, client, phone):
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
    body = assert_422(register(client, phone=phone), "phone")
    assert body["errors"]["json"]["phone"]
    assert user_rows(app) == []


def test_register_rejects_non_string_phone(app, client):
    assert_422(register(client, phone=13812345678), "phone")


def test_duplicate_phone_is_409_in_either_form(app, client):
    assert register(client, phone="13812345678").status_code == 201
    resp = register(client, phone="+8613812345678", display_name="另一个")
    body = resp.get_json()
    assert resp.status_code == 409
    assert body == {"code": 409, "status": "Conflict", "error": "phone_taken", "message": "该手机号已注册"}
    assert [u.display_name for u in user_rows(app)] == ["小王"]


@pytest.mark.parametrize("password", ["", "1234567", "short"])
def test_short_password_is_422(app, client, password):
    assert_422(register(client, password=password), "password")
    assert user_rows(app) == []


def test_eight_character_password_is_enough(client):
    assert register(client, password="12345678").status_code == 201


def test_overlong_password_is_422(client):
    assert_422(register(client, password="x" * 129), "password")


def test_missing_fields_are_422(client):
    resp = client.post(REGISTER, json={})
    assert_422(resp, "phone", "password", "display_name")


@pytest.mark.parametrize("name", ["", "x" * 41])
def test_display_name_length(client, name):
    assert_422(register(client, display_name=name), "display_name")


def test_register_with_email_lowercases_it(app, client):
    resp = register(client, email="Wang.Xiao@Example.COM")
    assert resp.status_code == 201
    assert resp.get_json()["user"]["email"] == "wang.xiao@example.com"
    assert user_rows(app)[0].email == "wang.xiao@example.com"


def test_register_bad_email_is_422(client):
    assert_422(register(client, email="not-an-email"), "email")


def test_duplicate_email_is_409_email_taken(app, client):
    assert register(client, phone="13812345678", email="a@example.com").status_code == 201
    resp = register(client, phone="13912345678", email="A@Example.com")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "email_taken"
    assert len(user_rows(app)) == 1


def test_register_stores_argon2_hash(app, client):
    register(client, password="long-enough-pw")
    (row,) = user_rows(app)
    assert row.password_hash.startswith("$argon2id$")
    assert "long-enough-pw" not in row.password_hash
    assert argon2.PasswordHasher().verify(row.password_hash, "long-enough-pw")


def test_register_cannot_make_an_admin(app, client):
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


def test_login_without_password_is_422(client):
    assert_422(client.post(LOGIN, json={"phone": "13812345678"}), "password")


def test_login_unknown_field_is_422(client):
    assert_422(client.post(LOGIN, json={"phone": "13812345678", "password": PASSWORD, "remember": True}), "remember")
