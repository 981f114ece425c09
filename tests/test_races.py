"""Races, on PostgreSQL, with real threads: each thread has its own test client,
so each request has its own app context, session and connection.

A barrier releases all threads at once; the database, not Python, decides
who wins. SQLite serialises writers, so these tests need PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, EnergyEntry, IdempotencyKey, Posting, ServiceRecord, Volunteer
from tests.factories import make_org, make_posting, make_user, make_volunteer
from tests.helpers import at_once, outcomes

pytestmark = [pytest.mark.usefixtures("postgres_only"), pytest.mark.slow]


def claim_calls(posting_id, accounts, extra_headers=None):
    path = f"/api/v1/postings/{posting_id}/claims"
    return [("POST", path, {**a.headers, **(extra_headers or {})}, {}) for a in accounts]


def posting_counts(app, posting_id):
    with app.app_context():
        posting = db.session.get(Posting, posting_id)
        by_status = dict(
            db.session.execute(
                sa.select(Claim.status, sa.func.count()).where(Claim.posting_id == posting_id).group_by(Claim.status)
            ).all()
        )
        return posting.status, posting.claimed_count, posting.waitlist_count, by_status


def test_fifty_volunteers_one_wish(app):
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish")
    volunteers = [make_volunteer(app) for _ in range(50)]
    results = at_once(app, claim_calls(wish, volunteers))
    assert outcomes(results) == Counter({(201, "active"): 1, (409, "already_claimed"): 49})
    status, claimed, waitlisted, by_status = posting_counts(app, wish)
    assert (status, claimed, waitlisted, by_status) == ("claimed", 1, 0, {"active": 1})
    winner = next(i for i, (code, _) in enumerate(results) if code == 201)
    with app.app_context():
        allowances = dict(db.session.execute(sa.select(Volunteer.user_id, Volunteer.active_wish_claims)).all())
    assert allowances[volunteers[winner].id] == 1
    assert sum(allowances.values()) == 1  # the losers' allowances were rolled back


def test_two_hundred_volunteers_twenty_places(app):
    org_id, coordinator = make_org(app)
    project = make_posting(app, coordinator, kind="project", org_id=org_id, capacity=20)
    volunteers = [make_volunteer(app) for _ in range(200)]
    results = at_once(app, claim_calls(project, volunteers))
    assert outcomes(results) == Counter({(201, "active"): 20, (201, "waitlisted"): 180})
    assert posting_counts(app, project) == ("full", 20, 180, {"active": 20, "waitlisted": 180})


def test_one_volunteer_twenty_wishes_at_once(app):
    resident = make_user(app)
    volunteer = make_volunteer(app)
    wishes = [make_posting(app, resident, kind="wish", title=f"心愿{i}") for i in range(20)]
    calls = [("POST", f"/api/v1/postings/{w}/claims", volunteer.headers, {}) for w in wishes]
    results = at_once(app, calls)
    limit = app.config["ACTIVE_WISH_CLAIM_LIMIT"]
    assert outcomes(results) == Counter({(201, "active"): limit, (409, "active_claim_limit"): 20 - limit})
    with app.app_context():
        assert db.session.scalar(sa.select(Volunteer.active_wish_claims)) == limit
        assert db.session.scalar(sa.select(sa.func.count(Claim.id))) == limit
        taken = db.session.scalar(sa.select(sa.func.count(Posting.id)).where(Posting.status == "claimed"))
        assert taken == limit
        assert db.session.scalar(sa.select(sa.func.sum(Posting.claimed_count))) == limit


def test_concurrent_redemptions_never_overdraw(app):
    org_id, coordinator = make_org(app)
    rewards = [
        make_posting(app, coordinator, kind="energy", org_id=org_id, energy_cost=30, capacity=5, title=f"奖品{i}")
        for i in range(12)
    ]
    volunteer = make_volunteer(app)
    with app.app_context():
        db.session.execute(sa.update(Volunteer).values(energy_balance=100))
        db.session.commit()
    calls = [("POST", f"/api/v1/postings/{r}/claims", volunteer.headers, {}) for r in rewards]
    results = at_once(app, calls)
    assert outcomes(results) == Counter({(201, "active"): 3, (409, "insufficient_energy"): 9})
    with app.app_context():
        assert db.session.scalar(sa.select(Volunteer.energy_balance)) == 10
        entries = db.session.execute(sa.select(EnergyEntry.delta, EnergyEntry.balance_after)).all()
        assert sorted(entries, key=lambda e: -e[1]) == [(-30, 70), (-30, 40), (-30, 10)]
        assert db.session.scalar(sa.select(sa.func.sum(Posting.claimed_count))) == 3


def test_many_redeemers_one_stock(app):
    org_id, coordinator = make_org(app)
    reward = make_posting(app, coordinator, kind="energy", org_id=org_id, energy_cost=10, capacity=7)
    volunteers = [make_volunteer(app) for _ in range(30)]
    with app.app_context():
        db.session.execute(sa.update(Volunteer).values(energy_balance=10))
        db.session.commit()
    results = at_once(app, claim_calls(reward, volunteers))
    assert outcomes(results) == Counter({(201, "active"): 7, (409, "posting_full"): 23})
    with app.app_context():
        balances = Counter(db.session.scalars(sa.select(Volunteer.energy_balance)))
    assert balances == Counter({0: 7, 10: 23})


def test_the_same_idempotency_key_ten_times_at_once(app):
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish")
    volunteer = make_volunteer(app)
    calls = claim_calls(wish, [volunteer] * 10, {"Idempotency-Key": "tap-tap-tap"})
    results = at_once(app, calls)
    codes = Counter(status for status, _ in results)
    assert set(codes) <= {201, 409}
    created = [body for status, body in results if status == 201]
    assert len({body["id"] for body in created}) == 1  # replays carry the same claim
    assert all(body["error"] == "idempotency_key_in_progress" for status, body in results if status == 409)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Claim.id))) == 1
        assert db.session.scalar(sa.select(IdempotencyKey.status_code)) == 201
    # once the first has answered, every retry is a replay
    again = at_once(app, calls[:3])
    assert [status for status, _ in again] == [201, 201, 201]
    assert {body["id"] for _, body in again} == {created[0]["id"]}


def test_withdrawals_at_once_promote_distinct_waitlisted_claims(app):
    org_id, coordinator = make_org(app)
    project = make_posting(app, coordinator, kind="project", org_id=org_id, capacity=5)
    active = [make_volunteer(app) for _ in range(5)]
    waiting = [make_volunteer(app) for _ in range(8)]
    ids = {}
    client = app.test_client()
    for account in active + waiting:
        resp = client.post(f"/api/v1/postings/{project}/claims", json={}, headers=account.headers)
        ids[account.id] = resp.get_json()["id"]
    calls = [("POST", f"/api/v1/claims/{ids[a.id]}/withdraw", a.headers, {}) for a in active]
    results = at_once(app, calls)
    assert [status for status, _ in results] == [200] * 5
    status, claimed, waitlisted, by_status = posting_counts(app, project)
    assert (status, claimed, waitlisted) == ("full", 5, 3)
    assert by_status == {"withdrawn": 5, "active": 5, "waitlisted": 3}
    with app.app_context():
        promoted = set(
            db.session.scalars(sa.select(Claim.user_id).where(Claim.posting_id == project, Claim.status == "active"))
        )
    assert promoted == {a.id for a in waiting[:5]}  # the oldest five, in sign-up order


def test_claims_and_withdrawals_mixed_keep_the_counters_true(app):
    org_id, coordinator = make_org(app)
    start = clock.utcnow() + timedelta(days=1)
    project = make_posting(
        app,
        coordinator,
        kind="project",
        org_id=org_id,
        capacity=10,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    holders = [make_volunteer(app) for _ in range(10)]
    client = app.test_client()
    ids = {}
    for account in holders:
        ids[account.id] = client.post(
            f"/api/v1/postings/{project}/claims", json={}, headers=account.headers
        ).get_json()["id"]
    newcomers = [make_volunteer(app) for _ in range(20)]
    calls = [("POST", f"/api/v1/claims/{ids[a.id]}/withdraw", a.headers, {}) for a in holders[:6]]
    calls += claim_calls(project, newcomers)
    results = at_once(app, calls)
    assert all(status in (200, 201) for status, _ in results)
    status, claimed, waitlisted, by_status = posting_counts(app, project)
    assert claimed == by_status.get("active", 0) == 10
    assert waitlisted == by_status.get("waitlisted", 0) == 14
    assert status == "full"


def test_confirming_at_once_pays_once(app):
    org_id, coordinator = make_org(app)
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish", recording_org_id=org_id)
    volunteer = make_volunteer(app)
    client = app.test_client()
    claim_id = client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers).get_json()["id"]
    client.post(f"/api/v1/claims/{claim_id}/fulfil", json={"note": "好了", "minutes": 60}, headers=volunteer.headers)
    # the recording org's coordinator confirms: recorded at once
    calls = [("POST", f"/api/v1/claims/{claim_id}/confirm", coordinator.headers, {"rating": 5})] * 10
    results = at_once(app, calls)
    assert outcomes(results) == Counter({(200, "confirmed"): 1, (409, "claim_not_fulfilled"): 9})
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ServiceRecord.id))) == 1
        row = db.session.execute(sa.select(Volunteer.credit_minutes, Volunteer.energy_balance)).one()
    assert tuple(row) == (60, 15)


def test_checking_in_and_out_at_once_counts_once(app):
    org_id, coordinator = make_org(app)
    start = clock.utcnow() + timedelta(minutes=10)
    project = make_posting(
        app, coordinator, kind="project", org_id=org_id, starts_at=start, ends_at=start + timedelta(hours=2)
    )
    volunteer = make_volunteer(app)
    client = app.test_client()
    claim_id = client.post(f"/api/v1/postings/{project}/claims", json={}, headers=volunteer.headers).get_json()["id"]
    site = {"lat": 29.87, "lng": 121.55}
    results = at_once(app, [("POST", f"/api/v1/claims/{claim_id}/check-in", volunteer.headers, site)] * 8)
    assert outcomes(results) == Counter({(200, "active"): 1, (409, "already_checked_in"): 7})
    clock.advance(timedelta(hours=1, minutes=5))
    results = at_once(app, [("POST", f"/api/v1/claims/{claim_id}/check-out", volunteer.headers, site)] * 8)
    assert outcomes(results) == Counter({(200, "confirmed"): 1, (409, "claim_not_active"): 7})
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ServiceRecord.id))) == 1
        assert db.session.scalar(sa.select(Volunteer.credit_minutes)) == 55  # from the start, not check-in


@pytest.mark.parametrize("kind", ["wish", "project"])
def test_one_volunteer_tapping_ten_times_at_once_claims_once(app, kind):
    """A double tap: one claim, the others 409 duplicate_claim — whether the twin
    finds the posting taken (a wish) or trips the unique index of live claims
    (a project with room)."""
    org_id, coordinator = make_org(app)
    posting = make_posting(app, coordinator, kind=kind, org_id=org_id, capacity=None if kind == "wish" else 20)
    volunteer = make_volunteer(app)
    results = at_once(app, claim_calls(posting, [volunteer] * 10))
    assert outcomes(results) == Counter({(201, "active"): 1, (409, "duplicate_claim"): 9})
    status, claimed, waitlisted, by_status = posting_counts(app, posting)
    assert (claimed, waitlisted, by_status) == (1, 0, {"active": 1})
    with app.app_context():
        allowance = db.session.scalar(sa.select(Volunteer.active_wish_claims))
    assert allowance == (1 if kind == "wish" else 0)
