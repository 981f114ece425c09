"""A record's life: pending → recorded | rejected, the org behind every record, and the
second person who approves what no coordinator stood behind (谁组织谁记录)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import EnergyEntry, Notification, ServiceRecord, Volunteer
from app.policy import MAX_BULK_APPROVAL
from tests.factories import add_member, make_org, make_posting, make_record, make_user, make_volunteer
from tests.helpers import SITE, act, award, claim, decide, make_event, second_coordinator


@pytest.fixture
def org(app):
    """An org with two coordinators, a member volunteer, a resident, another org's
    coordinator and an admin."""
    clock.freeze(clock.utcnow().replace(microsecond=0))
    org_id, coordinator = make_org(app, name="鼓楼街道志愿服务站")
    deputy = second_coordinator(app, org_id)
    volunteer = make_volunteer(app, name="小陈")
    add_member(app, org_id, volunteer)
    _, stranger = make_org(app)
    return {
        "org_id": org_id,
        "coordinator": coordinator,
        "deputy": deputy,
        "volunteer": volunteer,
        "resident": make_user(app, name="王阿姨"),
        "stranger": stranger,
        "admin": make_user(app, admin=True),
    }


def counters(app, user_id) -> tuple[int, int, int]:
    with app.app_context():
        row = db.session.execute(
            sa.select(Volunteer.credit_minutes, Volunteer.honor_minutes, Volunteer.energy_balance).where(
                Volunteer.user_id == user_id
            )
        ).one()
    return tuple(row)


def ledger(app, user_id) -> list[tuple[str, int]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(EnergyEntry.reason, EnergyEntry.delta)
            .where(EnergyEntry.user_id == user_id)
            .order_by(EnergyEntry.id)
        )
        return [tuple(r) for r in rows]


def inbox(app, kind: str) -> list[tuple[int, dict, str]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Notification.user_id, Notification.data, Notification.push_status)
            .where(Notification.kind == kind)
            .order_by(Notification.id)
        )
        return [tuple(r) for r in rows]


def fulfilled_wish(app, client, org, *, minutes=60, poster=None, **fields) -> int:
    """A wish the org records (its coordinator approved it), done by the volunteer: the claim id."""
    wish = make_posting(app, poster or org["resident"], recording_org_id=org["org_id"], **fields)
    claim_id = claim(client, org["volunteer"], wish).get_json()["id"]
    resp = act(client, org["volunteer"], claim_id, "fulfil", note="买好了", minutes=minutes)
    assert resp.status_code == 200, resp.get_json()
    return claim_id


def record_of_claim(app, claim_id) -> ServiceRecord:
    with app.app_context():
        record = db.session.scalar(sa.select(ServiceRecord).where(ServiceRecord.claim_id == claim_id))
        db.session.expunge(record)
        return record


# --- recorded at once, or pending --------------------------------------------------------------------------------


def test_a_residents_confirmation_is_pending_and_counts_once_approved(app, client, org):
    claim_id = fulfilled_wish(app, client, org, minutes=90)
    assert act(client, org["resident"], claim_id, "confirm", rating=5).status_code == 200
    record = record_of_claim(app, claim_id)
    assert (record.status, record.org_id, record.recorded_by, record.approved_by) == (
        "pending",
        org["org_id"],
        org["resident"].id,
        None,
    )
    assert counters(app, org["volunteer"].id) == (0, 0, 0)
    assert ledger(app, org["volunteer"].id) == []
    # both coordinators are told; nobody else
    assert sorted(user for user, _, _ in inbox(app, "record_pending")) == sorted(
        [org["coordinator"].id, org["deputy"].id]
    )

    resp = decide(client, org["deputy"], record.id)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["status"], body["approved_by"], body["decided_at"]) == (
        "recorded",
        org["deputy"].id,
        clock.isoformat(clock.utcnow()),
    )
    # 90 minutes: 15 points, and the wish's 5, minted now
    assert counters(app, org["volunteer"].id) == (90, 0, 20)
    assert ledger(app, org["volunteer"].id) == [("service_hours", 15), ("wish_confirmed", 5)]
    [(user, data, _)] = inbox(app, "record_approved")
    assert (user, data["record_id"], data["org_id"]) == (org["volunteer"].id, str(record.id), str(org["org_id"]))

    again = decide(client, org["coordinator"], record.id)
    assert (again.status_code, again.get_json()["error"]) == (409, "record_not_pending")
    assert counters(app, org["volunteer"].id) == (90, 0, 20)


@pytest.mark.parametrize("confirmer", ["coordinator", "admin"])
def test_a_coordinators_confirmation_is_recorded_at_once(app, client, org, confirmer):
    claim_id = fulfilled_wish(app, client, org, minutes=60)
    assert act(client, org[confirmer], claim_id, "confirm", rating=4).status_code == 200
    record = record_of_claim(app, claim_id)
    assert (record.status, record.approved_by) == ("recorded", org[confirmer].id)
    assert counters(app, org["volunteer"].id) == (60, 0, 15)
    assert inbox(app, "record_pending") == []


def test_another_orgs_coordinator_confirming_stands_behind_nothing(app, client, org):
    """A coordinator of another org in the district may confirm an org-less wish, but
    the record is the recording org's: pending."""
    claim_id = fulfilled_wish(app, client, org)
    assert act(client, org["stranger"], claim_id, "confirm", rating=4).status_code == 200
    assert record_of_claim(app, claim_id).status == "pending"


def test_a_check_out_on_site_is_recorded_at_once(app, client, org):
    start = clock.utcnow() + timedelta(minutes=10)
    project = make_event(app, org["coordinator"], org["org_id"], start, 2)
    claim_id = claim(client, org["volunteer"], project).get_json()["id"]
    assert act(client, org["volunteer"], claim_id, "check-in", **SITE).status_code == 200
    clock.advance(timedelta(hours=1, minutes=10))
    assert act(client, org["volunteer"], claim_id, "check-out", **SITE).status_code == 200
    record = record_of_claim(app, claim_id)
    assert (record.status, record.org_id, record.minutes, record.approved_by) == (
        "recorded",
        org["org_id"],
        60,
        org["coordinator"].id,
    )
    assert counters(app, org["volunteer"].id) == (60, 0, 10)


def test_a_check_out_without_a_geofence_is_pending(app, client, org):
    start = clock.utcnow() + timedelta(minutes=10)
    pointless = make_posting(
        app,
        org["coordinator"],
        kind="charity",
        org_id=org["org_id"],
        lat=None,
        lng=None,
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    claim_id = claim(client, org["volunteer"], pointless).get_json()["id"]
    assert act(client, org["volunteer"], claim_id, "check-in", **SITE).status_code == 200
    clock.advance(timedelta(hours=1, minutes=10))
    assert act(client, org["volunteer"], claim_id, "check-out", **SITE).status_code == 200
    record = record_of_claim(app, claim_id)
    assert (record.status, record.minutes, record.recorded_by) == ("pending", 60, None)
    assert decide(client, org["coordinator"], record.id).status_code == 200


def test_the_settlements_check_out_is_pending(app, client, org):
    start = clock.utcnow() + timedelta(minutes=10)
    project = make_event(app, org["coordinator"], org["org_id"], start, 2)
    claim_id = claim(client, org["volunteer"], project).get_json()["id"]
    assert act(client, org["volunteer"], claim_id, "check-in", **SITE).status_code == 200
    clock.advance(timedelta(hours=27))
    app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"])
    record = record_of_claim(app, claim_id)
    assert (record.status, record.minutes, record.recorded_by) == ("pending", 120, None)
    assert counters(app, org["volunteer"].id) == (0, 0, 0)
    assert decide(client, org["coordinator"], record.id).status_code == 200
    assert counters(app, org["volunteer"].id) == (120, 0, 20)


def test_a_service_without_an_org_records_nothing_but_earns_the_rating(app, client, org):
    provider = org["volunteer"]
    service = make_posting(app, provider, kind="service", capacity=None)
    booking = claim(client, org["resident"], service).get_json()["id"]
    assert act(client, provider, booking, "fulfil", note="理完了", minutes=30).status_code == 200
    assert act(client, org["resident"], booking, "confirm", rating=5).status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ServiceRecord)) == 0
    assert counters(app, provider.id) == (0, 0, 0)
    me = client.get("/api/v1/me", headers=provider.headers).get_json()["volunteer"]
    assert me["rating"] == {"average": 5.0, "count": 1}


def test_an_org_less_wish_is_recorded_by_the_org_whose_coordinator_approved_it(app, client, org):
    body = {"kind": "wish", "title": "帮忙取快递", "description": "腿脚不便", "district": "haishu"}
    wish = client.post("/api/v1/postings", json=body, headers=org["resident"].headers).get_json()["id"]
    assert client.post(f"/api/v1/postings/{wish}/approve", headers=org["deputy"].headers).status_code == 200
    claim_id = claim(client, org["volunteer"], wish).get_json()["id"]
    act(client, org["volunteer"], claim_id, "fulfil", note="取到了", minutes=20)
    assert act(client, org["resident"], claim_id, "confirm", rating=5).status_code == 200
    assert (record_of_claim(app, claim_id).org_id, record_of_claim(app, claim_id).status) == (
        org["org_id"],
        "pending",
    )


# --- who approves, who rejects -------------------------------------------------------------------------------------


def test_who_may_approve_a_pending_record(app, client, org):
    """Its org's coordinators other than whoever made it, and admins; never its volunteer."""
    resp = award(client, org["coordinator"], org["org_id"], org["volunteer"], 60)
    record_id = resp.get_json()["id"]
    outcomes = {
        role: (lambda r: (r.status_code, (r.get_json() or {}).get("error")))(decide(client, org[role], record_id))
        for role in ("volunteer", "coordinator", "stranger", "resident")
    }
    assert outcomes == {
        "volunteer": (403, "own_record"),
        "coordinator": (403, "second_person_required"),
        "stranger": (404, "not_found"),
        "resident": (404, "not_found"),
    }
    assert client.post(f"/api/v1/records/{record_id}/approve").status_code == 401
    assert decide(client, org["admin"], record_id).status_code == 200
    assert counters(app, org["volunteer"].id) == (0, 60, 0)  # honor hours mint no energy


def test_a_rejected_record_never_counts_and_frees_its_time(app, client, org):
    resp = award(client, org["coordinator"], org["org_id"], org["volunteer"], 120, activity="防汛值守")
    record_id = resp.get_json()["id"]
    assert decide(client, org["volunteer"], record_id, "reject", reason="不对").get_json()["error"] == "own_record"
    blank = decide(client, org["deputy"], record_id, "reject", reason="  ")
    assert blank.status_code == 422
    rejected = decide(client, org["deputy"], record_id, "reject", reason="当天未到岗")
    assert rejected.status_code == 200, rejected.get_json()
    body = rejected.get_json()
    assert (body["status"], body["reject_reason"], body["approved_by"]) == ("rejected", "当天未到岗", org["deputy"].id)
    [(user, data, _)] = inbox(app, "record_rejected")
    assert (user, data["record_id"]) == (org["volunteer"].id, str(record_id))
    with app.app_context():
        body_text = db.session.scalar(sa.select(Notification.body).where(Notification.kind == "record_rejected"))
    assert "当天未到岗" in body_text and "防汛值守" in body_text
    assert decide(client, org["admin"], record_id).get_json()["error"] == "record_not_pending"
    assert counters(app, org["volunteer"].id) == (0, 0, 0)
    # its window is free again
    assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 120).status_code == 201


def test_the_volunteers_own_list_shows_every_status(app, client, org):
    ids = [
        make_record(app, org["volunteer"], org["org_id"], status=status, ended_at=clock.utcnow() - timedelta(days=i))
        for i, status in enumerate(("recorded", "pending", "rejected"), start=1)
    ]
    items = client.get("/api/v1/me/records", headers=org["volunteer"].headers).get_json()["items"]
    assert [(item["id"], item["status"]) for item in items] == list(
        zip(reversed(ids), ("rejected", "pending", "recorded"), strict=True)
    )
    pending = client.get("/api/v1/me/records?status=pending", headers=org["volunteer"].headers).get_json()
    assert [item["id"] for item in pending["items"]] == [ids[1]]


# --- the queue ---------------------------------------------------------------------------------------------------


def test_the_review_queue_is_the_orgs_pending_records_oldest_first(app, client, org):
    other_org, other_coordinator = make_org(app)
    first = make_record(app, org["volunteer"], org["org_id"], status="pending", ended_at=clock.utcnow())
    clock.advance(timedelta(minutes=5))
    second = make_record(app, org["volunteer"], org["org_id"], status="pending", ended_at=clock.utcnow())
    make_record(app, org["volunteer"], org["org_id"], status="recorded", ended_at=clock.utcnow() - timedelta(days=2))
    make_record(app, org["volunteer"], other_org, status="pending", ended_at=clock.utcnow() - timedelta(days=3))
    url = f"/api/v1/orgs/{org['org_id']}/records?status=pending"
    page = client.get(url + "&limit=1", headers=org["coordinator"].headers).get_json()
    assert [item["id"] for item in page["items"]] == [first]
    rest = client.get(url + f"&limit=1&cursor={page['next_cursor']}", headers=org["coordinator"].headers).get_json()
    assert [item["id"] for item in rest["items"]] == [second] and rest["next_cursor"] is None
    assert len(client.get(url.split("?")[0], headers=org["admin"].headers).get_json()["items"]) == 3
    for account in (org["volunteer"], other_coordinator):
        resp = client.get(url, headers=account.headers)
        assert (resp.status_code, resp.get_json()["error"]) == (403, "coordinator_required")
    assert client.get(url.replace("pending", "lost"), headers=org["coordinator"].headers).status_code == 422


def test_bulk_approval_approves_what_it_may_and_skips_the_rest(app, client, org):
    other_org, _ = make_org(app)
    now = clock.utcnow()
    mine = [
        make_record(app, org["volunteer"], org["org_id"], status="pending", ended_at=now - timedelta(hours=2 * i))
        for i in range(3)
    ]
    awarded_by_me = award(
        client,
        org["coordinator"],
        org["org_id"],
        org["volunteer"],
        30,
        ended_at=clock.isoformat(now - timedelta(days=5)),
    ).get_json()["id"]
    own = make_record(app, org["coordinator"], org["org_id"], status="pending", ended_at=now)
    recorded = make_record(app, org["volunteer"], org["org_id"], ended_at=now - timedelta(days=2))
    elsewhere = make_record(app, org["volunteer"], other_org, status="pending", ended_at=now - timedelta(days=3))
    ids = [*mine, awarded_by_me, own, recorded, elsewhere, 987654, mine[0]]
    resp = client.post(
        f"/api/v1/orgs/{org['org_id']}/records/approve", json={"ids": ids}, headers=org["coordinator"].headers
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"approved": mine, "skipped": [awarded_by_me, own, recorded, elsewhere, 987654]}
    assert counters(app, org["volunteer"].id) == (360, 0, 0)  # no claim behind them: no energy
    assert len(inbox(app, "record_approved")) == 3


@pytest.mark.parametrize(
    "body",
    [{"ids": []}, {"ids": list(range(1, MAX_BULK_APPROVAL + 2))}, {"ids": [0]}, {"ids": "1"}, {}],
)
def test_bulk_approval_takes_one_to_a_hundred_ids(app, client, org, body):
    resp = client.post(f"/api/v1/orgs/{org['org_id']}/records/approve", json=body, headers=org["coordinator"].headers)
    assert (resp.status_code, resp.get_json()["error"]) == (422, "validation_error")
    assert "ids" in resp.get_json()["errors"]["json"]


def test_bulk_approval_is_for_the_orgs_coordinators(app, client, org):
    record_id = make_record(app, org["volunteer"], org["org_id"], status="pending")
    for account in (org["volunteer"], org["stranger"]):
        resp = client.post(
            f"/api/v1/orgs/{org['org_id']}/records/approve", json={"ids": [record_id]}, headers=account.headers
        )
        assert (resp.status_code, resp.get_json()["error"]) == (403, "coordinator_required")
    resp = client.post("/api/v1/orgs/999999/records/approve", json={"ids": [record_id]}, headers=org["admin"].headers)
    assert resp.status_code == 404


# --- the coordinators are told, not woken for each record ---------------------------------------------------------


def test_pending_records_push_each_coordinator_at_most_once_per_ten_minutes(app, client, org):
    for hours_ago in (30, 20, 10):
        ended = clock.isoformat(clock.utcnow() - timedelta(hours=hours_ago))
        assert award(client, org["coordinator"], org["org_id"], org["volunteer"], 60, ended_at=ended).status_code == 201
    told = inbox(app, "record_pending")
    # the awarder is not told of their own awards; the deputy gets every one in the inbox, one push
    assert {user for user, _, _ in told} == {org["deputy"].id}
    assert [status for _, _, status in told] == ["pending", "skipped", "skipped"]
    clock.advance(timedelta(minutes=11))
    ended = clock.isoformat(clock.utcnow() - timedelta(hours=5))
    award(client, org["coordinator"], org["org_id"], org["volunteer"], 60, ended_at=ended)
    assert inbox(app, "record_pending")[-1][2] == "pending"
    data = inbox(app, "record_pending")[0][1]
    assert set(data) >= {"kind", "org_id", "record_id"}


# --- the attacks of the issue -------------------------------------------------------------------------------------


def test_four_bookings_by_a_second_account_credit_at_most_the_real_time(app, client, org):
    """A volunteer's service booked by a second account of theirs, four times at once,
    each fulfilled with 480 minutes and confirmed: one record of 8 hours, pending
    until a coordinator approves; one rating."""
    provider, second_account = org["volunteer"], make_user(app)
    services = [
        make_posting(app, provider, kind="service", org_id=org["org_id"], capacity=None, title=f"上门服务{i}")
        for i in range(4)
    ]
    bookings = [claim(client, second_account, s).get_json()["id"] for s in services]
    for booking in bookings:
        assert act(client, provider, booking, "fulfil", note="done", minutes=480).status_code == 200
    results = [act(client, second_account, booking, "confirm", rating=5) for booking in bookings]
    assert [r.status_code for r in results] == [200, 409, 409, 409]
    assert {r.get_json()["error"] for r in results[1:]} == {"overlapping_record"}
    assert counters(app, provider.id) == (0, 0, 0)
    me = client.get("/api/v1/me", headers=provider.headers).get_json()["volunteer"]
    assert me["rating"] == {"average": 5.0, "count": 1}
    [record] = client.get("/api/v1/me/records", headers=provider.headers).get_json()["items"]
    assert (record["minutes"], record["status"]) == (480, "pending")
    assert decide(client, org["coordinator"], record["id"]).status_code == 200
    assert counters(app, provider.id) == (480, 0, 80)


def test_honor_hours_for_one_day_are_awarded_once(app, client, org):
    start = clock.utcnow() - timedelta(days=2)
    window = {"started_at": clock.isoformat(start), "ended_at": clock.isoformat(start + timedelta(hours=24))}
    results = [award(client, org["coordinator"], org["org_id"], org["volunteer"], 1440, **window) for _ in range(5)]
    assert [r.status_code for r in results] == [201, 409, 409, 409, 409]
    assert {r.get_json()["error"] for r in results[1:]} == {"overlapping_record"}
    # an award's minutes fit its window
    short = {"started_at": clock.isoformat(start - timedelta(hours=2)), "ended_at": clock.isoformat(start)}
    resp = award(client, org["coordinator"], org["org_id"], org["volunteer"], 180, **short)
    assert resp.status_code == 422 and "minutes" in resp.get_json()["errors"]["json"]
