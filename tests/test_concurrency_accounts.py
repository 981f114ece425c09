"""Races on the account tables, with real threads against PostgreSQL: the
unique indexes and conditional UPDATEs decide, never a read-then-write."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import RefreshToken, User, Volunteer, VolunteerSkill
from app.sms import provider_for
from tests.factories import make_user
from tests.helpers import sms_code

pytestmark = pytest.mark.slow

THREADS = 24
# Profiles saved at once share a skill: the skills index is rebuilt one save at a time.
SKILLS = (["elderly", "repair"], ["elderly", "driving"])
VALID_ID = "330203199001011236"


def race(app, n: int, request: Callable[[object, int], object]) -> list:
    """Run ``request(client, i)`` from ``n`` threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=30)
            results[i] = request(client, i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_one_code_raced_by_many_registrations_makes_one_account(app, postgres_only):
    """The same sign-up sent from many threads at once, one code between them: it
    is spent once, so one account is made and every other request is refused."""
    code = sms_code(app, app.test_client(), "13812345678", "register")

    def register(client, i):
        resp = client.post(
            "/api/v1/auth/register",
            json={
                "phone": "13812345678" if i % 2 else "+8613812345678",
                "sms_code": code,
                "password": "long-enough",
                "display_name": f"u{i}",
                "privacy_version": app.config["PRIVACY_VERSION"],
            },
        )
        return resp.status_code, resp.get_json()

    results = race(app, THREADS, register)
    codes = Counter(code for code, _ in results)
    assert codes[201] == 1, codes
    assert {(code, body["error"]) for code, body in results if code != 201} <= {
        (422, "invalid_sms_code"),
        (409, "phone_taken"),
    }
    winner = next(body for code, body in results if code == 201)
    with app.app_context():
        users = db.session.scalars(sa.select(User)).all()
        assert [(u.id, u.phone) for u in users] == [(winner["user"]["id"], "+8613812345678")]
        # Only the winner got a session.
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RefreshToken)) == 1


def test_one_phone_asking_from_many_threads_gets_one_code(app, postgres_only):
    def ask(client, i):
        resp = client.post(
            "/api/v1/auth/sms-codes",
            json={"phone": "13812345678", "purpose": "register"},
            environ_base={"REMOTE_ADDR": f"10.9.0.{i}"},
        )
        return resp.status_code

    assert Counter(race(app, THREADS, ask)) == {202: 1, 429: THREADS - 1}
    assert len(provider_for(app).sent) == 1


def test_same_email_from_many_threads_makes_one_account(app, postgres_only):
    client = app.test_client()
    codes = {
        i: sms_code(app, client, f"139{i:08d}", "register", environ_base={"REMOTE_ADDR": f"10.8.0.{i}"})
        for i in range(THREADS)
    }

    def register(client, i):
        resp = client.post(
            "/api/v1/auth/register",
            json={
                "phone": f"139{i:08d}",
                "sms_code": codes[i],
                "password": "long-enough",
                "display_name": "x",
                "email": "Same@Example.com",
                "privacy_version": app.config["PRIVACY_VERSION"],
            },
        )
        return resp.status_code, resp.get_json()["error"] if resp.status_code >= 400 else None

    results = race(app, THREADS, register)
    assert Counter(results) == {(201, None): 1, (409, "email_taken"): THREADS - 1}
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_same_id_number_from_many_accounts_registers_once(app, postgres_only):
    accounts = [make_user(app) for _ in range(THREADS)]

    def volunteer(client, i):
        resp = client.put(
            "/api/v1/me/volunteer",
            headers=accounts[i].headers,
            json={"real_name": "陈晓", "id_number": "330203199001011236", "district": "haishu"},
        )
        return resp.status_code, resp.get_json().get("error")

    results = race(app, THREADS, volunteer)
    assert Counter(results) == {(200, None): 1, (409, "id_number_taken"): THREADS - 1}
    with app.app_context():
        rows = db.session.scalars(sa.select(Volunteer)).all()
        assert len(rows) == 1 and rows[0].volunteer_no == f"NB{rows[0].id:08d}"


def test_one_account_registering_from_many_threads_gets_one_volunteer_row(app, postgres_only):
    """A double tap on "register": every request succeeds and updates one row,
    none is told its own ID number is taken."""
    account = make_user(app)

    def volunteer(client, i):
        resp = client.put(
            "/api/v1/me/volunteer",
            headers=account.headers,
            json={"real_name": "陈晓", "id_number": VALID_ID, "district": "haishu", "skills": SKILLS[i % 2]},
        )
        return resp.status_code, resp.get_json().get("volunteer_no")

    results = race(app, 8, volunteer)
    with app.app_context():
        rows = db.session.scalars(sa.select(Volunteer)).all()
        assert len(rows) == 1
        assert rows[0].user_id == account.id
        assert Counter(results) == {(200, rows[0].volunteer_no): 8}
        indexed = db.session.scalars(sa.select(VolunteerSkill.skill).where(VolunteerSkill.user_id == account.id))
        assert set(indexed) == set(rows[0].skills)


def test_one_refresh_token_spent_by_many_threads_wins_once(app, postgres_only):
    """Two devices presenting one refresh token at once: one rotation wins; the
    others count as reuse and the family is revoked (stolen-token rule)."""
    account = make_user(app)

    def refresh(client, _i):
        resp = client.post("/api/v1/auth/refresh", headers=account.refresh_headers)
        return resp.status_code, resp.get_json()

    results = race(app, 12, refresh)
    codes = Counter(code for code, _ in results)
    assert codes[200] == 1, codes
    assert codes[401] == 11
    assert {body["error"] for code, body in results if code == 401} <= {"refresh_token_reused", "token_revoked"}
    with app.app_context():
        rows = db.session.scalars(sa.select(RefreshToken)).all()
        assert len(rows) == 2  # the spent token and the one rotation that won
        assert sum(1 for r in rows if r.used_at is not None) == 1
        assert all(r.revoked_at is not None for r in rows)
