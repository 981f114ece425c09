"""Service records: check-in/out and its rounding, services, honor hours, the summary, star levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, ServiceRecord, Volunteer
from app.policy import minutes_between, points_for_minutes, star_level
from tests.factories import add_member, make_org, make_posting, make_user, make_volunteer
from tests.helpers import approved, award, decide, second_coordinator
from tests.moments import YEAR

SITE = {"lat": 29.87, "lng": 121.55}
# about 330 m north of the site, and about 670 m
NEAR = {"lat": 29.873, "lng": 121.55}
FAR = {"lat": 29.876, "lng": 121.55}
START = datetime(YEAR, 11, 28, 1, 0, tzinfo=UTC)  # 09:00 in Ningbo


def claim(client, account, posting_id, **body):
    return client.post(f"/api/v1/postings/{posting_id}/claims", json=body, headers=account.headers)


def act(client, account, claim_id, action, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def volunteer_row(app, user_id) -> Volunteer:
    with app.app_context():
        row = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == user_id))
        db.session.expunge(row)
        return row


def claim_row(app, claim_id) -> Claim:
    with app.app_context():
        row = db.session.get(Claim, claim_id)
        db.session.expunge(row)
        return row


@pytest.fixture
def event(app):
    """A three-hour project tomorrow morning, one volunteer signed up."""
    clock.freeze(START - timedelta(days=1))
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    project = make_posting(
        app,
        coordinator,
        kind="project",
        org_id=org_id,
        title="社区垃圾分类宣传",
        address="海曙区鼓楼街道",
        starts_at=START,
        ends_at=START + timedelta(hours=3),
        **SITE,
    )
    return {
        "org_id": org_id,
        "coordinator": coordinator,
        "volunteer": volunteer,
        "project": project,
        "claim_id": None,
    }


def signed_up(client, event) -> int:
    resp = claim(client, event["volunteer"], event["project"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


# --- rounding and points ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "points"),
    [(0, 0), (29, 0), (30, 5), (59, 5), (60, 10), (89, 10), (90, 15), (179, 25)],
)
def test_energy_counts_whole_half_hours(minutes, points):
    assert points_for_minutes(minutes) == points


def test_minutes_between_counts_whole_minutes():
    assert minutes_between(START, START + timedelta(minutes=59, seconds=59)) == 59
    assert minutes_between(START, START - timedelta(minutes=5)) == 0


@pytest.mark.parametrize(
    ("hours", "level"),
    [(0, 0), (99.99, 0), (100, 1), (299, 1), (300, 2), (600, 3), (999, 3), (1000, 4), (1499, 4), (1500, 5), (9000, 5)],
)
def test_star_levels_at_the_thresholds(hours, level):
    assert star_level(round(hours * 60)) == level


def test_star_level_counts_honor_hours_too(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == volunteer.id).values(credit_minutes=90 * 60))
        db.session.commit()
    assert client.get("/api/v1/me", headers=volunteer.headers).get_json()["volunteer"]["star_level"] == 0
    resp = award(client, coordinator, org_id, volunteer, 10 * 60, reason="抗疫志愿服务表彰")
    assert (resp.status_code, resp.get_json()["status"]) == (201, "pending")
    # pending hours do not count
    assert client.get("/api/v1/me", headers=volunteer.headers).get_json()["volunteer"]["honor_hours"] == 0
    approved(client, second_coordinator(app, org_id), resp)
    me = client.get("/api/v1/me", headers=volunteer.headers).get_json()["volunteer"]
    assert (me["credit_hours"], me["honor_hours"], me["star_level"]) == (90.0, 10.0, 1)


# --- check-in and check-out ------------------------------------------------------------------


def test_check_in_and_out_credits_the_time_within_the_event(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START - timedelta(minutes=10))
    resp = act(client, event["volunteer"], claim_id, "check-in", **NEAR)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["check_in_at"] == f"{YEAR}-11-28T00:50:00Z"
    assert resp.get_json()["status"] == "active"

    clock.freeze(START + timedelta(hours=2, minutes=19))  # 2 h 29 min on site, 2 h 19 min of the event
    resp = act(client, event["volunteer"], claim_id, "check-out", **SITE)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "confirmed"
    assert body["check_out_at"] == f"{YEAR}-11-28T03:19:00Z"
    assert body["minutes"] == 139

    records = client.get("/api/v1/me/records", headers=event["volunteer"].headers).get_json()["items"]
    assert len(records) == 1
    record = records[0]
    assert record["kind"] == "credit"
    assert record["minutes"] == 139
    assert record["hours"] == 2.3
    assert (record["started_at"], record["ended_at"]) == (f"{YEAR}-11-28T01:00:00Z", f"{YEAR}-11-28T03:19:00Z")
    assert record["activity"] == "社区垃圾分类宣传"
    assert record["place"] == "海曙区鼓楼街道"
    assert record["org_id"] == event["org_id"]
    assert record["posting_id"] == event["project"]
    assert record["recorded_by"] == event["coordinator"].id
    assert record["volunteer_id"] == event["volunteer"].id
    for field in ("content", "evaluation", "created_at", "id"):
        assert field in record

    volunteer = volunteer_row(app, event["volunteer"].id)
    assert (volunteer.credit_minutes, volunteer.honor_minutes, volunteer.energy_balance) == (139, 0, 20)
    me = client.get("/api/v1/me", headers=event["volunteer"].headers).get_json()["volunteer"]
    assert (me["credit_hours"], me["energy_balance"]) == (2.3, 20)


def test_credit_stops_at_the_end(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.freeze(START + timedelta(hours=7))  # forgot to check out
    resp = act(client, event["volunteer"], claim_id, "check-out", **SITE)
    assert resp.status_code == 200
    assert resp.get_json()["minutes"] == 180


def test_check_in_window(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START - timedelta(minutes=31))
    resp = act(client, event["volunteer"], claim_id, "check-in", **SITE)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "check_in_not_open"
    clock.freeze(START - timedelta(minutes=30))
    assert act(client, event["volunteer"], claim_id, "check-in", **SITE).status_code == 200


def test_no_check_in_after_the_end(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START + timedelta(hours=3))
    resp = act(client, event["volunteer"], claim_id, "check-in", **SITE)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "check_in_not_open"


def test_check_in_must_be_within_500_m(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    resp = act(client, event["volunteer"], claim_id, "check-in", **FAR)
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "too_far_from_site"
    assert act(client, event["volunteer"], claim_id, "check-in", **NEAR).status_code == 200
    resp = act(client, event["volunteer"], claim_id, "check-out", **FAR)
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "too_far_from_site"


def test_check_in_body_is_validated(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    resp = act(client, event["volunteer"], claim_id, "check-in", lat=91, lng=0)
    assert resp.status_code == 422
    assert act(client, event["volunteer"], claim_id, "check-in", lat=29.87).status_code == 422


def test_second_check_in_is_refused(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    assert act(client, event["volunteer"], claim_id, "check-in", **SITE).status_code == 200
    clock.advance(timedelta(minutes=5))
    resp = act(client, event["volunteer"], claim_id, "check-in", **SITE)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "already_checked_in"
    with app.app_context():
        assert clock.isoformat(db.session.get(Claim, claim_id).check_in_at) == clock.isoformat(START)


def test_check_out_twice_is_refused_and_pays_once(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.advance(timedelta(hours=1))
    assert act(client, event["volunteer"], claim_id, "check-out", **SITE).status_code == 200
    resp = act(client, event["volunteer"], claim_id, "check-out", **SITE)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "claim_not_active"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(ServiceRecord.id))) == 1
    assert volunteer_row(app, event["volunteer"].id).energy_balance == 10


def test_check_out_before_check_in(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    resp = act(client, event["volunteer"], claim_id, "check-out", **SITE)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "not_checked_in"


def test_checked_in_claim_cannot_be_withdrawn(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    resp = act(client, event["volunteer"], claim_id, "withdraw")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "already_checked_in"


def test_no_withdrawing_after_the_end(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START + timedelta(hours=4))
    resp = act(client, event["volunteer"], claim_id, "withdraw")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "event_ended"


def test_no_show_only_after_the_end(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START + timedelta(hours=2))
    resp = act(client, event["coordinator"], claim_id, "no-show")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "event_not_ended"
    clock.freeze(START + timedelta(hours=3))
    resp = act(client, event["coordinator"], claim_id, "no-show")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "no_show"
    assert client.get("/api/v1/me/records", headers=event["volunteer"].headers).get_json()["items"] == []


def test_no_show_refused_for_a_volunteer_who_came(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.freeze(START + timedelta(hours=4))
    resp = act(client, event["coordinator"], claim_id, "no-show")
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "already_checked_in"


def test_no_show_by_another_orgs_coordinator_is_hidden(app, client, event):
    claim_id = signed_up(client, event)
    _, stranger = make_org(app, district="beilun")
    clock.freeze(START + timedelta(hours=4))
    assert act(client, stranger, claim_id, "no-show").status_code == 404


# --- services ------------------------------------------------------------------------------


def test_service_hours_wait_for_the_residents_confirmation(app, client):
    org_id, coordinator = make_org(app)
    provider = make_volunteer(app, name="理发师傅")
    add_member(app, org_id, provider)
    resident = make_user(app)
    service = make_posting(
        app, provider, kind="service", org_id=org_id, capacity=3, title="上门理发", address="鼓楼社区活动室"
    )
    claim_id = claim(client, resident, service).get_json()["id"]

    resp = act(client, resident, claim_id, "fulfil", note="x", minutes=50)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "provider_required"

    clock.freeze(clock.utcnow().replace(microsecond=0))
    resp = act(client, provider, claim_id, "fulfil", note="理发完成", minutes=50)
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["status"], resp.get_json()["minutes"]) == ("fulfilled", 50)
    # marked done is not credited: nothing until the resident confirms
    assert (volunteer_row(app, provider.id).credit_minutes, volunteer_row(app, provider.id).energy_balance) == (0, 0)
    assert client.get("/api/v1/me/records", headers=provider.headers).get_json()["items"] == []
    # the provider never confirms their own service
    resp = act(client, provider, claim_id, "confirm", rating=5)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "own_claim")

    resp = act(client, resident, claim_id, "confirm", rating=4, feedback="手艺好")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "confirmed"
    record = client.get("/api/v1/me/records", headers=provider.headers).get_json()["items"][0]
    assert (record["volunteer_id"], record["minutes"], record["place"]) == (provider.id, 50, "鼓楼社区活动室")
    assert (record["content"], record["evaluation"], record["rating"]) == ("理发完成", "手艺好", 4)
    assert record["ended_at"] == clock.isoformat(clock.utcnow())
    assert record["started_at"] == clock.isoformat(clock.utcnow() - timedelta(minutes=50))
    # a resident's confirmation: the org's record waits for one of its coordinators
    assert (record["status"], record["org_id"], record["recorded_by"]) == ("pending", org_id, resident.id)
    assert client.get("/api/v1/me/records", headers=resident.headers).get_json()["items"] == []
    provider_row = volunteer_row(app, provider.id)
    assert (provider_row.credit_minutes, provider_row.energy_balance) == (0, 0)
    assert decide(client, coordinator, record["id"]).get_json()["status"] == "recorded"
    provider_row = volunteer_row(app, provider.id)
    assert (provider_row.credit_minutes, provider_row.energy_balance) == (50, 5)


def test_service_hours_are_the_reported_minutes_never_its_time_slot(app, client):
    org_id, coordinator = make_org(app)
    provider = make_volunteer(app)
    resident = make_user(app)
    start = clock.utcnow() + timedelta(days=1)
    service = make_posting(
        app, provider, kind="service", org_id=org_id, starts_at=start, ends_at=start + timedelta(days=400), capacity=1
    )
    claim_id = claim(client, resident, service).get_json()["id"]
    assert act(client, provider, claim_id, "fulfil", note="done").status_code == 422  # minutes required
    assert act(client, provider, claim_id, "fulfil", note="done", minutes=481).status_code == 422
    resp = act(client, provider, claim_id, "fulfil", note="done", minutes=90)
    assert resp.get_json()["minutes"] == 90
    resp = act(client, resident, claim_id, "confirm", rating=5, minutes=120)
    assert (resp.status_code, resp.get_json()["error"]) == (422, "minutes_above_reported")
    assert claim_row(app, claim_id).status == "fulfilled"
    assert act(client, resident, claim_id, "confirm", rating=5).status_code == 200
    record = client.get("/api/v1/me/records", headers=provider.headers).get_json()["items"][0]
    assert decide(client, coordinator, record["id"]).status_code == 200
    assert volunteer_row(app, provider.id).credit_minutes == 90


# --- honor hours --------------------------------------------------------------------------


def test_honor_hours_never_alter_credit(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    resp = client.post(
        f"/api/v1/orgs/{org_id}/records",
        json={"volunteer_id": volunteer.id, "minutes": 240, "reason": "防汛抗台先进个人", "activity": "防汛抗台"},
        headers=coordinator.headers,
    )
    assert resp.status_code == 201, resp.get_json()
    record = resp.get_json()
    assert (record["kind"], record["minutes"], record["activity"]) == ("honor", 240, "防汛抗台")
    assert record["content"] == "防汛抗台先进个人"
    assert (record["recorded_by"], record["org_id"], record["posting_id"]) == (coordinator.id, org_id, None)
    approved(client, second_coordinator(app, org_id), resp)
    row = volunteer_row(app, volunteer.id)
    assert (row.credit_minutes, row.honor_minutes, row.energy_balance) == (0, 240, 0)


def test_honor_hours_as_hours_and_user_id(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    resp = client.post(
        f"/api/v1/orgs/{org_id}/records",
        json={"user_id": volunteer.id, "hours": 1.5, "reason": "优秀志愿者"},
        headers=coordinator.headers,
    )
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["minutes"] == 90


@pytest.mark.parametrize(
    "body",
    [
        {"minutes": 60, "reason": "x"},
        {"volunteer_id": 1, "reason": "x"},
        {"volunteer_id": 1, "minutes": 60},
        {"volunteer_id": 1, "minutes": 0, "reason": "x"},
        {"volunteer_id": 1, "minutes": 60, "hours": 1, "reason": "x"},
        {"volunteer_id": 1, "minutes": 60, "reason": ""},
    ],
)
def test_honor_hours_body_is_validated(app, client, body):
    org_id, coordinator = make_org(app)
    resp = client.post(f"/api/v1/orgs/{org_id}/records", json=body, headers=coordinator.headers)
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "validation_error"
    assert resp.get_json()["errors"]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(ServiceRecord)) == 0


def test_honor_hours_only_from_the_orgs_coordinators(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    body = {"volunteer_id": volunteer.id, "minutes": 60, "reason": "x"}
    resp = client.post(f"/api/v1/orgs/{org_id}/records", json=body, headers=volunteer.headers)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "coordinator_required"
    _, other = make_org(app)
    assert client.post(f"/api/v1/orgs/{org_id}/records", json=body, headers=other.headers).status_code == 403
    assert client.post("/api/v1/orgs/999999/records", json=body, headers=coordinator.headers).status_code == 404
    assert volunteer_row(app, volunteer.id).honor_minutes == 0


def test_honor_hours_only_for_the_orgs_volunteers(app, client):
    org_id, coordinator = make_org(app)
    outsider = make_volunteer(app)
    resp = client.post(
        f"/api/v1/orgs/{org_id}/records",
        json={"volunteer_id": outsider.id, "minutes": 60, "reason": "x"},
        headers=coordinator.headers,
    )
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "not_org_volunteer"
    not_volunteer = make_user(app)
    add_member(app, org_id, not_volunteer)
    resp = client.post(
        f"/api/v1/orgs/{org_id}/records",
        json={"volunteer_id": not_volunteer.id, "minutes": 60, "reason": "x"},
        headers=coordinator.headers,
    )
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "volunteer_required"


def test_honor_hours_for_someone_who_served_the_org(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.advance(timedelta(hours=1))
    act(client, event["volunteer"], claim_id, "check-out", **SITE)
    clock.advance(timedelta(hours=1))  # the award's half hour is not the checked-in hour
    resp = award(client, event["coordinator"], event["org_id"], event["volunteer"], 30)
    assert resp.status_code == 201, resp.get_json()


def test_org_records_list(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.advance(timedelta(hours=1))
    act(client, event["volunteer"], claim_id, "check-out", **SITE)
    resp = client.get(f"/api/v1/orgs/{event['org_id']}/records", headers=event["coordinator"].headers)
    assert resp.status_code == 200
    assert [r["minutes"] for r in resp.get_json()["items"]] == [60]
    assert client.get(f"/api/v1/orgs/{event['org_id']}/records", headers=event["volunteer"].headers).status_code == 403


# --- lists and summary -----------------------------------------------------------------------


def test_records_list_paging_and_kind_filter(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    add_member(app, org_id, volunteer)
    for day, minutes in enumerate((30, 60, 90)):
        ended = clock.isoformat(clock.utcnow() - timedelta(days=3 - day))
        assert award(client, coordinator, org_id, volunteer, minutes, ended_at=ended).status_code == 201
    page = client.get("/api/v1/me/records?limit=2", headers=volunteer.headers).get_json()
    assert [r["minutes"] for r in page["items"]] == [90, 60]
    rest = client.get(f"/api/v1/me/records?limit=2&cursor={page['next_cursor']}", headers=volunteer.headers)
    assert [r["minutes"] for r in rest.get_json()["items"]] == [30]
    assert rest.get_json()["next_cursor"] is None
    assert client.get("/api/v1/me/records?kind=credit", headers=volunteer.headers).get_json()["items"] == []
    assert client.get("/api/v1/me/records?kind=other", headers=volunteer.headers).status_code == 422
    assert client.get("/api/v1/me/records").status_code == 401


def test_summary_by_kind_and_by_month(app, client, event):
    claim_id = signed_up(client, event)
    clock.freeze(START)
    act(client, event["volunteer"], claim_id, "check-in", **SITE)
    clock.advance(timedelta(hours=2))
    act(client, event["volunteer"], claim_id, "check-out", **SITE)
    add_member(app, event["org_id"], event["volunteer"])
    # 30 November 17:00 UTC is already December 1st in Ningbo
    clock.freeze(datetime(YEAR, 11, 30, 17, 0, tzinfo=UTC))
    honor = award(client, event["coordinator"], event["org_id"], event["volunteer"], 90)
    pending = client.get("/api/v1/me/records/summary", headers=event["volunteer"].headers).get_json()
    assert (pending["honor_hours"], pending["pending_hours"], pending["pending_minutes"]) == (0.0, 1.5, 90)
    approved(client, second_coordinator(app, event["org_id"]), honor)
    resp = client.get("/api/v1/me/records/summary", headers=event["volunteer"].headers)
    assert resp.status_code == 200
    summary = resp.get_json()
    assert summary["credit_hours"] == 2.0
    assert summary["honor_hours"] == 1.5
    assert summary["total_hours"] == 3.5
    assert summary["records"] == 2
    assert summary["by_kind"] == {"credit": 2.0, "honor": 1.5}
    assert summary["by_posting_kind"] == {"project": 2.0}
    assert (summary["credit_minutes"], summary["honor_minutes"]) == (120, 90)
    assert summary["by_month"] == [
        {
            "month": f"{YEAR}-11",
            "credit_hours": 2.0,
            "honor_hours": 0.0,
            "credit_minutes": 120,
            "honor_minutes": 0,
            "records": 1,
        },
        {
            "month": f"{YEAR}-12",
            "credit_hours": 0.0,
            "honor_hours": 1.5,
            "credit_minutes": 0,
            "honor_minutes": 90,
            "records": 1,
        },
    ]
    assert summary["star_level"] == 0


def test_summary_of_a_new_user_is_empty(app, client):
    user = make_user(app)
    summary = client.get("/api/v1/me/records/summary", headers=user.headers).get_json()
    assert summary["total_hours"] == 0 and summary["by_month"] == [] and summary["records"] == 0
