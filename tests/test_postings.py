"""Postings (五微): who may post which kind, required fields, review, visibility, editing, cancelling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.geo import geocell_for
from app.models import AuditEntry, Claim, Notification, Posting, PostingTag
from tests.factories import add_member, make_org, make_posting, make_user, make_volunteer, upload_photo
from tests.moments import YEAR

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Ningbo


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def body_for(kind: str, org_id: int | None = None, **overrides) -> dict:
    """A valid body of each kind (for a poster who may post it)."""
    body = {
        "kind": kind,
        "title": "社区助老活动",
        "description": "陪伴独居老人聊天、读报",
        "district": "haishu",
        "location": {"lat": 29.87, "lng": 121.55},
    }
    if kind in ("project", "charity"):
        body.update(starts_at=iso(NOW + timedelta(days=2)), ends_at=iso(NOW + timedelta(days=2, hours=3)))
    if kind == "project":
        body["capacity"] = 10
    if kind == "energy":
        body.update(capacity=5, energy_cost=50)
    if org_id is not None:
        body["org_id"] = org_id
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
def world(app):
    """A coordinator of an approved org in haishu, a fellow coordinator, a plain
    member, a coordinator of another org, a volunteer, a resident and an admin."""
    clock.freeze(NOW)
    org_id, coordinator = make_org(app, district="haishu")
    co_coordinator = make_user(app)
    add_member(app, org_id, co_coordinator, "coordinator")
    member = make_user(app)
    add_member(app, org_id, member, "member")
    member_volunteer = make_volunteer(app)
    add_member(app, org_id, member_volunteer, "member")
    other_org_id, other_coordinator = make_org(app, district="haishu")
    far_org_id, far_coordinator = make_org(app, district="yinzhou")
    return {
        "org_id": org_id,
        "other_org_id": other_org_id,
        "far_org_id": far_org_id,
        "coordinator": coordinator,
        "co_coordinator": co_coordinator,
        "member": member,
        "member_volunteer": member_volunteer,
        "other_coordinator": other_coordinator,
        "far_coordinator": far_coordinator,
        "volunteer": make_volunteer(app),
        "resident": make_user(app),
        "admin": make_user(app, admin=True),
    }


def post(client, account, body):
    return client.post("/api/v1/postings", json=body, headers=account.headers)


# --- who may post which kind ---------------------------------------------------------

# (poster, kind, names an org, expected status code, expected posting status or error slug)
WHO_MAY_POST = [
    ("resident", "wish", None, 201, "pending_review"),
    ("volunteer", "wish", None, 201, "pending_review"),
    ("coordinator", "wish", "org_id", 201, "open"),
    ("coordinator", "wish", None, 201, "pending_review"),
    ("admin", "wish", None, 201, "open"),
    ("member", "wish", "org_id", 201, "pending_review"),  # a resident's wish, routed to the org's review
    ("other_coordinator", "wish", "org_id", 201, "pending_review"),
    ("resident", "project", None, 403, "coordinator_required"),
    ("volunteer", "project", None, 403, "coordinator_required"),
    ("member", "project", "org_id", 403, "coordinator_required"),
    ("other_coordinator", "project", "org_id", 403, "coordinator_required"),
    ("coordinator", "project", "org_id", 201, "open"),
    ("co_coordinator", "project", "org_id", 201, "open"),
    ("admin", "project", "org_id", 201, "open"),
    ("resident", "charity", None, 403, "coordinator_required"),
    ("member", "charity", "org_id", 403, "coordinator_required"),
    ("coordinator", "charity", "org_id", 201, "open"),
    ("resident", "energy", None, 403, "coordinator_required"),
    ("volunteer", "energy", None, 403, "coordinator_required"),
    ("other_coordinator", "energy", "org_id", 403, "coordinator_required"),
    ("coordinator", "energy", "org_id", 201, "open"),
    ("resident", "service", None, 403, "volunteer_required"),
    ("volunteer", "service", None, 201, "open"),
    ("coordinator", "service", None, 201, "open"),
    ("coordinator", "service", "org_id", 201, "open"),
    # a volunteer offers a service for an approved org only as its member
    ("member_volunteer", "service", "org_id", 201, "open"),
    ("member", "service", "org_id", 403, "volunteer_required"),
    ("volunteer", "service", "org_id", 403, "org_member_required"),
    ("other_coordinator", "service", "org_id", 403, "org_member_required"),
    ("admin", "service", None, 201, "open"),
]


@pytest.mark.parametrize(("poster", "kind", "org", "code", "outcome"), WHO_MAY_POST)
def test_who_may_post_each_kind(app, client, world, poster, kind, org, code, outcome):
    resp = post(client, world[poster], body_for(kind, world[org] if org else None))
    assert resp.status_code == code, resp.get_json()
    body = resp.get_json()
    if code == 201:
        assert body["status"] == outcome
        assert body["kind"] == kind
        assert body["author"]["id"] == world[poster].id
        assert body["org"] == ({"id": world["org_id"], "name": body["org"]["name"]} if org else None)
        with app.app_context():
            row = db.session.get(Posting, body["id"])
            assert (row.status, row.kind, row.author_id) == (outcome, kind, world[poster].id)
    else:
        assert body["error"] == outcome
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Posting)) == 0


def test_posting_needs_a_token(client):
    resp = client.post("/api/v1/postings", json=body_for("wish"))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "authorization_required"


def test_a_coordinator_must_name_the_org_of_a_project(client, world):
    resp = post(client, world["coordinator"], body_for("project"))
    assert resp.status_code == 422
    assert "org_id" in resp.get_json()["errors"]["json"]


def test_only_a_coordinator_posts_a_wish_for_someone_else(client, world):
    beneficiary = {"name": "张阿婆", "phone": "13812345678", "address": "鼓楼街道中山西路 1 号"}
    resp = post(client, world["resident"], body_for("wish", beneficiary=beneficiary))
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "coordinator_required"

    resp = post(client, world["coordinator"], body_for("wish", world["org_id"], beneficiary=beneficiary))
    assert resp.status_code == 201
    assert resp.get_json()["beneficiary"] == {
        "name_masked": "张**",
        "phone": "+8613812345678",
        "address": "鼓楼街道中山西路 1 号",
    }


def test_an_unknown_or_unapproved_org(app, client, world):
    resp = post(client, world["coordinator"], body_for("project", 2_000_000_000))
    assert resp.status_code == 422
    assert "org_id" in resp.get_json()["errors"]["json"]
    pending_org, applicant = make_org(app, status="pending")
    resp = post(client, applicant, body_for("project", pending_org))
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "org_not_approved"


# --- required fields and limits ----------------------------------------------------

# (kind, overrides, field named in errors)
INVALID_BODIES = [
    ("project", {"capacity": None}, "capacity"),
    ("project", {"starts_at": None}, "starts_at"),
    ("project", {"ends_at": None}, "ends_at"),
    ("project", {"ends_at": iso(NOW + timedelta(days=2))}, "ends_at"),  # = starts_at
    ("project", {"ends_at": iso(NOW + timedelta(days=1))}, "ends_at"),  # before starts_at
    ("project", {"starts_at": iso(NOW - timedelta(days=2)), "ends_at": iso(NOW - timedelta(days=1))}, "ends_at"),
    ("project", {"energy_cost": 10}, "energy_cost"),
    ("project", {"claim_ttl_hours": 24}, "claim_ttl_hours"),
    ("project", {"beneficiary": {"name": "李四"}}, "beneficiary"),
    ("charity", {"starts_at": iso(NOW + timedelta(days=3))}, "ends_at"),  # after ends_at
    ("energy", {"energy_cost": None}, "energy_cost"),
    ("energy", {"energy_cost": 0}, "energy_cost"),
    ("energy", {"energy_cost": -5}, "energy_cost"),
    ("energy", {"capacity": None}, "capacity"),
    ("energy", {"capacity": 0}, "capacity"),
    ("wish", {"capacity": 3}, "capacity"),
    ("wish", {"expires_at": iso(NOW + timedelta(days=90, seconds=1))}, "expires_at"),
    ("wish", {"expires_at": iso(NOW - timedelta(minutes=1))}, "expires_at"),
    ("wish", {"claim_ttl_hours": 0}, "claim_ttl_hours"),
    ("wish", {"claim_ttl_hours": 721}, "claim_ttl_hours"),
    ("wish", {"title": "长" * 81}, "title"),
    ("wish", {"title": "   "}, "title"),
    ("wish", {"title": None}, "title"),
    ("wish", {"description": "字" * 2001}, "description"),
    ("wish", {"description": None}, "description"),
    ("wish", {"tags": [f"t{i}" for i in range(11)]}, "tags"),
    ("wish", {"tags": ["太长的标签" * 5]}, "tags"),
    ("wish", {"tags": ["助老", "助老"]}, "tags"),
    ("wish", {"location": {"lat": 91, "lng": 121.55}}, "location"),
    ("wish", {"location": {"lat": 29.87, "lng": 181}}, "location"),
    ("wish", {"location": {"lat": 29.87}}, "location"),
    ("wish", {"photo_ids": ["https://example.com/a.jpg"]}, "photo_ids"),
    ("wish", {"photo_ids": list(range(1, 11))}, "photo_ids"),
    ("wish", {"photo_ids": [7, 7]}, "photo_ids"),
    ("wish", {"district": "chaoyang"}, "district"),
    ("wish", {"district": None}, "district"),
    ("wish", {"kind": "gift"}, "kind"),
    ("wish", {"colour": "red"}, "colour"),
    ("wish", {"capacity": "1"}, "capacity"),
]


@pytest.mark.parametrize(("kind", "overrides", "field"), INVALID_BODIES)
def test_invalid_bodies_are_422_naming_the_field(app, client, world, kind, overrides, field):
    body = {**body_for(kind, world["org_id"]), **overrides}
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
    resp = post(client, world["coordinator"], body)
    assert resp.status_code == 422, resp.get_json()
    payload = resp.get_json()
    assert payload["error"] == "validation_error"
    assert field in payload["errors"]["json"], payload
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Posting)) == 0


def test_wish_defaults_and_limits(app, client, world):
    resp = post(client, world["resident"], body_for("wish"))
    assert resp.status_code == 201
    wish = resp.get_json()
    assert wish["expires_at"] == iso(NOW + timedelta(days=30))
    assert wish["claim_ttl_hours"] == 168
    assert wish["capacity"] == 1
    assert (wish["claimed_count"], wish["waitlist_count"]) == (0, 0)
    assert wish["my_claim"] is None

    longest = post(client, world["resident"], body_for("wish", expires_at=iso(NOW + timedelta(days=90))))
    assert longest.status_code == 201
    assert longest.get_json()["expires_at"] == iso(NOW + timedelta(days=90))


def test_posting_stores_every_field(app, client, world):
    body = body_for(
        "project",
        world["org_id"],
        title="  周末助老  ",
        address="鼓楼街道社区中心 ",
        tags=[" 助老 ", "陪伴"],
        photo_ids=[upload_photo(client, world["coordinator"], "posting")],
        expires_at=iso(NOW + timedelta(days=1)),
    )
    resp = post(client, world["coordinator"], body)
    assert resp.status_code == 201
    got = resp.get_json()
    assert got["tags"] == ["助老", "陪伴"]
    assert got["title"] == "周末助老"
    assert got["location"] == {"lat": 29.87, "lng": 121.55}
    assert got["address"] == "鼓楼街道社区中心"
    assert got["capacity"] == 10
    assert got["starts_at"] == body["starts_at"] and got["ends_at"] == body["ends_at"]
    assert got["claim_ttl_hours"] is None and got["energy_cost"] is None
    assert [photo["id"] for photo in got["photos"]] == body["photo_ids"]
    assert got["story"] is None
    assert got["beneficiary"] == {"name_masked": None}
    with app.app_context():
        row = db.session.get(Posting, got["id"])
        assert row.geocell == geocell_for(29.87, 121.55)
        tags = db.session.scalars(sa.select(PostingTag.tag).order_by(PostingTag.position)).all()
        assert tags == ["助老", "陪伴"]


def test_charity_capacity_may_be_unlimited(client, world):
    resp = post(client, world["coordinator"], body_for("charity", world["org_id"]))
    assert resp.status_code == 201
    assert resp.get_json()["capacity"] is None


# --- review -------------------------------------------------------------------------


def _pending_wish(client, world) -> int:
    resp = post(client, world["resident"], body_for("wish", title="帮我修门锁"))
    assert resp.get_json()["status"] == "pending_review"
    return resp.get_json()["id"]


@pytest.mark.parametrize("reviewer", ["coordinator", "other_coordinator", "admin"])
def test_approve_opens_the_wish_and_tells_the_author(app, client, world, reviewer):
    posting_id = _pending_wish(client, world)
    resp = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world[reviewer].headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "open"
    assert resp.get_json()["reviewed_at"] == iso(NOW)
    assert client.get(f"/api/v1/postings/{posting_id}").get_json()["status"] == "open"
    with app.app_context():
        row = db.session.get(Posting, posting_id)
        assert (row.status, row.reviewed_by) == ("open", world[reviewer].id)
        note = db.session.scalars(sa.select(Notification).where(Notification.kind == "posting_approved")).one()
        assert note.user_id == world["resident"].id
        assert note.data == {"kind": "posting_approved", "posting_id": str(posting_id)}
        assert "帮我修门锁" in note.body
        audit = db.session.scalars(sa.select(AuditEntry)).one()
        assert (audit.action, audit.actor_id, audit.target_id) == ("posting.approve", world[reviewer].id, posting_id)

    again = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world[reviewer].headers)
    assert again.status_code == 409
    assert again.get_json()["error"] == "posting_not_pending"


@pytest.mark.parametrize(
    ("reviewer", "code", "slug"),
    [
        ("resident", 403, "coordinator_required"),  # the author sees it but may not review it
        ("volunteer", 404, "not_found"),
        ("member", 404, "not_found"),
        ("far_coordinator", 404, "not_found"),  # another district's coordinator
    ],
)
def test_who_may_not_review(app, client, world, reviewer, code, slug):
    posting_id = _pending_wish(client, world)
    for action, body in (("approve", None), ("reject", {"reason": "不合适"})):
        resp = client.post(f"/api/v1/postings/{posting_id}/{action}", json=body, headers=world[reviewer].headers)
        assert resp.status_code == code
        assert resp.get_json()["error"] == slug
    with app.app_context():
        assert db.session.get(Posting, posting_id).status == "pending_review"


def test_a_residents_wish_named_for_an_org_is_reviewed_by_its_coordinators(app, client, world):
    """The org's coordinators review it even when the org sits in another district."""
    resp = post(client, world["resident"], body_for("wish", world["far_org_id"], title="想学用智能手机"))
    assert resp.status_code == 201
    assert (resp.get_json()["status"], resp.get_json()["org"]["id"]) == ("pending_review", world["far_org_id"])
    posting_id = resp.get_json()["id"]
    assert client.get(f"/api/v1/postings/{posting_id}", headers=world["far_coordinator"].headers).status_code == 200
    resp = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world["far_coordinator"].headers)
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "open"
    # naming an org does not let a resident post for someone else
    beneficiary = {"name": "王大爷"}
    resp = post(client, world["resident"], body_for("wish", world["org_id"], beneficiary=beneficiary))
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "coordinator_required"


def test_reviewing_an_open_posting_is_a_conflict(client, world):
    resp = post(client, world["coordinator"], body_for("project", world["org_id"]))
    posting_id = resp.get_json()["id"]
    resp = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world["co_coordinator"].headers)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_not_pending"
    # a coordinator of another org in the district does not review this org's postings
    resp = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world["other_coordinator"].headers)
    assert resp.status_code == 403
    # a coordinator of another district may see the open posting, not review it
    resp = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world["far_coordinator"].headers)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "coordinator_required"


def test_reject_with_a_reason(app, client, world):
    posting_id = _pending_wish(client, world)
    resp = client.post(f"/api/v1/postings/{posting_id}/reject", json={}, headers=world["coordinator"].headers)
    assert resp.status_code == 422
    assert "reason" in resp.get_json()["errors"]["json"]

    resp = client.post(
        f"/api/v1/postings/{posting_id}/reject", json={"reason": " 描述不清楚 "}, headers=world["coordinator"].headers
    )
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "rejected"
    assert resp.get_json()["reject_reason"] == "描述不清楚"
    with app.app_context():
        note = db.session.scalars(sa.select(Notification).where(Notification.kind == "posting_rejected")).one()
        assert note.user_id == world["resident"].id
        assert "描述不清楚" in note.body

    # rejected: the author, the district's coordinators (its managers) and admins still see it
    for viewer, code in (("resident", 200), ("admin", 200), ("coordinator", 200), ("far_coordinator", 404)):
        assert client.get(f"/api/v1/postings/{posting_id}", headers=world[viewer].headers).status_code == code
    again = client.post(f"/api/v1/postings/{posting_id}/approve", headers=world["admin"].headers)
    assert again.status_code == 409
    assert again.get_json()["error"] == "posting_not_pending"


def test_review_of_an_unknown_posting_is_404(client, world):
    resp = client.post("/api/v1/postings/2000000000/approve", headers=world["admin"].headers)
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"


# --- visibility ---------------------------------------------------------------------

# viewer -> (sees pending_review, sees rejected)
VISIBILITY = {
    "anonymous": (False, False),
    "resident": (True, True),  # the author
    "volunteer": (False, False),
    "member": (False, False),
    # a coordinator in the district of an org-less wish manages it: sees it in every state
    "coordinator": (True, True),
    "far_coordinator": (False, False),
    "admin": (True, True),
}


@pytest.mark.parametrize("viewer", list(VISIBILITY))
@pytest.mark.parametrize("status", ["pending_review", "rejected"])
def test_who_sees_hidden_postings(app, client, world, viewer, status):
    posting_id = make_posting(app, world["resident"], status=status)
    headers = world[viewer].headers if viewer != "anonymous" else {}
    sees = VISIBILITY[viewer][0 if status == "pending_review" else 1]

    resp = client.get(f"/api/v1/postings/{posting_id}", headers=headers)
    assert resp.status_code == (200 if sees else 404)
    if not sees:
        assert resp.get_json()["error"] == "not_found"

    listed = client.get(f"/api/v1/postings?status={status}", headers=headers)
    assert listed.status_code == 200
    # status=pending_review alone is the review queue: never one's own posting
    listed_by_status = sees and not (status == "pending_review" and viewer == "resident")
    assert [item["id"] for item in listed.get_json()["items"]] == ([posting_id] if listed_by_status else [])
    mine = client.get(f"/api/v1/postings?status={status}&author_id={world['resident'].id}", headers=headers)
    assert [item["id"] for item in mine.get_json()["items"]] == ([posting_id] if sees else [])
    # and never in the default (open) feed
    assert client.get("/api/v1/postings", headers=headers).get_json()["items"] == []


def test_org_coordinators_see_their_orgs_hidden_postings(app, client, world):
    posting_id = make_posting(app, world["coordinator"], status="rejected", org_id=world["org_id"], district="yinzhou")
    for viewer, code in (("co_coordinator", 200), ("far_coordinator", 404), ("other_coordinator", 404)):
        resp = client.get(f"/api/v1/postings/{posting_id}", headers=world[viewer].headers)
        assert resp.status_code == code, viewer


def test_a_missing_posting_is_404(client):
    resp = client.get("/api/v1/postings/2000000000")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"


# --- beneficiary privacy --------------------------------------------------------------

CONTACT = {"name_masked": "张**", "phone": "+8613812345678", "address": "鼓楼街道中山西路 1 号 302 室"}
MASKED = {"name_masked": "张**"}


def _claim(app, posting_id: int, account, status: str) -> int:
    with app.app_context():
        claim = Claim(posting_id=posting_id, user_id=account.id, kind="wish", status=status, claimed_at=NOW)
        db.session.add(claim)
        db.session.commit()
        return claim.id


@pytest.fixture
def private_wish(app, client, world):
    """A coordinator's wish for 张阿婆, taken on by one volunteer; others once held it."""
    body = body_for(
        "wish",
        world["org_id"],
        beneficiary={"name": "张阿婆", "phone": "13812345678", "address": "鼓楼街道中山西路 1 号 302 室"},
    )
    posting_id = post(client, world["coordinator"], body).get_json()["id"]
    world["claimant"] = make_volunteer(app)
    world["fulfiller"] = make_volunteer(app)
    world["withdrawn"] = make_volunteer(app)
    world["confirmed"] = make_volunteer(app)
    world["waitlisted"] = make_volunteer(app)
    _claim(app, posting_id, world["withdrawn"], "withdrawn")
    _claim(app, posting_id, world["claimant"], "active")
    _claim(app, posting_id, world["fulfiller"], "fulfilled")
    _claim(app, posting_id, world["confirmed"], "confirmed")
    _claim(app, posting_id, world["waitlisted"], "waitlisted")
    return posting_id


# viewer -> what the item shows of the beneficiary
PRIVACY = {
    "anonymous": MASKED,
    "resident": MASKED,
    "volunteer": MASKED,
    "member": MASKED,  # a plain member of the posting's org
    "other_coordinator": MASKED,  # coordinates another org of the same district
    "withdrawn": MASKED,  # once claimed, then withdrew
    "waitlisted": MASKED,
    "confirmed": MASKED,  # finished: no longer needs the address
    "claimant": CONTACT,  # the active claimant
    "fulfiller": CONTACT,  # marked done, awaiting confirmation
    "coordinator": CONTACT,  # the author
    "co_coordinator": CONTACT,  # the org's other coordinator
    "admin": CONTACT,
}


@pytest.mark.parametrize("viewer", list(PRIVACY))
def test_beneficiary_fields_per_viewer(client, world, private_wish, viewer):
    headers = world[viewer].headers if viewer != "anonymous" else {}
    item = client.get(f"/api/v1/postings/{private_wish}", headers=headers).get_json()
    assert item["beneficiary"] == PRIVACY[viewer]
    # lists never carry phone or address, whoever looks
    for query in ("", "?near=29.87,121.55", "?sort=ending_soon", "?kind=wish&district=haishu"):
        items = client.get(f"/api/v1/postings{query}", headers=headers).get_json()["items"]
        assert [i["beneficiary"] for i in items] == [MASKED], query


def test_responses_never_leak_the_contact_elsewhere(client, world, private_wish):
    listed = client.get("/api/v1/postings", headers=world["admin"].headers)
    public = client.get(f"/api/v1/postings/{private_wish}")
    for resp in (listed, public):
        text = resp.get_data(as_text=True)  # the wire form: UTF-8, no \u escapes to hide a name in
        assert "13812345678" not in text and "302 室" not in text and "张阿婆" not in text


@pytest.mark.parametrize(
    ("viewer", "status"),
    [("claimant", "active"), ("withdrawn", "withdrawn"), ("confirmed", "confirmed"), ("waitlisted", "waitlisted")],
)
def test_my_claim_is_the_viewers_claim(app, client, world, private_wish, viewer, status):
    item = client.get(f"/api/v1/postings/{private_wish}", headers=world[viewer].headers).get_json()
    assert item["my_claim"]["status"] == status
    assert item["my_claim"]["volunteer"]["id"] == world[viewer].id
    assert item["my_claim"]["posting_id"] == private_wish
    listed = client.get("/api/v1/postings", headers=world[viewer].headers).get_json()["items"]
    assert listed[0]["my_claim"]["id"] == item["my_claim"]["id"]
    assert client.get(f"/api/v1/postings/{private_wish}").get_json()["my_claim"] is None
    assert client.get(f"/api/v1/postings/{private_wish}", headers=world["admin"].headers).get_json()["my_claim"] is None


def test_my_claim_prefers_the_live_claim_over_older_ones(app, client, world, private_wish):
    again = _claim(app, private_wish, world["withdrawn"], "released")
    item = client.get(f"/api/v1/postings/{private_wish}", headers=world["withdrawn"].headers).get_json()
    assert item["my_claim"]["id"] == again  # the latest of two ended claims
    live = _claim(app, private_wish, world["withdrawn"], "active")
    _claim(app, private_wish, world["withdrawn"], "no_show")
    item = client.get(f"/api/v1/postings/{private_wish}", headers=world["withdrawn"].headers).get_json()
    assert item["my_claim"]["id"] == live
    assert item["beneficiary"] == CONTACT


def test_a_residents_own_wish_shows_their_contact_to_the_claimant_only(app, client, world):
    posting_id = make_posting(app, world["resident"], beneficiary_name="王小明", beneficiary_phone="+8613900001111")
    claimant = make_volunteer(app)
    _claim(app, posting_id, claimant, "active")
    for viewer, expected in ((claimant, {"name_masked": "王**", "phone": "+8613900001111", "address": None}),):
        assert (
            client.get(f"/api/v1/postings/{posting_id}", headers=viewer.headers).get_json()["beneficiary"] == expected
        )
    assert client.get(f"/api/v1/postings/{posting_id}", headers=world["volunteer"].headers).get_json()[
        "beneficiary"
    ] == {"name_masked": "王**"}


def test_a_list_costs_the_same_queries_for_3_or_30_items(app, client, world):
    """Authors, orgs and the viewer's claims are loaded once per page, not per item."""
    viewer = make_volunteer(app)

    def queries_for_page() -> int:
        count = 0

        def counter(*_args):
            nonlocal count
            count += 1

        with app.app_context():
            engine = db.engine
        sa.event.listen(engine, "before_cursor_execute", counter)
        try:
            resp = client.get("/api/v1/postings?limit=100", headers=viewer.headers)
        finally:
            sa.event.remove(engine, "before_cursor_execute", counter)
        assert resp.status_code == 200
        return count

    def add(n: int) -> None:
        for i in range(n):
            author = world["coordinator"] if i % 2 else make_user(app)
            posting_id = make_posting(app, author, org_id=world["org_id"] if i % 2 else None, tags=["助老"])
            _claim(app, posting_id, viewer, "withdrawn")

    add(3)
    small = queries_for_page()
    add(27)
    assert queries_for_page() == small


# --- editing --------------------------------------------------------------------------


def _open_wish(app, world, **fields) -> int:
    return make_posting(app, world["resident"], **fields)


@pytest.mark.parametrize(
    ("editor", "code"),
    [("resident", 200), ("admin", 200), ("volunteer", 403), ("coordinator", 200), ("far_coordinator", 403)],
)
def test_who_may_edit_a_residents_wish(app, client, world, editor, code):
    posting_id = _open_wish(app, world)
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"title": "新标题"}, headers=world[editor].headers)
    assert resp.status_code == code, resp.get_json()
    if code == 403:
        assert resp.get_json()["error"] == "poster_required"
    with app.app_context():
        assert db.session.get(Posting, posting_id).title == ("新标题" if code == 200 else "帮独居老人修水龙头")


@pytest.mark.parametrize(("editor", "code"), [("coordinator", 200), ("co_coordinator", 200), ("member", 403)])
def test_the_orgs_coordinators_edit_its_postings(app, client, world, editor, code):
    posting_id = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"])
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"capacity": 30}, headers=world[editor].headers)
    assert resp.status_code == code
    if code == 200:
        assert resp.get_json()["capacity"] == 30


def test_edit_fields_and_keep_the_geocell_in_step(app, client, world):
    posting_id = _open_wish(app, world, tags=["维修"])
    resp = client.patch(
        f"/api/v1/postings/{posting_id}",
        json={
            "description": "厨房水龙头漏水",
            "location": {"lat": 29.95, "lng": 121.70},
            "tags": ["维修", "水电"],
            "address": "江北区某小区门口",
            "district": "jiangbei",
        },
        headers=world["resident"].headers,
    )
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert got["location"] == {"lat": 29.95, "lng": 121.70}
    assert got["tags"] == ["维修", "水电"]
    assert (got["description"], got["district"], got["address"]) == ("厨房水龙头漏水", "jiangbei", "江北区某小区门口")
    with app.app_context():
        row = db.session.get(Posting, posting_id)
        assert row.geocell == geocell_for(29.95, 121.70)
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"location": None}, headers=world["resident"].headers)
    assert resp.get_json()["location"] is None
    with app.app_context():
        assert db.session.get(Posting, posting_id).geocell is None
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"tags": []}, headers=world["resident"].headers)
    assert resp.get_json()["tags"] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"capacity": 2}, "capacity"),
        ({"energy_cost": 5}, "energy_cost"),
        ({"expires_at": iso(NOW + timedelta(days=91))}, "expires_at"),
        ({"expires_at": iso(NOW - timedelta(hours=1))}, "expires_at"),
        ({"title": ""}, "title"),
        ({"kind": "project"}, "kind"),
        ({"org_id": 1}, "org_id"),
        ({"expires_at": None}, "expires_at"),
    ],
)
def test_invalid_edits(app, client, world, changes, field):
    posting_id = _open_wish(app, world)
    resp = client.patch(f"/api/v1/postings/{posting_id}", json=changes, headers=world["resident"].headers)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]["json"]


def test_only_a_coordinator_edits_the_beneficiary(app, client, world):
    posting_id = _open_wish(app, world)
    resp = client.patch(
        f"/api/v1/postings/{posting_id}", json={"beneficiary": {"name": "李四"}}, headers=world["resident"].headers
    )
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "coordinator_required"
    org_wish = make_posting(app, world["coordinator"], org_id=world["org_id"])
    resp = client.patch(
        f"/api/v1/postings/{org_wish}",
        json={"beneficiary": {"name": "李四", "phone": "13912345678"}},
        headers=world["co_coordinator"].headers,
    )
    assert resp.status_code == 200
    assert resp.get_json()["beneficiary"] == {"name_masked": "李*", "phone": "+8613912345678", "address": None}


def test_once_claimed_only_the_expiry_may_be_extended(app, client, world):
    posting_id = _open_wish(app, world, status="claimed", expires_at=NOW + timedelta(days=10))
    claimant = make_volunteer(app)
    _claim(app, posting_id, claimant, "active")
    with app.app_context():
        db.session.execute(sa.update(Posting).where(Posting.id == posting_id).values(claimed_count=1))
        db.session.commit()
    url, headers = f"/api/v1/postings/{posting_id}", world["resident"].headers

    resp = client.patch(url, json={"title": "改个标题"}, headers=headers)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_claimed"
    resp = client.patch(url, json={"expires_at": iso(NOW + timedelta(days=5))}, headers=headers)
    assert resp.status_code == 409  # shortening is not extending
    assert resp.get_json()["error"] == "posting_claimed"

    resp = client.patch(url, json={"expires_at": iso(NOW + timedelta(days=40))}, headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["expires_at"] == iso(NOW + timedelta(days=40))
    # sending the whole form back with only the expiry changed is fine too
    resp = client.patch(
        url, json={"title": "帮独居老人修水龙头", "expires_at": iso(NOW + timedelta(days=90))}, headers=headers
    )
    assert resp.status_code == 200
    resp = client.patch(url, json={"expires_at": iso(NOW + timedelta(days=90, minutes=1))}, headers=headers)
    assert resp.status_code == 422
    with app.app_context():
        row = db.session.get(Posting, posting_id)
        assert (row.title, row.expires_at) == ("帮独居老人修水龙头", NOW + timedelta(days=90))


def test_a_waitlist_counts_as_claimed(app, client, world):
    posting_id = make_posting(
        app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1, status="full"
    )
    with app.app_context():
        db.session.execute(sa.update(Posting).where(Posting.id == posting_id).values(claimed_count=1, waitlist_count=1))
        db.session.commit()
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"capacity": 5}, headers=world["coordinator"].headers)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_claimed"


@pytest.mark.parametrize("status", ["cancelled", "expired", "closed", "rejected"])
def test_ended_postings_cannot_be_edited(app, client, world, status):
    posting_id = _open_wish(app, world, status=status)
    resp = client.patch(
        f"/api/v1/postings/{posting_id}",
        json={"expires_at": iso(NOW + timedelta(days=40))},
        headers=world["resident"].headers,
    )
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_not_editable"


def test_editing_a_pending_wish_keeps_it_pending(app, client, world):
    posting_id = _pending_wish(client, world)
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"title": "修门锁"}, headers=world["resident"].headers)
    assert resp.status_code == 200
    assert (resp.get_json()["title"], resp.get_json()["status"]) == ("修门锁", "pending_review")
    # a stranger cannot even learn it exists
    resp = client.patch(f"/api/v1/postings/{posting_id}", json={"title": "x"}, headers=world["volunteer"].headers)
    assert resp.status_code == 404


# --- cancelling -------------------------------------------------------------------------


def test_cancel_cancels_live_claims_and_tells_their_volunteers(app, client, world):
    posting_id = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    active, waiting, gone = make_volunteer(app), make_volunteer(app), make_volunteer(app)
    active_claim = _claim(app, posting_id, active, "active")
    waiting_claim = _claim(app, posting_id, waiting, "waitlisted")
    gone_claim = _claim(app, posting_id, gone, "withdrawn")

    resp = client.post(
        f"/api/v1/postings/{posting_id}/cancel", json={"reason": "天气原因"}, headers=world["co_coordinator"].headers
    )
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "cancelled"
    assert resp.get_json()["cancel_reason"] == "天气原因"
    with app.app_context():
        statuses = dict(db.session.execute(sa.select(Claim.id, Claim.status)).all())
        assert statuses == {active_claim: "cancelled", waiting_claim: "cancelled", gone_claim: "withdrawn"}
        told = db.session.scalars(sa.select(Notification.user_id).where(Notification.kind == "claim_cancelled")).all()
        assert sorted(told) == sorted([active.id, waiting.id])

    again = client.post(f"/api/v1/postings/{posting_id}/cancel", headers=world["coordinator"].headers)
    assert again.status_code == 409
    assert again.get_json()["error"] == "posting_not_cancellable"


@pytest.mark.parametrize(("who", "code"), [("resident", 200), ("admin", 200), ("volunteer", 403), ("member", 403)])
def test_who_may_cancel(app, client, world, who, code):
    posting_id = _open_wish(app, world)
    resp = client.post(f"/api/v1/postings/{posting_id}/cancel", headers=world[who].headers)
    assert resp.status_code == code
    with app.app_context():
        assert db.session.get(Posting, posting_id).status == ("cancelled" if code == 200 else "open")


def test_an_author_withdraws_a_pending_wish(app, client, world):
    posting_id = _pending_wish(client, world)
    resp = client.post(f"/api/v1/postings/{posting_id}/cancel", json={}, headers=world["resident"].headers)
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "cancelled"
    # never published, so cancelling it does not publish it
    assert client.get(f"/api/v1/postings/{posting_id}", headers=world["volunteer"].headers).status_code == 404
    assert client.get(f"/api/v1/postings/{posting_id}").status_code == 404
    assert client.get(f"/api/v1/postings/{posting_id}", headers=world["resident"].headers).status_code == 200


def test_a_cancelled_posting_is_seen_by_those_who_claimed_it(app, client, world):
    posting_id = _open_wish(app, world)
    claimant = make_volunteer(app)
    _claim(app, posting_id, claimant, "active")
    assert client.post(f"/api/v1/postings/{posting_id}/cancel", headers=world["resident"].headers).status_code == 200
    for viewer, code in ((claimant, 200), (world["volunteer"], 404), (world["far_coordinator"], 404)):
        assert client.get(f"/api/v1/postings/{posting_id}", headers=viewer.headers).status_code == code
        listed = client.get("/api/v1/postings?status=cancelled", headers=viewer.headers).get_json()["items"]
        assert [item["id"] for item in listed] == ([posting_id] if code == 200 else [])
    item = client.get(f"/api/v1/postings/{posting_id}", headers=claimant.headers).get_json()
    assert item["my_claim"]["status"] == "cancelled"


def test_two_reviewers_racing_one_wins(app, world, postgres_only):
    import threading

    posting_id = make_posting(app, world["resident"], status="pending_review")
    reviewers = [world["coordinator"], world["other_coordinator"], world["admin"]] * 3
    barrier = threading.Barrier(len(reviewers))
    codes = []

    def review(i: int, account) -> None:
        client = app.test_client()
        action = "approve" if i % 2 else "reject"
        barrier.wait()
        resp = client.post(
            f"/api/v1/postings/{posting_id}/{action}",
            json=None if i % 2 else {"reason": "重复"},
            headers=account.headers,
        )
        codes.append((action, resp.status_code, resp.get_json().get("error")))

    threads = [threading.Thread(target=review, args=(i, a)) for i, a in enumerate(reviewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [c for c in codes if c[1] == 200]
    assert len(winners) == 1, codes
    assert sorted(c[1:] for c in codes if c[1] != 200) == [(409, "posting_not_pending")] * (len(reviewers) - 1)
    with app.app_context():
        row = db.session.get(Posting, posting_id)
        assert row.status == ("open" if winners[0][0] == "approve" else "rejected")
        kinds = db.session.scalars(sa.select(Notification.kind).where(Notification.user_id == world["resident"].id))
        assert list(kinds) == ["posting_approved" if winners[0][0] == "approve" else "posting_rejected"]


def test_a_wishs_point_is_exact_only_for_its_contacts(app, client, world):
    """Strangers see the point to about 100 m and the distance to 0.1 km; a
    project's venue is public."""
    wish = make_posting(app, world["resident"], lat=29.876543, lng=121.554321)
    org_project = make_posting(
        app, world["coordinator"], kind="project", org_id=world["org_id"], lat=29.876543, lng=121.554321
    )
    near = "near=29.87,121.55&radius_km=5"
    for viewer, exact in (("anonymous", False), ("volunteer", False), ("resident", True), ("coordinator", True)):
        headers = world[viewer].headers if viewer != "anonymous" else {}
        page = client.get(f"/api/v1/postings/{wish}", headers=headers).get_json()
        listed = {
            item["id"]: item for item in client.get(f"/api/v1/postings?{near}", headers=headers).get_json()["items"]
        }
        if exact:
            assert page["location"] == {"lat": 29.876543, "lng": 121.554321}
            assert (
                listed[wish]["distance_km"]
                == round(listed[wish]["distance_km"], 3)
                != round(listed[wish]["distance_km"], 1)
            )
        else:
            assert page["location"] == {"lat": 29.877, "lng": 121.554}
            assert listed[wish]["location"] == {"lat": 29.877, "lng": 121.554}
            assert listed[wish]["distance_km"] == round(listed[wish]["distance_km"], 1)
        assert listed[org_project]["location"] == {"lat": 29.876543, "lng": 121.554321}
