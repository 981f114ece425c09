"""GET/PATCH /me and POST /me/password."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import User
from app.services import accounts
from tests.factories import PASSWORD, add_member, make_org, make_user, make_volunteer

ME = "/api/v1/me"
PASSWORD_URL = "/api/v1/me/password"
LOGIN = "/api/v1/auth/login"


def user_row(app, user_id: int) -> User:
    with app.app_context():
        row = db.session.get(User, user_id)
        db.session.expunge(row)
        return row


# --- GET /me ------------------------------------------------------------------


def test_get_me(app, client):
    account = make_user(app, phone="+8613812345678", name="小王", email="w@example.com")
    resp = client.get(ME, headers=account.headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["id"] == account.id
    assert body["phone_masked"] == "138****5678"
    assert body["display_name"] == "小王"
    assert body["email"] == "w@example.com"
    assert body["roles"] == ["user"]
    assert body["locale"] == "zh-CN"
    assert body["timezone"] == "Asia/Shanghai"
    assert body["quiet_hours"] is None
    assert body["volunteer"] is None
    assert body["orgs"] == []
    assert body["created_at"].endswith("Z")
    assert "phone" not in body and "password_hash" not in body and "is_admin" not in body


def test_get_me_with_volunteer_orgs_and_roles(app, client):
    account = make_volunteer(app, admin=True)
    org_id, _ = make_org(app, account, name="鼓楼社区")
    pending_id, _ = make_org(app, account, name="待审社区", status="pending")
    other_id, _ = make_org(app, name="别的社区")
    add_member(app, other_id, account)
    body = client.get(ME, headers=account.headers).get_json()
    assert body["roles"] == ["user", "volunteer", "coordinator", "admin"]
    assert body["orgs"] == [
        {"id": org_id, "name": "鼓楼社区", "role": "coordinator"},
        {"id": pending_id, "name": "待审社区", "role": "coordinator"},
        {"id": other_id, "name": "别的社区", "role": "member"},
    ]
    assert body["volunteer"]["volunteer_no"].startswith("NB")


def test_coordinator_of_pending_org_has_no_coordinator_role(app, client):
    account = make_user(app)
    make_org(app, account, status="pending")
    assert client.get(ME, headers=account.headers).get_json()["roles"] == ["user"]


# --- PATCH /me ----------------------------------------------------------------


def test_patch_me_changes_profile(app, client):
    account = make_user(app, name="旧名")
    resp = client.patch(
        ME,
        headers=account.headers,
        json={
            "display_name": "新名",
            "email": "New@Example.com",
            "locale": "en",
            "timezone": "Europe/London",
            "quiet_hours": {"start": "22:30", "end": "07:00"},
        },
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["display_name"] == "新名"
    assert body["email"] == "new@example.com"
    assert body["locale"] == "en"
    assert body["timezone"] == "Europe/London"
    assert body["quiet_hours"] == {"start": "22:30", "end": "07:00"}
    row = user_row(app, account.id)
    assert (row.display_name, row.email, row.locale, row.timezone) == ("新名", "new@example.com", "en", "Europe/London")
    assert (row.quiet_start, row.quiet_end) == ("22:30", "07:00")
    assert client.get(ME, headers=account.headers).get_json() == body


def test_patch_me_partial_keeps_the_rest(app, client):
    account = make_user(app, name="旧名", email="keep@example.com")
    resp = client.patch(ME, headers=account.headers, json={"locale": "en"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["display_name"], body["email"], body["locale"]) == ("旧名", "keep@example.com", "en")


def test_patch_me_empty_body_changes_nothing(app, client):
    account = make_user(app, name="旧名")
    before = client.get(ME, headers=account.headers).get_json()
    resp = client.patch(ME, headers=account.headers, json={})
    assert resp.status_code == 200
    assert resp.get_json() == before


def test_patch_me_clears_email_and_quiet_hours(app, client):
    account = make_user(app, email="gone@example.com")
    client.patch(ME, headers=account.headers, json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
    resp = client.patch(ME, headers=account.headers, json={"email": None, "quiet_hours": None})
    assert resp.status_code == 200
    assert resp.get_json()["email"] is None and resp.get_json()["quiet_hours"] is None
    row = user_row(app, account.id)
    assert row.email is None and row.quiet_start is None and row.quiet_end is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"locale": "fr"}, "locale"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"display_name": ""}, "display_name"),
        ({"email": "nope"}, "email"),
        ({"quiet_hours": {"start": "24:00", "end": "07:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "7:00", "end": "07:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "22:00"}}, "quiet_hours"),
        ({"phone": "13912345678"}, "phone"),
        ({"is_admin": True}, "is_admin"),
    ],
)
def test_patch_me_invalid(app, client, body, field):
    account = make_user(app, name="不变")
    resp = client.patch(ME, headers=account.headers, json=body)
    data = resp.get_json()
    assert resp.status_code == 422, data
    assert data["error"] == "validation_error"
    assert list(data["errors"]["json"]) == [field]
    row = user_row(app, account.id)
    assert row.display_name == "不变" and row.is_admin is False and row.locale == "zh-CN"


def test_patch_me_email_taken_is_409(app, client):
    make_user(app, email="taken@example.com")
    account = make_user(app)
    resp = client.patch(ME, headers=account.headers, json={"email": "TAKEN@example.com", "display_name": "x"})
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "email_taken"
    row = user_row(app, account.id)
    assert row.email is None and row.display_name != "x"


def test_patch_me_needs_a_token(client):
    resp = client.patch(ME, json={"display_name": "x"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "authorization_required"


# --- password -----------------------------------------------------------------


def test_change_password(app, client):
    account = make_user(app)
    old_hash = user_row(app, account.id).password_hash
    resp = client.post(
        PASSWORD_URL, headers=account.headers, json={"old_password": PASSWORD, "new_password": "n3w-pass!"}
    )
    assert resp.status_code == 204
    assert resp.get_data() == b""
    new_hash = user_row(app, account.id).password_hash
    assert new_hash != old_hash and new_hash.startswith("$argon2id$")
    old = client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD})
    assert old.status_code == 401 and old.get_json()["error"] == "invalid_credentials"
    new = client.post(LOGIN, json={"phone": account.phone, "password": "n3w-pass!"})
    assert new.status_code == 200


def test_change_password_wrong_old_password(app, client):
    account = make_user(app)
    old_hash = user_row(app, account.id).password_hash
    resp = client.post(
        PASSWORD_URL, headers=account.headers, json={"old_password": "not-it!!", "new_password": "n3w-pass!"}
    )
    body = resp.get_json()
    assert resp.status_code == 422
    assert body["error"] == "wrong_password"
    assert body["errors"] == {"json": {"old_password": ["原密码错误。"]}}
    assert user_row(app, account.id).password_hash == old_hash
    # Nothing was revoked.
    assert client.get(ME, headers=account.headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"old_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"old_password": PASSWORD}, "new_password"),
        ({"new_password": "long-enough"}, "old_password"),
    ],
)
def test_change_password_invalid(app, client, body, field):
    account = make_user(app)
    resp = client.post(PASSWORD_URL, headers=account.headers, json=body)
    assert resp.status_code == 422
    assert list(resp.get_json()["errors"]["json"]) == [field]
    assert client.post(LOGIN, json={"phone": account.phone, "password": PASSWORD}).status_code == 200


# --- services -------------------------------------------------------------------


def test_make_admin_creates_then_promotes(app):
    with app.app_context():
        admin = accounts.make_admin("+8613800000009", "admin-pass-1", "管理员")
        assert admin.is_admin and admin.password_hash.startswith("$argon2id$")
    existing = make_user(app)
    with app.app_context():
        promoted = accounts.make_admin(existing.phone, "another-pass", "ignored")
        assert promoted.id == existing.id and promoted.is_admin
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 2
