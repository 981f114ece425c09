"""Token lifecycle: expired, tampered, wrong type, revoked and reused tokens all
answer 401 in the envelope with our slugs (never flask-jwt-extended's 422 ``msg``)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt as pyjwt
import pytest
import sqlalchemy as sa
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token

from app.errors import Unauthorized
from app.extensions import db
from app.models import RefreshToken, User
from app.services import tokens
from tests.factories import make_user

ME = "/api/v1/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGIN = "/api/v1/auth/login"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_401(resp, slug: str) -> None:
    body = resp.get_json()
    assert resp.status_code == 401, body
    assert body == {"code": 401, "status": "Unauthorized", "error": slug, "message": body["message"]}
    assert body["message"]


def refresh(client, token: str):
    return client.post(REFRESH, headers=bearer(token))


def login(client, account) -> dict:
    resp = client.post(LOGIN, json={"phone": account.phone, "password": account.password})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def token_rows(app, user_id: int) -> list[RefreshToken]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(RefreshToken).where(RefreshToken.user_id == user_id).order_by(RefreshToken.id)
        ).all()
        db.session.expunge_all()
        return rows


def claims_of(app, token: str) -> dict:
    with app.app_context():
        return decode_token(token, allow_expired=True)


# --- the happy path these tests break ------------------------------------------


def test_access_token_claims(app, client):
    user = make_user(app)
    access = claims_of(app, user.access_token)
    refresh_claims = claims_of(app, user.refresh_token)
    assert access["type"] == "access" and refresh_claims["type"] == "refresh"
    assert access["sub"] == refresh_claims["sub"] == str(user.id)
    assert access["fam"] == refresh_claims["fam"]
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh_claims["exp"] - refresh_claims["iat"] == 30 * 24 * 3600
    (row,) = token_rows(app, user.id)
    assert row.jti == refresh_claims["jti"] and row.family_id == refresh_claims["fam"]
    assert row.used_at is None and row.revoked_at is None
    assert client.get(ME, headers=user.headers).status_code == 200


def test_refresh_rotates(app, client):
    user = make_user(app)
    resp = refresh(client, user.refresh_token)
    assert resp.status_code == 200, resp.get_json()
    pair = resp.get_json()
    assert set(pair) == {"access_token", "refresh_token"}
    assert pair["refresh_token"] != user.refresh_token
    assert claims_of(app, pair["refresh_token"])["fam"] == claims_of(app, user.refresh_token)["fam"]
    first, second = token_rows(app, user.id)
    assert first.used_at is not None and first.revoked_at is None
    assert second.used_at is None and second.family_id == first.family_id
    me = client.get(ME, headers=bearer(pair["access_token"]))
    assert me.status_code == 200 and me.get_json()["id"] == user.id
    # The new refresh token rotates again.
    again = refresh(client, pair["refresh_token"])
    assert again.status_code == 200
    assert len(token_rows(app, user.id)) == 3


# --- expired --------------------------------------------------------------------


def test_expired_access_token(app, client):
    user = make_user(app)
    fam = claims_of(app, user.access_token)["fam"]
    with app.app_context():
        token = create_access_token(str(user.id), expires_delta=timedelta(seconds=-1), additional_claims={"fam": fam})
    assert_401(client.get(ME, headers=bearer(token)), "token_expired")


def test_expired_refresh_token(app, client):
    user = make_user(app)
    payload = claims_of(app, user.refresh_token)
    with app.app_context():
        token = create_refresh_token(
            str(user.id),
            expires_delta=timedelta(seconds=-1),
            additional_claims={"fam": payload["fam"], "jti": payload["jti"]},
        )
    assert_401(refresh(client, token), "token_expired")
    # Nothing was spent.
    (row,) = token_rows(app, user.id)
    assert row.used_at is None and row.revoked_at is None


def test_expired_token_in_english(app, client):
    user = make_user(app)
    with app.app_context():
        token = create_access_token(str(user.id), expires_delta=timedelta(seconds=-1), additional_claims={"fam": "x"})
    resp = client.get(ME, headers={**bearer(token), "Accept-Language": "en"})
    assert_401(resp, "token_expired")
    assert resp.get_json()["message"] == "The token has expired."


# --- tampered -------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_token_signed_with_another_key(app, client):
    user = make_user(app)
    payload = claims_of(app, user.access_token)
    forged = pyjwt.encode(payload, "not-the-server-key-but-long-enough-for-hs256", algorithm="HS256")
    assert_401(client.get(ME, headers=bearer(forged)), "invalid_token")


def test_payload_changed_signature_kept(app, client):
    victim = make_user(app)
    attacker = make_user(app)
    header, _payload, signature = attacker.access_token.split(".")
    payload = claims_of(app, attacker.access_token)
    payload["sub"] = str(victim.id)
    tampered = f"{header}.{_b64(payload)}.{signature}"
    assert_401(client.get(ME, headers=bearer(tampered)), "invalid_token")


def test_signature_bytes_flipped(app, client):
    user = make_user(app)
    header, payload, signature = user.access_token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0xFF
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert_401(client.get(ME, headers=bearer(f"{header}.{payload}.{flipped}")), "invalid_token")


def test_alg_none_token_is_refused(app, client):
    user = make_user(app)
    payload = claims_of(app, user.access_token)
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(payload)}."
    assert_401(client.get(ME, headers=bearer(unsigned)), "invalid_token")


def test_tampered_refresh_token(app, client):
    user = make_user(app)
    payload = claims_of(app, user.refresh_token)
    forged = pyjwt.encode(payload, "another-key-another-key-another-key!", algorithm="HS256")
    assert_401(refresh(client, forged), "invalid_token")
    (row,) = token_rows(app, user.id)
    assert row.used_at is None


def test_token_of_deleted_user(app, client):
    user = make_user(app)
    with app.app_context():
        db.session.execute(sa.delete(User).where(User.id == user.id))
        db.session.commit()
    # its refresh tokens went with it: the access token's family no longer exists
    assert_401(client.get(ME, headers=user.headers), "token_revoked")


# --- wrong type -------------------------------------------------------------------


def test_refresh_token_used_as_access_token(app, client):
    user = make_user(app)
    assert_401(client.get(ME, headers=user.refresh_headers), "wrong_token_type")
    assert_401(client.patch(ME, headers=user.refresh_headers, json={"display_name": "x"}), "wrong_token_type")


def test_access_token_used_as_refresh_token(app, client):
    user = make_user(app)
    assert_401(refresh(client, user.access_token), "wrong_token_type")
    assert_401(client.post(LOGOUT, headers=user.headers), "wrong_token_type")
    # Nothing was spent or revoked by the failed attempts.
    (row,) = token_rows(app, user.id)
    assert row.used_at is None and row.revoked_at is None


# --- revoked ------------------------------------------------------------------------


def test_logout_revokes_the_family(app, client):
    user = make_user(app)
    other_session = login(client, user)
    resp = client.post(LOGOUT, headers=user.refresh_headers)
    assert resp.status_code == 204
    assert resp.get_data() == b""
    assert_401(refresh(client, user.refresh_token), "token_revoked")
    assert_401(client.get(ME, headers=user.headers), "token_revoked")
    assert_401(client.post(LOGOUT, headers=user.refresh_headers), "token_revoked")
    # The other device's session is untouched.
    assert client.get(ME, headers=bearer(other_session["access_token"])).status_code == 200
    assert refresh(client, other_session["refresh_token"]).status_code == 200
    rows = {r.family_id: r for r in token_rows(app, user.id) if r.revoked_at is not None}
    assert list(rows) == [claims_of(app, user.refresh_token)["fam"]]


def test_logout_after_rotation_revokes_rotated_tokens(app, client):
    user = make_user(app)
    pair = refresh(client, user.refresh_token).get_json()
    assert client.post(LOGOUT, headers=bearer(pair["refresh_token"])).status_code == 204
    assert_401(client.get(ME, headers=bearer(pair["access_token"])), "token_revoked")
    assert_401(refresh(client, pair["refresh_token"]), "token_revoked")
    assert all(r.revoked_at is not None for r in token_rows(app, user.id))


def test_password_change_revokes_every_session(app, client):
    user = make_user(app)
    second = login(client, user)
    resp = client.post(
        "/api/v1/me/password",
        headers=user.headers,
        json={"old_password": user.password, "new_password": "brand-new-pw"},
    )
    assert resp.status_code == 204, resp.get_json()
    for access in (user.access_token, second["access_token"]):
        assert_401(client.get(ME, headers=bearer(access)), "token_revoked")
    for refresh_token in (user.refresh_token, second["refresh_token"]):
        assert_401(refresh(client, refresh_token), "token_revoked")
    assert all(r.revoked_at is not None for r in token_rows(app, user.id))
    # A new sign-in with the new password works.
    fresh = client.post(LOGIN, json={"phone": user.phone, "password": "brand-new-pw"})
    assert fresh.status_code == 200
    assert client.get(ME, headers=bearer(fresh.get_json()["access_token"])).status_code == 200


def test_unknown_refresh_jti_is_revoked(app, client):
    """A refresh token whose row is gone (purged) is no longer honoured."""
    user = make_user(app)
    with app.app_context():
        db.session.execute(sa.delete(RefreshToken))
        db.session.commit()
    assert_401(refresh(client, user.refresh_token), "token_revoked")


# --- reused -------------------------------------------------------------------------


def test_reused_refresh_token_revokes_the_family(app, client):
    user = make_user(app)
    rotated = refresh(client, user.refresh_token).get_json()
    bystander = login(client, user)

    resp = refresh(client, user.refresh_token)
    assert_401(resp, "refresh_token_reused")
    assert resp.get_json()["message"] == "检测到凭证被重复使用，已退出所有设备"

    # Everything of that family stops working: the rotated-to refresh token,
    # its access token, and the original access token.
    assert_401(refresh(client, rotated["refresh_token"]), "token_revoked")
    assert_401(client.get(ME, headers=bearer(rotated["access_token"])), "token_revoked")
    assert_401(client.get(ME, headers=user.headers), "token_revoked")
    # Presenting the spent token again is still recognised as reuse.
    assert_401(refresh(client, user.refresh_token), "refresh_token_reused")

    family = claims_of(app, user.refresh_token)["fam"]
    rows = token_rows(app, user.id)
    assert all(r.revoked_at is not None for r in rows if r.family_id == family)
    assert all(r.revoked_at is None for r in rows if r.family_id != family)
    # Another session of the same user survives.
    assert client.get(ME, headers=bearer(bystander["access_token"])).status_code == 200


def test_reuse_detected_deep_in_a_chain(app, client):
    user = make_user(app)
    chain = [user.refresh_token]
    for _ in range(3):
        chain.append(refresh(client, chain[-1]).get_json()["refresh_token"])
    assert_401(refresh(client, chain[1]), "refresh_token_reused")
    assert_401(refresh(client, chain[-1]), "token_revoked")


def test_rotate_service_refuses_other_users_token(app):
    """The conditional UPDATE also binds the token to its owner."""
    owner = make_user(app)
    other = make_user(app)
    with app.app_context():
        payload = decode_token(owner.refresh_token)
        with pytest.raises(Unauthorized) as info:
            tokens.rotate_refresh_token(db.session.get(User, other.id), payload)
        assert info.value.slug == "token_revoked"
    (row,) = token_rows(app, owner.id)
    assert row.used_at is None


def test_an_access_token_of_a_family_nobody_issued_is_revoked(app, client):
    from flask_jwt_extended import create_access_token

    user = make_user(app)
    with app.app_context():
        minted = create_access_token(identity=str(user.id), additional_claims={"fam": "never-issued"})
    resp = client.get("/api/v1/me", headers={"Authorization": f"Bearer {minted}"})
    assert (resp.status_code, resp.get_json()["error"]) == (401, "token_revoked")
    assert client.get("/api/v1/me", headers=user.headers).status_code == 200


def test_an_authenticated_request_reads_the_user_and_the_revocation_in_one_query(app, client):
    """The user, their volunteer record and the family's revocation come back in
    one statement, asked once per request."""
    from tests.database import recorded
    from tests.factories import make_volunteer

    account = make_volunteer(app)
    with recorded(app) as seen:
        resp = client.get(ME, headers=bearer(account.access_token))
    assert resp.status_code == 200
    assert resp.get_json()["volunteer"] is not None
    reads = [statement for statement, _ in seen if "FROM" in statement.upper()]
    touching = [s for s in reads if "refresh_tokens" in s or "users" in s or "volunteers" in s]
    assert len(touching) == 1, touching
    assert all(table in touching[0] for table in ("refresh_tokens", "users", "volunteers"))


def test_a_token_is_refused_on_the_request_right_after_logout(app, client):
    """Nothing about a session is remembered between requests: the first request
    after the logout's commit is refused, on the same app and connection pool."""
    account = make_user(app)
    assert client.get(ME, headers=bearer(account.access_token)).status_code == 200
    assert client.post(LOGOUT, headers=bearer(account.refresh_token)).status_code in (200, 204)
    resp = client.get(ME, headers=bearer(account.access_token))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "token_revoked"


def test_a_token_whose_subject_is_not_a_number_is_refused(app, client):
    account = make_user(app)
    with app.app_context():
        family = db.session.scalar(sa.select(RefreshToken.family_id).where(RefreshToken.user_id == account.id))
        token = create_access_token(identity="not-a-number", additional_claims={"fam": family})
    resp = client.get(ME, headers=bearer(token))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_token"
