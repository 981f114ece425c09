"""Claims: claiming every kind, the conflict slugs, and the claim state machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, EnergyEntry, Notification, Posting, Volunteer
from tests.factories import add_member, make_claim, make_org, make_posting, make_user, make_volunteer, upload_photo
from tests.helpers import decide


def claim(client, account, posting_id, **body):
    return client.post(f"/api/v1/postings/{posting_id}/claims", json=body, headers=account.headers)


def act(client, account, claim_id, action, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def posting_row(app, posting_id) -> Posting:
    with app.app_context():
        posting = db.session.get(Posting, posting_id)
        db.session.expunge(posting)
        return posting


def claim_row(app, claim_id) -> Claim:
    with app.app_context():
        row = db.session.get(Claim, claim_id)
        db.session.expunge(row)
        return row


def volunteer_row(app, user_id) -> Volunteer:
    with app.app_context():
        row = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == user_id))
        db.session.expunge(row)
        return row


def notifications_of(app, user_id) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
        )
        return [(n.kind, n.data) for n in rows]


def set_energy(app, user_id, balance) -> None:
    with app.app_context():
        db.session.execute(sa.update(Volunteer).where(Volunteer.user_id == user_id).values(energy_balance=balance))
        db.session.commit()


@pytest.fixture
def world(app):
    """A community org with a coordinator, a resident and two volunteers."""
    org_id, coordinator = make_org(app)
    resident = make_user(app, name="王阿姨")
    alice = make_volunteer(app, name="小李")
    bob = make_volunteer(app, name="小陈")
    return {"org_id": org_id, "coordinator": coordinator, "resident": resident, "alice": alice, "bob": bob}


# --- claiming -------------------------------------------------------------------------


def test_claim_a_wish(app, client, world):
    clock.freeze(clock.utcnow().replace(microsecond=0))
    wish = make_posting(app, world["resident"], kind="wish", claim_ttl_hours=72)
    resp = claim(client, world["alice"], wish, message="我周六上午可以来")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "active"
    assert body["posting_id"] == wish
    assert body["volunteer"] == {"id": world["alice"].id, "display_name": "小李"}
    assert body["message"] == "我周六上午可以来"
    assert body["claimed_at"] == clock.isoformat(clock.utcnow())
    assert body["due_at"] == clock.isoformat(clock.utcnow() + timedelta(hours=72))
    for field in ("fulfilled_at", "confirmed_at", "check_in_at", "check_out_at", "note", "rating", "feedback"):
        assert body[field] is None
    assert (body["photos"], body["private_photos"]) == ([], None)

    posting = posting_row(app, wish)
    assert (posting.status, posting.claimed_count) == ("claimed", 1)
    assert volunteer_row(app, world["alice"].id).active_wish_claims == 1
    assert notifications_of(app, world["resident"].id) == [
        ("wish_claimed", {"kind": "wish_claimed", "posting_id": str(wish), "claim_id": str(body["id"])})
    ]


def test_wish_conflicts(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    first = claim(client, world["alice"], wish)
    assert first.status_code == 201
    again = claim(client, world["alice"], wish)
    assert again.status_code == 409
    assert again.get_json()["error"] == "duplicate_claim"
    other = claim(client, world["bob"], wish)
    assert other.status_code == 409
    assert other.get_json()["error"] == "already_claimed"
    assert other.get_json()["message"]
    assert posting_row(app, wish).claimed_count == 1
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Claim.id))) == 1


@pytest.mark.parametrize("status", ["pending_review", "rejected", "cancelled", "expired", "closed"])
def test_claim_refused_when_not_open(app, client, world, status):
    wish = make_posting(app, world["resident"], kind="wish", status=status)
    resp = claim(client, world["alice"], wish)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_not_open"


def test_claim_refused_past_expiry_before_the_scheduler_runs(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish", expires_at=clock.utcnow() + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    resp = claim(client, world["alice"], wish)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_not_open"


def test_claim_unknown_posting_is_404(client, world):
    resp = claim(client, world["alice"], 999999)
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"


@pytest.mark.parametrize("kind", ["wish", "project", "charity", "energy"])
def test_kinds_that_need_a_volunteer(app, client, world, kind):
    posting = make_posting(app, world["coordinator"], kind=kind, org_id=world["org_id"])
    resp = claim(client, world["resident"], posting)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "volunteer_required"
    assert posting_row(app, posting).claimed_count == 0


def test_a_resident_books_a_service_without_registering(app, client, world):
    service = make_posting(app, world["alice"], kind="service", capacity=2, title="免费理发")
    resp = claim(client, world["resident"], service)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["status"] == "active"
    assert resp.get_json()["due_at"] is None


def test_own_posting_cannot_be_claimed(app, client, world):
    service = make_posting(app, world["alice"], kind="service")
    resp = claim(client, world["alice"], service)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "own_posting"


def test_claim_needs_a_token(client, app, world):
    wish = make_posting(app, world["resident"], kind="wish")
    resp = client.post(f"/api/v1/postings/{wish}/claims", json={})
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "authorization_required"
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Claim)) == 0


def test_claim_body_is_validated(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    resp = claim(client, world["alice"], wish, message="x" * 501)
    assert resp.status_code == 422
    assert "message" in resp.get_json()["errors"]["json"]
    resp = claim(client, world["alice"], wish, surprise=1)
    assert resp.status_code == 422
    assert resp.get_json()["errors"]["json"] == {"surprise": ["不认识的字段。"]}


def test_active_wish_claim_limit(app, client, world):
    wishes = [make_posting(app, world["resident"], kind="wish", title=f"心愿{i}") for i in range(4)]
    for wish in wishes[:3]:
        assert claim(client, world["alice"], wish).status_code == 201
    resp = claim(client, world["alice"], wishes[3])
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "active_claim_limit"
    # the refused claim left nothing behind
    posting = posting_row(app, wishes[3])
    assert (posting.status, posting.claimed_count) == ("open", 0)
    assert volunteer_row(app, world["alice"].id).active_wish_claims == 3


def test_limit_is_configurable(app, client, world):
    app.config["ACTIVE_WISH_CLAIM_LIMIT"] = 1
    first, second = (make_posting(app, world["resident"], kind="wish") for _ in range(2))
    assert claim(client, world["alice"], first).status_code == 201
    assert claim(client, world["alice"], second).get_json()["error"] == "active_claim_limit"


def test_fulfilling_frees_a_place_in_the_limit(app, client, world):
    app.config["ACTIVE_WISH_CLAIM_LIMIT"] = 1
    first, second = (make_posting(app, world["resident"], kind="wish") for _ in range(2))
    claim_id = claim(client, world["alice"], first).get_json()["id"]
    assert act(client, world["alice"], claim_id, "fulfil", note="修好了", minutes=40).status_code == 200
    assert claim(client, world["alice"], second).status_code == 201


def test_withdrawing_frees_a_place_in_the_limit(app, client, world):
    app.config["ACTIVE_WISH_CLAIM_LIMIT"] = 1
    first, second = (make_posting(app, world["resident"], kind="wish") for _ in range(2))
    claim_id = claim(client, world["alice"], first).get_json()["id"]
    assert act(client, world["alice"], claim_id, "withdraw").status_code == 200
    assert claim(client, world["alice"], second).status_code == 201


# --- capacity, full, waitlist ------------------------------------------------------------


def test_service_full(app, client, world):
    service = make_posting(app, world["alice"], kind="service", capacity=1)
    assert claim(client, world["resident"], service).status_code == 201
    assert posting_row(app, service).status == "full"
    other = make_user(app)
    resp = claim(client, other, service)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_full"


def test_project_waitlist_and_promotion(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=2)
    volunteers = [world["alice"], world["bob"], make_volunteer(app), make_volunteer(app)]
    statuses = [claim(client, v, project).get_json()["status"] for v in volunteers]
    assert statuses == ["active", "active", "waitlisted", "waitlisted"]
    posting = posting_row(app, project)
    assert (posting.status, posting.claimed_count, posting.waitlist_count) == ("full", 2, 2)

    first_claim = client.get("/api/v1/me/claims", headers=world["alice"].headers).get_json()["items"][0]["id"]
    resp = act(client, world["alice"], first_claim, "withdraw")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "withdrawn"

    posting = posting_row(app, project)
    assert (posting.status, posting.claimed_count, posting.waitlist_count) == ("full", 2, 1)
    third = client.get("/api/v1/me/claims", headers=volunteers[2].headers).get_json()["items"][0]
    assert third["status"] == "active"
    assert (
        "waitlist_promoted",
        {"kind": "waitlist_promoted", "posting_id": str(project), "claim_id": str(third["id"])},
    ) in (notifications_of(app, volunteers[2].id))
    fourth = client.get("/api/v1/me/claims", headers=volunteers[3].headers).get_json()["items"][0]
    assert fourth["status"] == "waitlisted"
    assert notifications_of(app, volunteers[3].id) == []


def test_withdrawing_from_the_waitlist(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    assert claim(client, world["alice"], project).get_json()["status"] == "active"
    waiting = claim(client, world["bob"], project).get_json()
    assert waiting["status"] == "waitlisted"
    resp = act(client, world["bob"], waiting["id"], "withdraw")
    assert resp.status_code == 200
    posting = posting_row(app, project)
    assert (posting.status, posting.claimed_count, posting.waitlist_count) == ("full", 1, 0)


def test_withdrawing_reopens_a_full_project_without_a_waitlist(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    claim_id = claim(client, world["alice"], project).get_json()["id"]
    assert posting_row(app, project).status == "full"
    assert act(client, world["alice"], claim_id, "withdraw").status_code == 200
    posting = posting_row(app, project)
    assert (posting.status, posting.claimed_count) == ("open", 0)
    assert claim(client, world["bob"], project).get_json()["status"] == "active"


def test_unlimited_charity_never_fills(app, client, world):
    charity = make_posting(app, world["coordinator"], kind="charity", org_id=world["org_id"])
    for _ in range(5):
        assert claim(client, make_volunteer(app), charity).get_json()["status"] == "active"
    posting = posting_row(app, charity)
    assert (posting.status, posting.claimed_count, posting.waitlist_count) == ("open", 5, 0)


def test_no_sign_up_after_the_end(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"])
    clock.advance(timedelta(days=3))
    resp = claim(client, world["alice"], project)
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "posting_not_open"


# --- the wish lifecycle ------------------------------------------------------------------


def test_wish_lifecycle(app, client, world):
    # a resident's wish, approved by the org's coordinator: that org records it
    wish = make_posting(app, world["resident"], kind="wish", title="陪老人去医院", recording_org_id=world["org_id"])
    claim_id = claim(client, world["alice"], wish).get_json()["id"]

    photos = [upload_photo(client, world["alice"]) for _ in range(3)]
    resp = act(client, world["alice"], claim_id, "fulfil", note="已陪同就诊", photo_ids=photos, minutes=150)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "fulfilled"
    assert body["note"] == "已陪同就诊"
    assert [photo["id"] for photo in body["photos"]] == photos
    assert body["minutes"] == 150
    assert body["fulfilled_at"] is not None
    assert ("claim_fulfilled", {"kind": "claim_fulfilled", "posting_id": str(wish), "claim_id": str(claim_id)}) in (
        notifications_of(app, world["resident"].id)
    )
    assert volunteer_row(app, world["alice"].id).active_wish_claims == 0

    resp = act(client, world["resident"], claim_id, "confirm", rating=5, feedback="非常耐心")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["status"], body["rating"], body["feedback"]) == ("confirmed", 5, "非常耐心")
    assert body["confirmed_at"] is not None
    assert posting_row(app, wish).status == "closed"
    # the resident's confirmation alone makes no official hours: the record waits
    assert (
        volunteer_row(app, world["alice"].id).credit_minutes,
        volunteer_row(app, world["alice"].id).energy_balance,
    ) == (0, 0)
    pending = client.get("/api/v1/me/records", headers=world["alice"].headers).get_json()["items"][0]
    assert (pending["status"], pending["org_id"]) == ("pending", world["org_id"])
    assert decide(client, world["coordinator"], pending["id"]).status_code == 200

    volunteer = volunteer_row(app, world["alice"].id)
    assert volunteer.credit_minutes == 150
    # 10 points per credited hour (2.5 h → 25) and 5 for the confirmed wish
    assert volunteer.energy_balance == 30
    records = client.get("/api/v1/me/records", headers=world["alice"].headers).get_json()["items"]
    assert len(records) == 1
    record = records[0]
    assert record["kind"] == "credit"
    assert record["minutes"] == 150
    assert record["posting_id"] == wish
    assert record["activity"] == "陪老人去医院"
    assert record["evaluation"] == "非常耐心"
    assert record["recorded_by"] == world["resident"].id
    assert ("claim_confirmed", {"kind": "claim_confirmed", "posting_id": str(wish), "claim_id": str(claim_id)}) in (
        notifications_of(app, world["alice"].id)
    )


def test_wish_confirmed_by_a_coordinator_with_attested_minutes(app, client, world):
    wish = make_posting(app, world["coordinator"], kind="wish", org_id=world["org_id"])
    other_coordinator = make_user(app)
    add_member(app, world["org_id"], other_coordinator, role="coordinator")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    assert act(client, world["alice"], claim_id, "fulfil", note="送到了", minutes=100).status_code == 200
    resp = act(client, other_coordinator, claim_id, "confirm", rating=4, minutes=45)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["minutes"] == 45  # lowered by the confirmer
    volunteer = volunteer_row(app, world["alice"].id)
    # energy counts whole half hours: 45 min → 5 points, plus 5 for the wish
    assert (volunteer.credit_minutes, volunteer.energy_balance) == (45, 10)


def test_wish_confirmed_with_no_time_pays_five_points(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish", recording_org_id=world["org_id"])
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    act(client, world["alice"], claim_id, "fulfil", note="done", minutes=20)
    assert act(client, world["resident"], claim_id, "confirm", rating=3, minutes=0).status_code == 200
    record = client.get("/api/v1/me/records", headers=world["alice"].headers).get_json()["items"][0]
    assert decide(client, world["coordinator"], record["id"]).status_code == 200
    volunteer = volunteer_row(app, world["alice"].id)
    assert (volunteer.credit_minutes, volunteer.energy_balance) == (0, 5)
    with app.app_context():
        entries = db.session.execute(sa.select(EnergyEntry.reason, EnergyEntry.delta)).all()
    assert entries == [("wish_confirmed", 5)]


def test_confirm_needs_a_rating_for_a_wish(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    act(client, world["alice"], claim_id, "fulfil", note="done", minutes=60)
    resp = act(client, world["resident"], claim_id, "confirm")
    assert resp.status_code == 422
    assert "rating" in resp.get_json()["errors"]["json"]
    resp = act(client, world["resident"], claim_id, "confirm", rating=6)
    assert resp.status_code == 422


def test_fulfil_validates_photos(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    for photo_ids in (list(range(1, 11)), [1, 1], ["a.jpg"], [0], None):
        resp = act(client, world["alice"], claim_id, "fulfil", note="x", minutes=5, photo_ids=photo_ids)
        assert resp.status_code == 422, photo_ids
        assert "photo_ids" in resp.get_json()["errors"]["json"], photo_ids
    assert act(client, world["alice"], claim_id, "fulfil", minutes=5, photo_ids=[]).status_code == 422  # note
    assert claim_row(app, claim_id).status == "active"


def test_withdrawing_a_wish_reopens_it(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    resp = act(client, world["alice"], claim_id, "withdraw")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "withdrawn"
    posting = posting_row(app, wish)
    assert (posting.status, posting.claimed_count) == ("open", 0)
    assert volunteer_row(app, world["alice"].id).active_wish_claims == 0
    # someone else may take it now, and so may the same volunteer again
    assert claim(client, world["bob"], wish).status_code == 201


def test_reclaiming_after_withdrawing(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    act(client, world["alice"], claim_id, "withdraw")
    again = claim(client, world["alice"], wish)
    assert again.status_code == 201
    assert again.get_json()["id"] != claim_id


# --- the state machine, table-driven ------------------------------------------------------

# (kind, the claim's status before, action, who acts, expected status code, slug or the new status)
TRANSITIONS = [
    # withdraw: claimant only, from active or waitlisted
    ("wish", "active", "withdraw", "claimant", 200, "withdrawn"),
    ("wish", "fulfilled", "withdraw", "claimant", 409, "claim_not_active"),
    ("wish", "confirmed", "withdraw", "claimant", 409, "claim_not_active"),
    ("wish", "withdrawn", "withdraw", "claimant", 409, "claim_not_active"),
    ("wish", "released", "withdraw", "claimant", 409, "claim_not_active"),
    ("wish", "cancelled", "withdraw", "claimant", 409, "claim_not_active"),
    ("wish", "active", "withdraw", "poster", 403, "claimant_required"),
    ("project", "waitlisted", "withdraw", "claimant", 200, "withdrawn"),
    ("project", "active", "withdraw", "claimant", 200, "withdrawn"),
    ("charity", "active", "withdraw", "claimant", 200, "withdrawn"),
    ("service", "active", "withdraw", "claimant", 200, "withdrawn"),
    ("energy", "active", "withdraw", "claimant", 200, "withdrawn"),
    ("service", "fulfilled", "withdraw", "claimant", 409, "claim_not_active"),
    ("project", "confirmed", "withdraw", "claimant", 409, "claim_not_active"),
    ("project", "no_show", "withdraw", "claimant", 409, "claim_not_active"),
    ("energy", "confirmed", "withdraw", "claimant", 409, "claim_not_active"),
    # fulfil: the claimant of a wish from active; the provider of a service
    ("wish", "active", "fulfil", "claimant", 200, "fulfilled"),
    ("wish", "active", "fulfil", "poster", 403, "claimant_required"),
    ("wish", "fulfilled", "fulfil", "claimant", 409, "claim_not_active"),
    ("wish", "confirmed", "fulfil", "claimant", 409, "claim_not_active"),
    ("wish", "withdrawn", "fulfil", "claimant", 409, "claim_not_active"),
    ("wish", "released", "fulfil", "claimant", 409, "claim_not_active"),
    ("service", "active", "fulfil", "poster", 200, "fulfilled"),
    ("service", "active", "fulfil", "claimant", 403, "provider_required"),
    ("service", "fulfilled", "fulfil", "poster", 409, "claim_not_active"),
    ("project", "active", "fulfil", "claimant", 409, "wrong_claim_kind"),
    ("energy", "active", "fulfil", "claimant", 409, "wrong_claim_kind"),
    # confirm: a wish from fulfilled (poster/coordinator); a service from fulfilled
    # (the resident, never its provider); an energy hand-over from active (poster/coordinator)
    ("wish", "fulfilled", "confirm", "poster", 200, "confirmed"),
    ("wish", "fulfilled", "confirm", "coordinator", 200, "confirmed"),
    ("wish", "fulfilled", "confirm", "claimant", 403, "own_claim"),
    ("wish", "active", "confirm", "poster", 409, "claim_not_fulfilled"),
    ("wish", "confirmed", "confirm", "poster", 409, "claim_not_fulfilled"),
    ("wish", "withdrawn", "confirm", "poster", 409, "claim_not_fulfilled"),
    ("service", "fulfilled", "confirm", "claimant", 200, "confirmed"),
    ("service", "fulfilled", "confirm", "poster", 403, "own_claim"),  # the provider
    ("service", "fulfilled", "confirm", "stranger", 404, "not_found"),
    ("service", "active", "confirm", "claimant", 409, "claim_not_fulfilled"),
    ("energy", "active", "confirm", "poster", 200, "confirmed"),
    ("energy", "active", "confirm", "claimant", 403, "own_claim"),
    ("energy", "withdrawn", "confirm", "poster", 409, "claim_not_active"),
    ("project", "active", "confirm", "coordinator", 409, "wrong_claim_kind"),
    # no-show: coordinators, on an on-site claim (the activity has ended in these rows)
    ("project", "active", "no-show", "coordinator", 200, "no_show"),
    ("project", "active", "no-show", "claimant", 403, "coordinator_required"),
    ("project", "waitlisted", "no-show", "coordinator", 409, "claim_not_active"),
    ("project", "no_show", "no-show", "coordinator", 409, "claim_not_active"),
    ("project", "withdrawn", "no-show", "coordinator", 409, "claim_not_active"),
    ("wish", "active", "no-show", "poster", 409, "wrong_claim_kind"),
    # check-in: the claimant of an on-site claim
    ("wish", "active", "check-in", "claimant", 409, "wrong_claim_kind"),
    ("project", "waitlisted", "check-in", "claimant", 409, "claim_not_active"),
    ("project", "withdrawn", "check-in", "claimant", 409, "claim_not_active"),
    ("charity", "active", "check-in", "claimant", 200, "active"),
    ("charity", "active", "check-in", "coordinator", 403, "claimant_required"),
    ("charity", "active", "check-out", "claimant", 409, "not_checked_in"),
    ("project", "confirmed", "check-in", "claimant", 409, "claim_not_active"),
    ("project", "no_show", "check-in", "claimant", 409, "claim_not_active"),
    ("project", "withdrawn", "check-out", "claimant", 409, "claim_not_active"),
    ("project", "waitlisted", "check-out", "claimant", 409, "claim_not_active"),
    ("service", "active", "check-in", "claimant", 409, "wrong_claim_kind"),
    ("project", "confirmed", "no-show", "coordinator", 409, "claim_not_active"),
    ("energy", "active", "no-show", "coordinator", 409, "wrong_claim_kind"),
    ("wish", "no_show", "confirm", "poster", 409, "claim_not_fulfilled"),
    ("charity", "waitlisted", "fulfil", "claimant", 409, "wrong_claim_kind"),
]


def _setup_claim(app, world, kind: str, status: str) -> tuple[int, int]:
    """A claim of ``kind`` put straight into ``status`` (the row, not the API)."""
    now = clock.utcnow()
    author = world["coordinator"] if kind in ("project", "charity", "energy") else world["resident"]
    if kind == "service":
        author = world["bob"]
    org_id = world["org_id"] if author is world["coordinator"] else None
    times = {}
    if kind in ("project", "charity"):
        times = {"starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(hours=2)}
    posting_id = make_posting(app, author, kind=kind, org_id=org_id, energy_cost=0, **times)
    claimant = world["alice"] if kind != "service" else world["resident"]
    return posting_id, make_claim(app, posting_id, claimant, status, fulfilled_at=None, minutes=None)


@pytest.mark.parametrize(("kind", "before", "action", "who", "code", "outcome"), TRANSITIONS)
def test_transition(app, client, world, kind, before, action, who, code, outcome):
    posting_id, claim_id = _setup_claim(app, world, kind, before)
    claimant = world["alice"] if kind != "service" else world["resident"]
    poster = {"wish": world["resident"], "service": world["bob"]}.get(kind, world["coordinator"])
    if who == "stranger":
        actor = make_volunteer(app)
    else:
        actor = {"claimant": claimant, "poster": poster, "coordinator": world["coordinator"]}[who]
    if action == "no-show":
        clock.advance(timedelta(hours=3))
    body = {}
    if action == "fulfil":
        body = {"note": "done", "minutes": 60}
    elif action == "confirm":
        body = {"rating": 5}
    elif action in ("check-in", "check-out"):
        body = {"lat": 29.87, "lng": 121.55}
    resp = act(client, actor, claim_id, action, **body)
    assert resp.status_code == code, resp.get_json()
    if code == 200:
        assert resp.get_json()["status"] == outcome
        assert claim_row(app, claim_id).status == outcome
    else:
        assert resp.get_json()["error"] == outcome
        assert claim_row(app, claim_id).status == before


def test_strangers_do_not_see_a_claim(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    stranger = make_volunteer(app)
    resp = client.get(f"/api/v1/claims/{claim_id}", headers=stranger.headers)
    assert resp.status_code == 404
    assert act(client, stranger, claim_id, "withdraw").status_code == 404
    for viewer in (world["alice"], world["resident"]):
        resp = client.get(f"/api/v1/claims/{claim_id}", headers=viewer.headers)
        assert resp.status_code == 200
        assert resp.get_json()["id"] == claim_id
    admin = make_user(app, admin=True)
    assert client.get(f"/api/v1/claims/{claim_id}", headers=admin.headers).status_code == 200
    assert client.get("/api/v1/claims/999999", headers=admin.headers).status_code == 404


def test_district_coordinators_see_and_confirm_a_residents_wish(app, client, world):
    wish = make_posting(app, world["resident"], kind="wish", district="haishu")
    claim_id = claim(client, world["alice"], wish).get_json()["id"]
    assert client.get(f"/api/v1/claims/{claim_id}", headers=world["coordinator"].headers).status_code == 200
    other_org, other_coordinator = make_org(app, district="jiangbei")
    assert client.get(f"/api/v1/claims/{claim_id}", headers=other_coordinator.headers).status_code == 404


# --- lists -----------------------------------------------------------------------------


def test_my_claims_with_status_filter_and_paging(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    wishes = [make_posting(app, world["resident"], kind="wish", title=f"心愿{i}") for i in range(2)]
    claim(client, world["bob"], project)
    waitlisted = claim(client, world["alice"], project).get_json()["id"]
    active = [claim(client, world["alice"], w).get_json()["id"] for w in wishes]

    resp = client.get("/api/v1/me/claims", headers=world["alice"].headers)
    assert resp.status_code == 200
    items = resp.get_json()["items"]
    assert [c["id"] for c in items] == [active[1], active[0], waitlisted]
    assert items[0]["posting"]["id"] == wishes[1]
    assert items[0]["posting"]["title"] == "心愿1"
    assert items[2]["posting"]["kind"] == "project"
    assert resp.get_json()["next_cursor"] is None

    only = client.get("/api/v1/me/claims?status=waitlisted", headers=world["alice"].headers).get_json()["items"]
    assert [c["id"] for c in only] == [waitlisted]
    both = client.get("/api/v1/me/claims?status=active&status=waitlisted", headers=world["alice"].headers)
    assert len(both.get_json()["items"]) == 3
    comma = client.get("/api/v1/me/claims?status=active,waitlisted", headers=world["alice"].headers)
    assert len(comma.get_json()["items"]) == 3
    bad = client.get("/api/v1/me/claims?status=bogus", headers=world["alice"].headers)
    assert bad.status_code == 422

    page1 = client.get("/api/v1/me/claims?limit=2", headers=world["alice"].headers).get_json()
    assert len(page1["items"]) == 2 and page1["next_cursor"]
    page2 = client.get(f"/api/v1/me/claims?limit=2&cursor={page1['next_cursor']}", headers=world["alice"].headers)
    assert [c["id"] for c in page2.get_json()["items"]] == [waitlisted]


def test_posting_claims_list_for_its_coordinators(app, client, world):
    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    first = claim(client, world["alice"], project).get_json()["id"]
    second = claim(client, world["bob"], project).get_json()["id"]
    resp = client.get(f"/api/v1/postings/{project}/claims", headers=world["coordinator"].headers)
    assert resp.status_code == 200
    assert [(c["id"], c["status"]) for c in resp.get_json()["items"]] == [(first, "active"), (second, "waitlisted")]
    resp = client.get(f"/api/v1/postings/{project}/claims?status=waitlisted", headers=world["coordinator"].headers)
    assert [c["id"] for c in resp.get_json()["items"]] == [second]
    resp = client.get(f"/api/v1/postings/{project}/claims", headers=world["alice"].headers)
    assert resp.status_code == 403
    assert resp.get_json()["error"] == "poster_required"


def test_cancelling_a_posting_cancels_its_claims(app, client, world):
    """cancel_claims_for_posting (called by the postings service) keeps working."""
    from app.services.claims import cancel_claims_for_posting

    project = make_posting(app, world["coordinator"], kind="project", org_id=world["org_id"], capacity=1)
    active = claim(client, world["alice"], project).get_json()["id"]
    waiting = claim(client, world["bob"], project).get_json()["id"]
    with app.app_context():
        posting = db.session.get(Posting, project)
        posting.status = "cancelled"
        assert cancel_claims_for_posting(posting) == 2
        db.session.commit()
    assert claim_row(app, active).status == "cancelled"
    assert claim_row(app, waiting).status == "cancelled"
    assert ("claim_cancelled", {"kind": "claim_cancelled", "posting_id": str(project), "claim_id": str(active)}) in (
        notifications_of(app, world["alice"].id)
    )
