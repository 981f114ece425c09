"""Every posting and every claim ends, and every hour is capped by what happened.

Each test here is one of the holes found in the rulebook review: it failed on
the code before the rulebook and passes now.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import AuditEntry, Claim, Notification, Posting, ServiceRecord, Volunteer
from tests.factories import add_member, make_org, make_posting, make_user, make_volunteer
from tests.moments import YEAR

T0 = datetime(YEAR, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Ningbo
SITE = {"lat": 29.87, "lng": 121.55}


@pytest.fixture(autouse=True)
def frozen():
    clock.freeze(T0)


def claim(client, account, posting_id):
    resp = client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=account.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def act(client, account, claim_id, action, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def run(app, job: str) -> dict:
    return app.test_cli_runner().invoke(args=["jobs", "run", job]).output


def row(app, model, row_id):
    with app.app_context():
        found = db.session.get(model, row_id)
        db.session.expunge(found)
        return found


def volunteer_row(app, user_id) -> Volunteer:
    with app.app_context():
        found = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == user_id))
        db.session.expunge(found)
        return found


def told(app, kind: str) -> list[tuple[int, str]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Notification.user_id, Notification.data)
            .where(Notification.kind == kind)
            .order_by(Notification.id)
        )
        return [(user_id, data.get("claim_id") or data.get("posting_id")) for user_id, data in rows]


def records_of(app, user_id) -> list[ServiceRecord]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(ServiceRecord).where(ServiceRecord.volunteer_id == user_id)))
        for r in rows:
            db.session.expunge(r)
        return rows


# --- postings end by themselves ----------------------------------------------------------------------------------


def test_a_project_one_day_past_its_end_is_closed_after_one_run_and_leaves_the_feed(app, client):
    org_id, coordinator = make_org(app)
    start = T0 - timedelta(days=1, hours=3)
    project = make_posting(
        app, coordinator, kind="project", org_id=org_id, starts_at=start, ends_at=start + timedelta(hours=2)
    )
    assert [p["id"] for p in client.get("/api/v1/postings").get_json()["items"]] == [project]
    run(app, "expire_postings")
    assert row(app, Posting, project).status == "closed"
    assert client.get("/api/v1/postings").get_json()["items"] == []
    assert client.get(f"/api/v1/postings/{project}").get_json()["status"] == "closed"


@pytest.mark.parametrize("kind", ["charity", "service", "energy"])
def test_charity_services_and_rewards_close_at_their_end(app, kind):
    org_id, coordinator = make_org(app)
    posting = make_posting(
        app, coordinator, kind=kind, org_id=org_id, starts_at=T0 - timedelta(days=3), ends_at=T0 + timedelta(hours=1)
    )
    run(app, "expire_postings")
    assert row(app, Posting, posting).status == "open"
    clock.advance(timedelta(hours=1))
    run(app, "expire_postings")
    assert row(app, Posting, posting).status == "closed"


def test_a_posting_with_only_finished_claims_still_expires(app, client):
    org_id, coordinator = make_org(app)
    reward = make_posting(
        app, coordinator, kind="energy", org_id=org_id, energy_cost=10, expires_at=T0 + timedelta(days=1)
    )
    volunteer = make_volunteer(app)
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(energy_balance=10))
        db.session.commit()
    handed = claim(client, volunteer, reward)
    assert act(client, coordinator, handed, "confirm").status_code == 200
    clock.advance(timedelta(days=2))
    run(app, "expire_postings")
    assert row(app, Posting, reward).status == "expired"


def test_a_wish_with_a_live_claim_does_not_expire_until_the_claim_is_gone(app, client):
    resident = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, resident, expires_at=T0 + timedelta(hours=2), claim_ttl_hours=72)
    claim_id = claim(client, volunteer, wish)
    clock.advance(timedelta(hours=3))
    run(app, "expire_postings")
    assert row(app, Posting, wish).status == "claimed"
    assert act(client, volunteer, claim_id, "withdraw").status_code == 200
    # given back after the deadline: the wish is over, not back on the wall
    assert row(app, Posting, wish).status == "expired"
    assert told(app, "posting_expired") == [(resident.id, str(wish))]


# --- claims end by themselves ------------------------------------------------------------------------------------


def test_a_fulfilled_wish_eight_days_old_is_confirmed_with_its_record_and_energy(app, client):
    org_id, coordinator = make_org(app)
    resident = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, resident, recording_org_id=org_id)
    claim_id = claim(client, volunteer, wish)
    clock.advance(timedelta(days=2))
    assert act(client, volunteer, claim_id, "fulfil", note="买好了", minutes=90).status_code == 200
    fulfilled_at = clock.utcnow()

    clock.advance(timedelta(days=6, hours=23))
    run(app, "release_overdue_claims")
    assert row(app, Claim, claim_id).status == "fulfilled"

    clock.advance(timedelta(days=1))
    run(app, "release_overdue_claims")
    confirmed = row(app, Claim, claim_id)
    assert (confirmed.status, confirmed.auto_confirmed, confirmed.rating) == ("confirmed", True, None)
    assert row(app, Posting, wish).status == "closed"
    [record] = records_of(app, volunteer.id)
    assert (record.minutes, record.kind, record.rating, record.recorded_by) == (90, "credit", None, None)
    # the service time is the reported time before the fulfilment, not the claim's window
    assert (record.started_at, record.ended_at) == (fulfilled_at - timedelta(minutes=90), fulfilled_at)
    # the scheduler stands behind nothing: the record waits for the org's coordinator
    assert (record.status, record.org_id) == ("pending", org_id)
    assert volunteer_row(app, volunteer.id).energy_balance == 0
    assert told(app, "record_pending") == [(coordinator.id, str(wish))]
    resp = client.post(f"/api/v1/records/{record.id}/approve", headers=coordinator.headers)
    assert resp.status_code == 200, resp.get_json()
    assert (volunteer_row(app, volunteer.id).credit_minutes, volunteer_row(app, volunteer.id).energy_balance) == (
        90,
        15 + 5,
    )
    assert sorted(told(app, "claim_confirmed")) == sorted([(volunteer.id, str(claim_id)), (resident.id, str(claim_id))])
    body = client.get(f"/api/v1/claims/{claim_id}", headers=volunteer.headers).get_json()
    assert (body["auto_confirmed"], body["rating"]) == (True, None)

    run(app, "release_overdue_claims")  # idempotent: nothing twice
    assert len(records_of(app, volunteer.id)) == 1
    assert volunteer_row(app, volunteer.id).energy_balance == 20


def test_an_unconfirmed_service_is_confirmed_for_its_provider(app, client):
    org_id, _ = make_org(app)
    provider = make_volunteer(app)
    add_member(app, org_id, provider)
    resident = make_user(app)
    service = make_posting(app, provider, kind="service", org_id=org_id)
    # offered without an org: the booking is confirmed, but nobody records it
    org_less = make_posting(app, provider, kind="service")
    claim_id, unrecorded = claim(client, resident, service), claim(client, resident, org_less)
    assert act(client, provider, claim_id, "fulfil", note="修好了", minutes=45).status_code == 200
    clock.advance(timedelta(hours=1))
    assert act(client, provider, unrecorded, "fulfil", note="修好了", minutes=45).status_code == 200
    clock.advance(timedelta(days=7, minutes=1))
    run(app, "release_overdue_claims")
    assert row(app, Claim, claim_id).status == row(app, Claim, unrecorded).status == "confirmed"
    assert [(r.minutes, r.status, r.claim_id) for r in records_of(app, provider.id)] == [(45, "pending", claim_id)]
    assert records_of(app, resident.id) == []


def test_an_event_is_settled_a_day_after_its_end(app, client):
    org_id, coordinator = make_org(app)
    start = T0 + timedelta(hours=1)
    project = make_posting(
        app, coordinator, kind="project", org_id=org_id, capacity=2, starts_at=start, ends_at=start + timedelta(hours=3)
    )
    forgot, absent, waiting = (make_volunteer(app) for _ in range(3))
    forgot_claim, absent_claim, waiting_claim = (claim(client, v, project) for v in (forgot, absent, waiting))
    assert row(app, Claim, waiting_claim).status == "waitlisted"
    clock.advance(timedelta(hours=1, minutes=30))
    assert act(client, forgot, forgot_claim, "check-in", **SITE).status_code == 200

    clock.freeze(start + timedelta(hours=3) + timedelta(hours=23))
    run(app, "release_overdue_claims")
    assert row(app, Claim, forgot_claim).status == "active"  # not yet: EVENT_SETTLE_HOURS is 24

    clock.advance(timedelta(hours=1))
    run(app, "expire_postings")
    run(app, "release_overdue_claims")
    settled = row(app, Claim, forgot_claim)
    assert (settled.status, settled.check_out_at, settled.minutes) == ("confirmed", start + timedelta(hours=3), 150)
    assert [r.minutes for r in records_of(app, forgot.id)] == [150]
    assert row(app, Claim, absent_claim).status == "no_show"
    assert told(app, "claim_no_show") == [(absent.id, str(absent_claim))]
    assert row(app, Claim, waiting_claim).status == "cancelled"
    posting = row(app, Posting, project)
    assert (posting.status, posting.claimed_count, posting.waitlist_count) == ("closed", 2, 0)


def test_a_booking_never_marked_done_is_released_after_the_service_ends(app, client):
    provider = make_volunteer(app)
    resident = make_user(app)
    service = make_posting(app, provider, kind="service", ends_at=T0 + timedelta(hours=2))
    claim_id = claim(client, resident, service)
    clock.advance(timedelta(hours=27))
    run(app, "expire_postings")
    run(app, "release_overdue_claims")
    assert row(app, Claim, claim_id).status == "released"
    assert sorted(told(app, "claim_released")) == sorted([(provider.id, str(claim_id)), (resident.id, str(claim_id))])


# --- hours are capped by what happened ---------------------------------------------------------------------------


def test_check_out_credits_only_the_event_window_and_at_most_12_hours(app, client):
    org_id, coordinator = make_org(app)
    start = T0 + timedelta(minutes=20)
    long_day = make_posting(
        app, coordinator, kind="charity", org_id=org_id, starts_at=start, ends_at=start + timedelta(hours=20)
    )
    volunteer = make_volunteer(app)
    claim_id = claim(client, volunteer, long_day)
    assert act(client, volunteer, claim_id, "check-in", **SITE).status_code == 200  # 20 minutes early
    clock.advance(timedelta(hours=30))  # 10 hours after the end
    resp = act(client, volunteer, claim_id, "check-out", **SITE)
    assert resp.status_code == 200
    assert resp.get_json()["minutes"] == 720
    assert volunteer_row(app, volunteer.id).credit_minutes == 720


def test_a_charity_checked_in_a_month_ago_without_an_end_credits_at_most_12_hours(app, client):
    org_id, coordinator = make_org(app)
    # posted before a charity needed its times (the row as an older release left it)
    legacy = make_posting(app, coordinator, kind="charity", org_id=org_id, starts_at=None, ends_at=None)
    volunteer = make_volunteer(app)
    claim_id = claim(client, volunteer, legacy)
    assert act(client, volunteer, claim_id, "check-in", **SITE).status_code == 200
    clock.advance(timedelta(days=30))
    assert act(client, volunteer, claim_id, "check-out", **SITE).get_json()["minutes"] == 720


def test_project_and_charity_need_their_start_and_end(client, app):
    org_id, coordinator = make_org(app)
    for kind in ("project", "charity"):
        body = {"kind": kind, "title": "活动", "description": "详情", "district": "haishu", "org_id": org_id}
        if kind == "project":
            body["capacity"] = 10
        resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
        assert resp.status_code == 422, resp.get_json()
        assert "starts_at" in resp.get_json()["errors"]["json"]


def test_a_coordinator_never_confirms_his_own_wish_claim(app, client):
    org_id, coordinator = make_org(app)
    make_volunteer(app, coordinator)
    fellow = make_user(app)
    add_member(app, org_id, fellow, "coordinator")
    org_wish = make_posting(app, fellow, org_id=org_id)
    resident = make_user(app)
    district_wish = make_posting(app, resident, recording_org_id=org_id)  # org-less, in his district
    for wish in (org_wish, district_wish):
        claim_id = claim(client, coordinator, wish)
        assert act(client, coordinator, claim_id, "fulfil", note="做好了", minutes=60).status_code == 200
        resp = act(client, coordinator, claim_id, "confirm", rating=5)
        assert (resp.status_code, resp.get_json()["error"]) == (403, "own_claim")
        assert row(app, Claim, claim_id).status == "fulfilled"
    assert act(client, fellow, claim_id, "confirm", rating=5, minutes=30).status_code == 200
    # a fellow coordinator of the recording org stands behind it: recorded at once
    assert volunteer_row(app, coordinator.id).credit_minutes == 30


def test_honor_hours_are_capped_four_eyed_and_audited(app, client):
    org_id, coordinator = make_org(app)
    make_volunteer(app, coordinator)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)

    def award(account, **body):
        body = {"volunteer_id": volunteer.id, "reason": "防汛值守", **body}
        return client.post(f"/api/v1/orgs/{org_id}/records", json=body, headers=account.headers)

    resp = award(coordinator, volunteer_id=coordinator.id, minutes=60)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "own_record")
    for too_much in ({"minutes": 1441}, {"hours": 24.5}, {"minutes": 6000}):
        assert award(coordinator, **too_much).status_code == 422
    awarded = award(coordinator, minutes=1440)
    assert (awarded.status_code, awarded.get_json()["status"]) == (201, "pending")
    # the same day twice: 409, whoever awards it
    fellow = make_user(app)
    add_member(app, org_id, fellow, "coordinator")
    again = award(fellow, minutes=1440)
    assert (again.status_code, again.get_json()["error"]) == (409, "overlapping_record")
    # a second person: not the awarder, not the volunteer
    record_id = awarded.get_json()["id"]
    for account, slug in ((coordinator, "second_person_required"), (volunteer, "own_record")):
        resp = client.post(f"/api/v1/records/{record_id}/approve", headers=account.headers)
        assert (resp.status_code, resp.get_json()["error"]) == (403, slug)
    assert volunteer_row(app, volunteer.id).honor_minutes == 0
    assert client.post(f"/api/v1/records/{record_id}/approve", headers=fellow.headers).status_code == 200
    assert volunteer_row(app, volunteer.id).honor_minutes == 1440
    assert volunteer_row(app, coordinator.id).honor_minutes == 0
    with app.app_context():
        entries = db.session.execute(sa.select(AuditEntry.actor_id, AuditEntry.action).order_by(AuditEntry.id)).all()
    assert entries == [(coordinator.id, "record.honor"), (fellow.id, "record.approve")]


# --- review again after a resident's edit ------------------------------------------------------------------------


def test_a_residents_edit_of_an_approved_wish_goes_back_to_review(app, client):
    org_id, coordinator = make_org(app)
    resident = make_user(app)
    body = {"kind": "wish", "title": "想要一台收音机", "description": "听新闻", "district": "haishu"}
    wish = client.post("/api/v1/postings", json=body, headers=resident.headers).get_json()["id"]
    assert client.post(f"/api/v1/postings/{wish}/approve", headers=coordinator.headers).status_code == 200

    extend = client.patch(
        f"/api/v1/postings/{wish}", json={"expires_at": f"{YEAR}-12-01T12:00:00+08:00"}, headers=resident.headers
    )
    assert extend.get_json()["status"] == "open"
    assert extend.get_json()["expires_at"] == f"{YEAR}-12-01T04:00:00Z"
    # a coordinator's fix of the text stands
    fixed = client.patch(f"/api/v1/postings/{wish}", json={"title": "想要一台老人收音机"}, headers=coordinator.headers)
    assert fixed.get_json()["status"] == "open"
    # the resident's does not: it is no longer what the reviewer saw
    edited = client.patch(f"/api/v1/postings/{wish}", json={"description": "联系我 138…"}, headers=resident.headers)
    assert edited.status_code == 200
    assert edited.get_json()["status"] == "pending_review"
    assert client.get("/api/v1/postings").get_json()["items"] == []
    clock.advance(timedelta(minutes=5))
    assert client.post(f"/api/v1/postings/{wish}/approve", headers=coordinator.headers).status_code == 200
    assert [user for user, _ in told(app, "posting_approved")] == [resident.id, resident.id]


# --- volunteers' identity, checked in person ---------------------------------------------------------------------


def test_a_coordinator_verifies_a_members_identity_never_his_own(app, client):
    org_id, coordinator = make_org(app)
    make_volunteer(app, coordinator)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    outsider = make_volunteer(app)

    resp = client.post(f"/api/v1/orgs/{org_id}/members/{coordinator.id}/verify", headers=coordinator.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "own_verification")
    assert (
        client.post(f"/api/v1/orgs/{org_id}/members/{outsider.id}/verify", headers=coordinator.headers).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/orgs/{org_id}/members/{volunteer.id}/verify", headers=volunteer.headers).status_code
        == 403
    )
    resp = client.post(f"/api/v1/orgs/{org_id}/members/{volunteer.id}/verify", headers=coordinator.headers)
    assert resp.status_code == 200
    assert resp.get_json()["verified"] is True
    me = client.get("/api/v1/me", headers=volunteer.headers).get_json()
    assert me["volunteer"]["verified"] is True

    # a new name is not what the coordinator checked
    profile = {"real_name": "李四", "id_number": _id_of(app, volunteer.id), "district": "haishu"}
    assert client.put("/api/v1/me/volunteer", json=profile, headers=volunteer.headers).get_json()["verified"] is False


def _id_of(app, user_id):
    from tests.factories import id_number

    return id_number(user_id + 100)
