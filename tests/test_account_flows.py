"""Signing in with a code, recovering a password, a new phone, and consent."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Consent, User
from tests.factories import PASSWORD, make_org, make_user
from tests.helpers import assert_error, sms_code

LOGIN = "/api/v1/auth/login"
RESET = "/api/v1/auth/password-reset"


# --- 短信验证码登录 ----------------------------------------------------------------------------------------


def test_sign_in_with_a_code(app, client):
    account = make_user(app, phone="+8613812345678")
    code = sms_code(app, client, "13812345678", "login")
    resp = client.post(LOGIN, json={"phone": "+86 138 1234 5678", "sms_code": code})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["user"]["id"] == account.id
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200
    # Used once.
    assert_error(client.post(LOGIN, json={"phone": "13812345678", "sms_code": code}), 401, "invalid_credentials")


def test_a_wrong_code_answers_like_a_wrong_password(app, client):
    make_user(app, phone="+8613812345678")
    code = sms_code(app, client, "13812345678", "login")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    expected = {"code": 401, "status": "Unauthorized", "error": "invalid_credentials", "message": "手机号或密码错误"}
    for body in (
        {"phone": "13812345678", "sms_code": wrong},
        {"phone": "13812345679", "sms_code": code},  # an unknown number
        {"phone": "13812345678", "password": "wrong-password"},
    ):
        assert client.post(LOGIN, json=body).get_json() == expected


# --- 找回密码 ------------------------------------------------------------------------------------------


def test_a_reset_sets_the_password_and_ends_every_session(app, client):
    account = make_user(app, phone="+8613812345678")
    code = sms_code(app, client, "13812345678", "reset_password")
    resp = client.post(RESET, json={"phone": "13812345678", "sms_code": code, "new_password": "brand-new-pw"})
    assert resp.status_code == 204
    # Both tokens of the old session are refused at once.
    assert_error(client.get("/api/v1/me", headers=account.headers), 401, "token_revoked")
    assert client.post("/api/v1/auth/refresh", headers=account.refresh_headers).status_code == 401
    assert_error(client.post(LOGIN, json={"phone": "13812345678", "password": PASSWORD}), 401, "invalid_credentials")
    assert client.post(LOGIN, json={"phone": "13812345678", "password": "brand-new-pw"}).status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.target_id == account.id)) == (
            "account.password_reset"
        )


def test_a_reset_needs_the_right_code(app, client):
    account = make_user(app, phone="+8613812345678")
    sms_code(app, client, "13812345678", "reset_password")
    for body in (
        {"phone": "13812345678", "sms_code": "000000", "new_password": "brand-new-pw"},
        {"phone": "13812345679", "sms_code": "000000", "new_password": "brand-new-pw"},
    ):
        assert_error(client.post(RESET, json=body), 422, "invalid_sms_code")
    assert client.get("/api/v1/me", headers=account.headers).status_code == 200
    resp = client.post(RESET, json={"phone": "13812345678", "sms_code": "123", "new_password": "short"})
    body = assert_error(resp, 422, "validation_error")
    assert set(body["errors"]["json"]) == {"sms_code", "new_password"}


# --- 换绑手机 ------------------------------------------------------------------------------------------


def test_moving_to_a_new_number(app, client):
    account = make_user(app, phone="+8613812345678")
    code = sms_code(app, client, "13912345678", "change_phone")
    body = {"phone": "13912345678", "sms_code": code, "password": PASSWORD}
    resp = client.post("/api/v1/me/phone", headers=account.headers, json=body)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["phone_masked"] == "139****5678"
    assert client.post(LOGIN, json={"phone": "13912345678", "password": PASSWORD}).status_code == 200
    assert_error(client.post(LOGIN, json={"phone": "13812345678", "password": PASSWORD}), 401, "invalid_credentials")


def test_a_new_number_needs_the_password_a_code_and_a_free_number(app, client):
    account = make_user(app, phone="+8613812345678")
    make_user(app, phone="+8613712345678")
    code = sms_code(app, client, "13912345678", "change_phone")
    me = "/api/v1/me/phone"
    wrong_password = {"phone": "13912345678", "sms_code": code, "password": "wrong-password"}
    assert_error(client.post(me, headers=account.headers, json=wrong_password), 422, "wrong_password")
    wrong_code = {"phone": "13912345678", "sms_code": "000000", "password": PASSWORD}
    assert_error(client.post(me, headers=account.headers, json=wrong_code), 422, "invalid_sms_code")
    own = {"phone": "13812345678", "sms_code": code, "password": PASSWORD}
    assert_error(client.post(me, headers=account.headers, json=own), 409, "phone_taken")
    assert_error(
        client.post("/api/v1/auth/sms-codes", json={"phone": "13712345678", "purpose": "change_phone"}),
        409,
        "phone_taken",
    )
    with app.app_context():
        assert db.session.get(User, account.id).phone == "+8613812345678"


# --- consent ---------------------------------------------------------------------------------------------------------


def test_legal_names_the_current_documents(app, make_app):
    configured = make_app(
        PRIVACY_VERSION="2027-2",
        TERMS_VERSION="5",
        PRIVACY_URL="https://z.example.cn/p",
        TERMS_URL="https://z.example.cn/t",
    )
    assert configured.test_client().get("/api/v1/legal").get_json() == {
        "privacy_version": "2027-2",
        "terms_version": "5",
        "privacy_url": "https://z.example.cn/p",
        "terms_url": "https://z.example.cn/t",
    }


def test_a_new_privacy_version_holds_writes_until_accepted(app, make_app):
    account = make_user(app)
    org_id, coordinator = make_org(app)
    moved_on = make_app(PRIVACY_VERSION="2")
    client = moved_on.test_client()
    me = client.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200 and me.get_json()["consent_required"] is True
    # Every write answers 428 ...
    for method, path, body in (
        ("PATCH", "/api/v1/me", {"display_name": "新名字"}),
        ("POST", "/api/v1/orgs", {"name": "新组织", "kind": "ngo", "district": "haishu"}),
        ("PUT", "/api/v1/me/notification-settings", {"muted_kinds": []}),
        ("POST", "/api/v1/me/calendar", None),
    ):
        resp = client.open(path, method=method, json=body, headers=account.headers)
        assert_error(resp, 428, "consent_required")
    # ... and a write with an Idempotency-Key keeps no answer to replay.
    keyed = {**account.headers, "Idempotency-Key": "k-1"}
    assert (
        client.post(
            "/api/v1/orgs", json={"name": "新组织", "kind": "ngo", "district": "haishu"}, headers=keyed
        ).status_code
        == 428
    )
    # Reads, the export and logout still work.
    assert client.get("/api/v1/postings").status_code == 200
    assert client.get("/api/v1/me/export", headers=account.headers).status_code == 200
    # Another version than the current: refused.
    assert_error(
        client.post("/api/v1/me/consents", headers=account.headers, json={"privacy_version": "1"}),
        422,
        "consent_outdated",
    )
    resp = client.post("/api/v1/me/consents", headers=account.headers, json={"privacy_version": "2"})
    assert resp.status_code == 200 and resp.get_json()["consent_required"] is False
    assert client.patch("/api/v1/me", headers=account.headers, json={"display_name": "新名字"}).status_code == 200
    resp = client.post("/api/v1/orgs", json={"name": "新组织", "kind": "ngo", "district": "haishu"}, headers=keyed)
    assert resp.status_code == 201  # the key was not spent on the 428
    with moved_on.app_context():
        versions = db.session.scalars(
            sa.select(Consent.version).where(Consent.user_id == account.id).order_by(Consent.id)
        )
        assert list(versions) == ["1", "2"]
    # The coordinator, who has not accepted, is still held; logout is not.
    assert_error(
        client.post(
            f"/api/v1/orgs/{org_id}/members",
            headers=coordinator.headers,
            json={"user_id": account.id, "role": "member"},
        ),
        428,
        "consent_required",
    )
    assert client.post("/api/v1/auth/logout", headers=coordinator.refresh_headers).status_code == 204


def test_accounts_older_than_consents_keep_working(app, client):
    """An account made before consents existed signs in and reads; it accepts before writing."""
    old = make_user(app, consented=False)
    resp = client.post(LOGIN, json={"phone": old.phone, "password": PASSWORD})
    assert resp.status_code == 200 and resp.get_json()["user"]["consent_required"] is True
    assert client.get("/api/v1/me/claims", headers=old.headers).status_code == 200
    assert_error(client.patch("/api/v1/me", headers=old.headers, json={"locale": "en"}), 428, "consent_required")
