"""Idempotency-Key on every authenticated POST: replay, reuse, in flight, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask_jwt_extended import jwt_required

from app import clock
from app.extensions import db
from app.idempotency import request_fingerprint
from app.models import Claim, EnergyEntry, IdempotencyKey, Org, User, Volunteer
from tests.factories import make_org, make_posting, make_user, make_volunteer
from tests.helpers import sms_code


def post(client, path, account, key, body=None, **kwargs):
    headers = {**account.headers, "Idempotency-Key": key}
    return client.post(path, json=body if body is not None else {}, headers=headers, **kwargs)


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def key_rows(app) -> list[tuple]:
    with app.app_context():
        return [
            tuple(r)
            for r in db.session.execute(
                sa.select(IdempotencyKey.user_id, IdempotencyKey.key, IdempotencyKey.status_code).order_by(
                    IdempotencyKey.id
                )
            )
        ]


@pytest.fixture
def wish(app):
    resident = make_user(app)
    volunteer = make_volunteer(app)
    return make_posting(app, resident, kind="wish"), volunteer


def test_a_retried_claim_is_replayed_not_repeated(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    first = post(client, path, volunteer, "k-1", {"message": "我来"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    again = post(client, path, volunteer, "k-1", {"message": "我来"})
    assert again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"].startswith("application/json")
    assert count(app, Claim) == 1
    assert key_rows(app) == [(volunteer.id, "k-1", 201)]
    # without the key the same request is a new one, and conflicts
    assert client.post(path, json={"message": "我来"}, headers=volunteer.headers).status_code == 409


def test_the_body_is_compared_canonically(app, client):
    user = make_user(app)
    first = post(client, "/api/v1/orgs", user, "org", {"name": "鼓楼社区", "kind": "community", "district": "haishu"})
    assert first.status_code == 201
    raw = '{ "district": "haishu",  "kind": "community", "name": "鼓楼社区" }'
    again = client.post(
        "/api/v1/orgs",
        data=raw.encode(),
        content_type="application/json",
        headers={**user.headers, "Idempotency-Key": "org"},
    )
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(app, Org) == 1


def test_the_same_key_with_another_body_is_refused(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    assert post(client, path, volunteer, "k", {"message": "a"}).status_code == 201
    resp = post(client, path, volunteer, "k", {"message": "b"})
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "idempotency_key_reused"
    assert "Idempotency-Key" in body["errors"]["headers"]
    other_path = post(client, "/api/v1/orgs", volunteer, "k", {"name": "x社区", "kind": "ngo", "district": "haishu"})
    assert other_path.status_code == 422
    assert other_path.get_json()["error"] == "idempotency_key_reused"
    assert count(app, Org) == 0


def test_a_request_still_running_answers_409(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    # the first request's row: inserted and committed, no response yet
    with app.test_request_context(path, method="POST", json={}):
        fingerprint = request_fingerprint()
    with app.app_context():
        db.session.add(
            IdempotencyKey(
                user_id=volunteer.id,
                key="busy",
                method="POST",
                path=path,
                request_hash=fingerprint,
                created_at=clock.utcnow(),
            )
        )
        db.session.commit()
    resp = post(client, path, volunteer, "busy")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "idempotency_key_in_progress"
    assert count(app, Claim) == 0

    # a first request that never answered (its worker died) is taken over after the lease
    clock.advance(timedelta(seconds=61))
    resp = post(client, path, volunteer, "busy")
    assert resp.status_code == 201
    assert count(app, Claim) == 1
    assert key_rows(app) == [(volunteer.id, "busy", 201)]


def test_keys_expire_after_24_hours(app, client):
    user = make_user(app)
    body = {"name": "白云社区", "kind": "community", "district": "haishu"}
    assert post(client, "/api/v1/orgs", user, "daily", body).status_code == 201
    clock.advance(timedelta(hours=23, minutes=59))
    assert post(client, "/api/v1/orgs", user, "daily", body).headers.get("Idempotent-Replayed") == "true"
    clock.advance(timedelta(minutes=2))
    resp = post(client, "/api/v1/orgs", user, "daily", body)
    assert "Idempotent-Replayed" not in resp.headers
    assert resp.status_code == 409  # it ran again: the name is taken now
    assert resp.get_json()["error"] == "org_name_taken"
    assert key_rows(app) == [(user.id, "daily", 409)]


def test_keys_belong_to_a_user(app, client):
    alice, bob = make_user(app), make_user(app)
    a = post(client, "/api/v1/orgs", alice, "same", {"name": "甲社区", "kind": "community", "district": "haishu"})
    b = post(client, "/api/v1/orgs", bob, "same", {"name": "乙社区", "kind": "community", "district": "haishu"})
    assert (a.status_code, b.status_code) == (201, 201)
    assert count(app, Org) == 2


def test_an_error_answer_is_replayed_too(app, client, wish):
    posting_id, volunteer = wish
    other = make_volunteer(app)
    path = f"/api/v1/postings/{posting_id}/claims"
    assert client.post(path, json={}, headers=volunteer.headers).status_code == 201
    first = post(client, path, other, "late")
    assert first.get_json()["error"] == "already_claimed"
    again = post(client, path, other, "late")
    assert again.status_code == 409
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_retried_redemption_debits_once(app, client):
    org_id, coordinator = make_org(app)
    reward = make_posting(app, coordinator, kind="energy", org_id=org_id, energy_cost=30)
    volunteer = make_volunteer(app)
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(energy_balance=100))
        db.session.commit()
    path = f"/api/v1/postings/{reward}/claims"
    for _ in range(3):
        assert post(client, path, volunteer, "redeem-1").status_code == 201
    with app.app_context():
        assert db.session.scalar(sa.select(Volunteer.energy_balance).where(Volunteer.user_id == volunteer.id)) == 70
    assert count(app, EnergyEntry) == 1


def test_a_retried_withdrawal_is_replayed(app, client, wish):
    posting_id, volunteer = wish
    claim_id = client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=volunteer.headers).get_json()["id"]
    path = f"/api/v1/claims/{claim_id}/withdraw"
    first = post(client, path, volunteer, "w")
    again = post(client, path, volunteer, "w")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.get_json()["status"] == "withdrawn"


def test_unauthorised_requests_keep_no_key(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    resp = client.post(path, json={}, headers={"Authorization": "Bearer not-a-token", "Idempotency-Key": "x"})
    assert resp.status_code == 401
    resp = client.post(path, json={}, headers={"Idempotency-Key": "x"})
    assert resp.status_code == 401
    assert key_rows(app) == []


REGISTRATION = {"phone": "13811112222", "password": "secret-pass", "display_name": "小赵"}


def registration(app, client, phone: str = REGISTRATION["phone"]) -> dict:
    """A sign-up body with a fresh code for ``phone`` and the current privacy version."""
    return {
        **REGISTRATION,
        "phone": phone,
        "sms_code": sms_code(app, client, phone, "register"),
        "privacy_version": app.config["PRIVACY_VERSION"],
    }


def test_a_retried_registration_is_replayed_not_refused(app, client):
    """The phone's first sign-up went through but its answer was lost: the retry
    with the same key gets that 201 again, not a refusal of its spent code."""
    body = registration(app, client)
    first = client.post("/api/v1/auth/register", json=body, headers={"Idempotency-Key": "reg-1"})
    assert first.status_code == 201
    again = client.post("/api/v1/auth/register", json=body, headers={"Idempotency-Key": "reg-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 1
        assert db.session.scalar(sa.select(IdempotencyKey.user_id)) is None
    # The tokens replayed are the account's, and work.
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {again.get_json()['access_token']}"})
    assert me.status_code == 200 and me.get_json()["id"] == first.get_json()["user"]["id"]
    # Without the key (or with a new one) the code is spent, as before.
    assert client.post("/api/v1/auth/register", json=body).status_code == 422
    other_key = client.post("/api/v1/auth/register", json=body, headers={"Idempotency-Key": "reg-2"})
    assert other_key.status_code == 422
    assert other_key.get_json()["error"] == "invalid_sms_code"


def test_a_registration_key_with_another_body_is_refused(app, client):
    body = registration(app, client)
    assert client.post("/api/v1/auth/register", json=body, headers={"Idempotency-Key": "k"}).status_code == 201
    # Another password (or another phone) under the same key: not the same request.
    for changed in ({"password": "another-pass"}, {"phone": "13811113333"}):
        resp = client.post("/api/v1/auth/register", json={**body, **changed}, headers={"Idempotency-Key": "k"})
        assert resp.status_code == 422
        assert resp.get_json()["error"] == "idempotency_key_reused"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_registration_keys_do_not_meet_a_users_keys(app, client):
    """A user's key and a registration's key of the same text are different keys."""
    user = make_user(app)
    body = {"name": "某组织", "kind": "community", "district": "haishu"}
    assert post(client, "/api/v1/orgs", user, "same", body).status_code == 201
    resp = client.post("/api/v1/auth/register", json=registration(app, client), headers={"Idempotency-Key": "same"})
    assert resp.status_code == 201
    assert "Idempotent-Replayed" not in resp.headers


def test_login_takes_no_key(app, client):
    assert client.post("/api/v1/auth/register", json=registration(app, client)).status_code == 201
    login = {"phone": REGISTRATION["phone"], "password": REGISTRATION["password"]}
    first = client.post("/api/v1/auth/login", json=login, headers={"Idempotency-Key": "l"})
    second = client.post("/api/v1/auth/login", json=login, headers={"Idempotency-Key": "l"})
    assert first.status_code == second.status_code == 200
    assert first.get_json()["refresh_token"] != second.get_json()["refresh_token"]  # fresh tokens each time
    assert key_rows(app) == []


def test_server_errors_are_not_kept(app):
    calls = []

    @jwt_required()
    def boom():
        calls.append(1)
        raise RuntimeError("the database went away")

    app.add_url_rule("/api/v1/_test/boom", "boom", boom, methods=["POST"])
    client = app.test_client()
    user = make_user(app)
    for _ in range(2):
        resp = post(client, "/api/v1/_test/boom", user, "boom-key")
        assert resp.status_code == 500
        assert resp.get_json()["error"] == "internal_error"
    assert len(calls) == 2  # the retry ran again
    assert key_rows(app) == []


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "中文"])
def test_invalid_keys_are_refused(app, client, key):
    user = make_user(app)
    resp = client.post(
        "/api/v1/orgs", json={}, headers={**user.headers, "Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert resp.status_code == 422
    assert "Idempotency-Key" in resp.get_json()["errors"]["headers"]


def test_without_the_header_nothing_is_stored(app, client, wish):
    posting_id, volunteer = wish
    assert client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=volunteer.headers).status_code == 201
    assert key_rows(app) == []


def test_get_requests_ignore_the_header(app, client):
    user = make_user(app)
    resp = client.get("/api/v1/me", headers={**user.headers, "Idempotency-Key": "g"})
    assert resp.status_code == 200
    assert key_rows(app) == []


def test_token_refresh_is_not_stored(app, client):
    user = make_user(app)
    resp = client.post("/api/v1/auth/refresh", headers={**user.refresh_headers, "Idempotency-Key": "r"})
    assert resp.status_code == 200
    assert key_rows(app) == []  # the answer holds live tokens


def test_the_header_is_documented_on_authenticated_posts(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    claim_post = spec["paths"]["/api/v1/postings/{posting_id}/claims"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in claim_post["parameters"])
    assert not any(
        p.get("name") == "Idempotency-Key" for p in spec["paths"]["/api/v1/auth/login"]["post"].get("parameters", [])
    )
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in register["parameters"])
    assert "`idempotency_key_reused`" in register["description"]
    assert "idempotency_key" not in spec["paths"]["/api/v1/auth/login"]["post"]["description"]


def test_a_revoked_session_gets_no_replay(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    assert post(client, path, volunteer, "k-r").status_code == 201
    assert client.post("/api/v1/auth/logout", headers=volunteer.refresh_headers).status_code == 204
    again = post(client, path, volunteer, "k-r")
    assert (again.status_code, again.get_json()["error"]) == (401, "token_revoked")
    assert "Idempotent-Replayed" not in again.headers


def test_stored_answers_hold_no_contact_in_clear(app, client):
    org_id, coordinator = make_org(app)
    body = {
        "kind": "wish",
        "title": "想要一台收音机",
        "description": "听新闻",
        "district": "haishu",
        "org_id": org_id,
        "beneficiary": {"name": "张阿婆", "phone": "13812340001", "address": "公园路 18 号 2 单元 301 室"},
    }
    first = post(client, "/api/v1/postings", coordinator, "k-contact", body)
    assert first.status_code == 201
    assert first.get_json()["beneficiary"]["phone"] == "+8613812340001"
    with app.app_context():
        stored = db.session.scalar(sa.select(IdempotencyKey.response_body))
    assert "13812340001" not in stored and "公园路" not in stored and "\\u516c" not in stored
    again = post(client, "/api/v1/postings", coordinator, "k-contact", body)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_after_a_key_rotation_the_request_runs_again_and_its_guards_answer(app, client, wish):
    posting_id, volunteer = wish
    path = f"/api/v1/postings/{posting_id}/claims"
    assert post(client, path, volunteer, "k-rot").status_code == 201
    app.config["SECRET_KEY"] = "a-rotated-secret-key-long-enough-for-all-uses"
    again = post(client, path, volunteer, "k-rot")
    assert (again.status_code, again.get_json()["error"]) == (409, "duplicate_claim")
    assert count(app, Claim) == 1
