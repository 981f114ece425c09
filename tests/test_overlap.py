"""A volunteer's time never overlaps itself: the windows of their non-rejected records
never overlap, whatever wrote them — and two overlapping writes racing give one."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, ServiceRecord, Volunteer
from app.policy import longest_uncovered, windows_overlap
from tests.factories import add_member, make_claim, make_org, make_posting, make_record, make_user, make_volunteer
from tests.helpers import SITE, act, at_once, award, claim, make_event, outcomes, second_coordinator


@pytest.fixture
def org(app):
    clock.freeze(clock.utcnow().replace(microsecond=0))
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    return {"org_id": org_id, "coordinator": coordinator, "volunteer": volunteer, "resident": make_user(app)}


def windows(app, user_id) -> list[tuple]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(ServiceRecord.started_at, ServiceRecord.ended_at, ServiceRecord.status)
            .where(ServiceRecord.volunteer_id == user_id)
            .order_by(ServiceRecord.started_at)
        )
        return [tuple(r) for r in rows]


def assert_never_overlapping(app, user_id) -> None:
    held = [(s, e) for s, e, status in windows(app, user_id) if status != "rejected"]
    for i, (start, end) in enumerate(held):
        for other_start, other_end in held[i + 1 :]:
            assert not windows_overlap(start, end, other_start, other_end), held


def wish_for(app, org, **fields) -> int:
    return make_posting(app, org["resident"], recording_org_id=org["org_id"], **fields)


# --- the arithmetic -------------------------------------------------------------------------------------------


def test_windows_overlap_when_they_share_a_moment():
    t = clock.utcnow()
    hour = timedelta(hours=1)
    assert windows_overlap(t, t + hour, t + hour / 2, t + 2 * hour)
    assert not windows_overlap(t, t + hour, t + hour, t + 2 * hour)  # end to end
    assert not windows_overlap(t, t, t - hour, t + hour)  # an empty window holds no time


def test_the_longest_uncovered_stretch():
    t = clock.utcnow()
    m = lambda n: t + timedelta(minutes=n)  # noqa: E731
    assert longest_uncovered(m(0), m(120), []) == (m(0), m(120))
    assert longest_uncovered(m(0), m(120), [(m(-30), m(30))]) == (m(30), m(120))
    assert longest_uncovered(m(0), m(120), [(m(20), m(40)), (m(90), m(200))]) == (m(40), m(90))
    assert longest_uncovered(m(0), m(120), [(m(-10), m(130))]) == (m(0), m(0))


# --- fulfil, confirm, honor, check-out ---------------------------------------------------------------------------


def test_a_fulfil_whose_window_overlaps_a_record_is_refused(app, client, org):
    make_record(app, org["volunteer"], org["org_id"], minutes=60, ended_at=clock.utcnow() - timedelta(minutes=30))
    claim_id = claim(client, org["volunteer"], wish_for(app, org)).get_json()["id"]
    resp = act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=45)
    assert (resp.status_code, resp.get_json()["error"]) == (409, "overlapping_record")
    with app.app_context():
        assert db.session.get(Claim, claim_id).status == "active"
    # the half hour since the record ended is free
    assert act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=30).status_code == 200


def test_a_rejected_record_holds_no_time(app, client, org):
    make_record(app, org["volunteer"], org["org_id"], minutes=60, status="rejected")
    claim_id = claim(client, org["volunteer"], wish_for(app, org)).get_json()["id"]
    assert act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=60).status_code == 200


def test_a_confirm_whose_record_would_overlap_is_refused_and_changes_nothing(app, client, org):
    first, second = (claim(client, org["volunteer"], wish_for(app, org)).get_json()["id"] for _ in range(2))
    for claim_id in (first, second):
        assert act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=60).status_code == 200
    assert act(client, org["resident"], first, "confirm", rating=5).status_code == 200
    resp = act(client, org["resident"], second, "confirm", rating=3)
    assert (resp.status_code, resp.get_json()["error"]) == (409, "overlapping_record")
    with app.app_context():
        assert db.session.get(Claim, second).status == "fulfilled"
        assert db.session.scalar(sa.select(Volunteer.rating_total).where(Volunteer.user_id == org["volunteer"].id)) == 5
    # fewer minutes that fit before the first one: accepted
    assert act(client, org["resident"], second, "confirm", rating=3, minutes=0).status_code == 200
    assert_never_overlapping(app, org["volunteer"].id)


def test_auto_confirm_confirms_without_a_record_where_it_would_overlap(app, client, org):
    first, second = (claim(client, org["volunteer"], wish_for(app, org)).get_json()["id"] for _ in range(2))
    for claim_id in (first, second):
        act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=90)
    clock.advance(timedelta(days=app.config["AUTO_CONFIRM_DAYS"], minutes=1))
    app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"])
    with app.app_context():
        statuses = db.session.scalars(sa.select(Claim.status).where(Claim.id.in_([first, second]))).all()
        claims_with_records = db.session.scalars(sa.select(ServiceRecord.claim_id)).all()
    assert statuses == ["confirmed", "confirmed"]
    assert claims_with_records == [first]
    assert_never_overlapping(app, org["volunteer"].id)


def test_an_honor_award_overlapping_a_record_is_refused(app, client, org):
    make_record(app, org["volunteer"], org["org_id"], minutes=60)
    resp = award(client, org["coordinator"], org["org_id"], org["volunteer"], 30)
    assert (resp.status_code, resp.get_json()["error"]) == (409, "overlapping_record")
    earlier = clock.isoformat(clock.utcnow() - timedelta(hours=1))
    assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 30, ended_at=earlier).status_code == 201
    assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 30, started_at=earlier).status_code == 409
    future = clock.isoformat(clock.utcnow() + timedelta(hours=1))
    assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 30, ended_at=future).status_code == 422
    assert_never_overlapping(app, org["volunteer"].id)


@pytest.fixture
def event(app, org):
    start = clock.utcnow() + timedelta(minutes=10)
    project = make_event(app, org["coordinator"], org["org_id"], start, 3)
    claim_id = claim(client_of(app), org["volunteer"], project).get_json()["id"]
    return {"start": start, "claim_id": claim_id}


def client_of(app):
    return app.test_client()


def test_a_check_out_credits_only_the_time_not_already_covered(app, client, org, event):
    start = event["start"]
    # a record for the event's first hour already (a wish done "meanwhile")
    make_record(app, org["volunteer"], org["org_id"], minutes=60, ended_at=start + timedelta(hours=1))
    assert act(client, org["volunteer"], event["claim_id"], "check-in", **SITE).status_code == 200
    clock.freeze(start + timedelta(hours=2, minutes=30))
    resp = act(client, org["volunteer"], event["claim_id"], "check-out", **SITE)
    assert (resp.status_code, resp.get_json()["minutes"]) == (200, 90)
    with app.app_context():
        record = db.session.scalar(sa.select(ServiceRecord).where(ServiceRecord.claim_id == event["claim_id"]))
        assert (record.started_at, record.minutes) == (start + timedelta(hours=1), 90)
    assert_never_overlapping(app, org["volunteer"].id)


def test_a_check_out_whose_time_is_all_covered_writes_no_record(app, client, org, event):
    start = event["start"]
    make_record(app, org["volunteer"], org["org_id"], minutes=240, ended_at=start + timedelta(hours=3, minutes=30))
    assert act(client, org["volunteer"], event["claim_id"], "check-in", **SITE).status_code == 200
    clock.freeze(start + timedelta(hours=2))
    resp = act(client, org["volunteer"], event["claim_id"], "check-out", **SITE)
    assert (resp.status_code, resp.get_json()["status"], resp.get_json()["minutes"]) == (200, "confirmed", 0)
    with app.app_context():
        assert db.session.scalar(sa.select(ServiceRecord.id).where(ServiceRecord.claim_id == event["claim_id"])) is None


def test_no_one_is_credited_more_than_a_day_in_a_day(app, client, org):
    """Honor hours, wishes and an event on one day: whatever the order, the volunteer's
    non-rejected records add up to at most 24 hours of that day."""
    day_start = clock.utcnow() - timedelta(days=1)
    window = {"started_at": clock.isoformat(day_start), "ended_at": clock.isoformat(day_start + timedelta(days=1))}
    assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 1440, **window).status_code == 201
    other = second_coordinator(app, org["org_id"])
    for hours in range(0, 24, 6):
        ended = clock.isoformat(day_start + timedelta(hours=hours + 1))
        resp = award(client, other, org["org_id"], org["volunteer"], 60, ended_at=ended)
        assert resp.status_code == 409
    with app.app_context():
        total = db.session.scalar(
            sa.select(sa.func.sum(ServiceRecord.minutes)).where(ServiceRecord.volunteer_id == org["volunteer"].id)
        )
    assert total == 1440


# --- races, on PostgreSQL, with real threads ----------------------------------------------------------------------


def test_two_overlapping_awards_racing_give_one(app, org, postgres_only):
    coordinators = [org["coordinator"], *(second_coordinator(app, org["org_id"]) for _ in range(5))]
    body = {"volunteer_id": org["volunteer"].id, "minutes": 120, "reason": "同一天"}
    calls = [("POST", f"/api/v1/orgs/{org['org_id']}/records", c.headers, body) for c in coordinators]
    results = at_once(app, calls)
    assert outcomes(results) == {(201, "pending"): 1, (409, "overlapping_record"): 5}
    assert len(windows(app, org["volunteer"].id)) == 1


def test_overlapping_confirms_racing_give_one_record(app, org, postgres_only):
    """Eight wishes fulfilled in the same hour, confirmed at once by eight residents."""
    client = app.test_client()
    residents = [make_user(app) for _ in range(8)]
    claims = []
    for resident in residents:
        wish = make_posting(app, resident, recording_org_id=org["org_id"])
        claim_id = claim(client, org["volunteer"], wish).get_json()["id"]
        assert act(client, org["volunteer"], claim_id, "fulfil", note="done", minutes=60).status_code == 200
        claims.append(claim_id)
    calls = [
        ("POST", f"/api/v1/claims/{claim_id}/confirm", resident.headers, {"rating": 5})
        for claim_id, resident in zip(claims, residents, strict=True)
    ]
    results = at_once(app, calls)
    assert outcomes(results) == {(200, "confirmed"): 1, (409, "overlapping_record"): 7}
    assert len(windows(app, org["volunteer"].id)) == 1
    assert_never_overlapping(app, org["volunteer"].id)


def test_a_check_out_racing_an_award_never_double_counts(app, org, postgres_only):
    start = clock.utcnow() - timedelta(minutes=20)
    project = make_event(app, org["coordinator"], org["org_id"], start, 3)
    claim_id = make_claim(app, project, org["volunteer"], check_in_at=start)
    clock.freeze(start + timedelta(hours=2))
    other = second_coordinator(app, org["org_id"])
    award_body = {"volunteer_id": org["volunteer"].id, "minutes": 60, "reason": "同一时段"}
    calls = [
        ("POST", f"/api/v1/claims/{claim_id}/check-out", org["volunteer"].headers, SITE),
        ("POST", f"/api/v1/orgs/{org['org_id']}/records", other.headers, award_body),
    ]
    results = at_once(app, calls)
    assert results[0][0] == 200
    assert_never_overlapping(app, org["volunteer"].id)
    with app.app_context():
        total = db.session.scalar(
            sa.select(sa.func.sum(ServiceRecord.minutes)).where(ServiceRecord.volunteer_id == org["volunteer"].id)
        )
    assert total <= 120  # the two hours since the start, whoever won
