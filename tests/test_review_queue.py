"""The review queue (审核队列): what each caller may review, oldest first, and
how its reviewers are told of a new item (posting_submitted) — every message
in the inbox, at most one push per reviewer per 10 minutes, even when wishes
arrive at the same moment."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.clock import utcnow
from app.extensions import db
from app.models import Device, Notification, OrgMember, User
from app.services.accounts import hash_password
from notifications.dispatch import dispatch_until_empty
from tests.factories import ROLES, add_member, make_org, make_posting, make_roles, make_user, set_locale
from tests.moments import YEAR
from tests.test_races import at_once

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Ningbo
QUEUE = "/api/v1/postings?status=pending_review"
WISH = {"kind": "wish", "title": "想借一台轮椅", "description": "奶奶脚踝扭伤，需要轮椅两周。", "district": "haishu"}


@pytest.fixture
def roles(app):
    clock.freeze(NOW)
    return make_roles(app)


def ids(resp) -> list[int]:
    assert resp.status_code == 200, resp.get_json()
    return [item["id"] for item in resp.get_json()["items"]]


def submitted(app, user_id: int | None = None) -> list[Notification]:
    with app.app_context():
        stmt = sa.select(Notification).where(Notification.kind == "posting_submitted").order_by(Notification.id)
        if user_id is not None:
            stmt = stmt.where(Notification.user_id == user_id)
        rows = list(db.session.scalars(stmt))
        db.session.expunge_all()
        return rows


def post_wish(client, account, **overrides) -> int:
    resp = client.post("/api/v1/postings", json={**WISH, **overrides}, headers=account.headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["status"] == "pending_review"
    return resp.get_json()["id"]


# --- the queue ----------------------------------------------------------------------------------


def test_the_queue_holds_exactly_what_each_caller_may_review(app, client, roles):
    resident = make_user(app)
    far_wish = make_posting(app, resident, status="pending_review", org_id=roles["far_org_id"], district="yinzhou")
    other_org_wish = make_posting(app, resident, status="pending_review", org_id=roles["other_org_id"])
    own = make_posting(app, roles["coordinator"], status="pending_review", org_id=roles["org_id"])
    # posted last, but submitted first: the queue is oldest first
    district_wish = make_posting(app, resident, status="pending_review", created_at=NOW - timedelta(hours=1))
    make_posting(app, resident)  # open: not in the queue
    make_posting(app, resident, status="rejected")  # decided: not in the queue
    expected = {
        "coordinator": [district_wish],  # the district's org-less wish; never their own posting
        "other_coordinator": [district_wish, other_org_wish],
        "far_coordinator": [far_wish],
        "volunteer": [],
        "anonymous": [],
        "admin": [district_wish, far_wish, other_org_wish, own],
    }
    for role in ROLES:
        assert ids(client.get(QUEUE, headers=roles["headers"][role])) == expected[role], role
    # each item of the queue is one the caller may approve
    for role in ("coordinator", "other_coordinator", "far_coordinator"):
        for posting_id in expected[role]:
            assert client.get(f"/api/v1/postings/{posting_id}", headers=roles["headers"][role]).status_code == 200
    assert client.post(f"/api/v1/postings/{own}/approve", headers=roles["headers"]["coordinator"]).status_code == 403
    # the author finds their own postings under review with author_id
    mine = client.get(f"{QUEUE}&author_id={resident.id}", headers=resident.headers)
    assert ids(mine) == [other_org_wish, far_wish, district_wish]  # their list: newest first


def test_the_queue_pages_oldest_first_and_new_items_join_at_the_end(app, client, roles):
    resident = make_user(app)
    wishes = []
    for _ in range(5):
        wishes.append(make_posting(app, resident, status="pending_review"))
        clock.advance(timedelta(minutes=1))
    admin = roles["headers"]["admin"]
    first = client.get(f"{QUEUE}&limit=2", headers=admin).get_json()
    assert [i["id"] for i in first["items"]] == wishes[:2]
    late = make_posting(app, resident, status="pending_review")  # arrives between two pages
    seen, cursor = [i["id"] for i in first["items"]], first["next_cursor"]
    while cursor:
        page = client.get(f"{QUEUE}&limit=2&cursor={cursor}", headers=admin).get_json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [*wishes, late]
    # asked for, the usual order still applies; the queue's cursor does not fit it
    assert ids(client.get(f"{QUEUE}&sort=newest", headers=admin)) == [late, *reversed(wishes)]
    resp = client.get(f"{QUEUE}&sort=newest&cursor={first['next_cursor']}", headers=admin)
    assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor")


# --- who is told ----------------------------------------------------------------------------------


def test_a_residents_wish_tells_every_reviewer_of_its_district(app, client, roles):
    co_coordinator = make_user(app)
    add_member(app, roles["org_id"], co_coordinator, "coordinator")
    make_org(app, district="haishu", status="pending")  # an application's coordinator is not a reviewer yet
    resident = make_user(app)
    wish = post_wish(client, resident)
    told = submitted(app)
    assert sorted(n.user_id for n in told) == sorted(
        [roles["coordinator"].id, co_coordinator.id, roles["other_coordinator"].id, roles["admin"].id]
    )
    for row in told:
        assert row.data == {"kind": "posting_submitted", "posting_id": str(wish)}
        assert (row.title, row.body) == ("有新的发布待审核", "「想借一台轮椅」等待您审核。")
        assert row.push_status == "pending"
    set_locale(client, roles["coordinator"], "en")
    english = client.get("/api/v1/me/notifications", headers=roles["coordinator"].headers).get_json()["items"][0]
    assert (english["kind"], english["title"], english["body"]) == (
        "posting_submitted",
        "New posting to review",
        "“想借一台轮椅” is waiting for your review.",
    )
    # everyone told finds it in their queue
    for account in (roles["coordinator"], co_coordinator, roles["other_coordinator"], roles["admin"]):
        assert ids(client.get(QUEUE, headers=account.headers)) == [wish]


def test_a_wish_naming_an_org_tells_that_orgs_coordinators_and_the_admins(app, client, roles):
    member = roles["volunteer"]  # a member of the org may name it on their own wish
    wish = post_wish(client, member, org_id=roles["far_org_id"], district="yinzhou")
    assert sorted(n.user_id for n in submitted(app)) == sorted([roles["far_coordinator"].id, roles["admin"].id])
    assert all(n.data["posting_id"] == str(wish) for n in submitted(app))


def test_a_coordinator_of_the_district_posting_a_wish_of_their_own_is_not_told(app, client, roles):
    wish = post_wish(client, roles["coordinator"])  # a wish for themself, no org: it waits for review
    told = sorted(n.user_id for n in submitted(app))
    assert told == sorted([roles["other_coordinator"].id, roles["admin"].id])
    assert ids(client.get(QUEUE, headers=roles["coordinator"].headers)) == []
    assert ids(client.get(QUEUE, headers=roles["other_coordinator"].headers)) == [wish]


def test_an_edit_that_sends_a_wish_back_to_review_tells_the_reviewers_again(app, client, roles):
    resident = make_user(app)
    wish = post_wish(client, resident)
    approved = client.post(f"/api/v1/postings/{wish}/approve", headers=roles["coordinator"].headers)
    assert approved.status_code == 200
    clock.advance(timedelta(minutes=30))
    edited = client.patch(
        f"/api/v1/postings/{wish}",
        json={"district": "yinzhou", "title": "想借一台轮椅（鄞州）"},
        headers=resident.headers,
    )
    assert edited.get_json()["status"] == "pending_review"
    again = [n for n in submitted(app) if n.params["title"] == "想借一台轮椅（鄞州）"]
    # the reviewers of where the wish now is
    assert sorted(n.user_id for n in again) == sorted([roles["far_coordinator"].id, roles["admin"].id])
    assert all(n.push_status == "pending" and n.data["posting_id"] == str(wish) for n in again)
    # a coordinator's own edit does not send it back, and tells nobody
    before = len(submitted(app))
    assert client.post(f"/api/v1/postings/{wish}/approve", headers=roles["far_coordinator"].headers).status_code == 200
    client.patch(f"/api/v1/postings/{wish}", json={"title": "借轮椅"}, headers=roles["far_coordinator"].headers)
    assert len(submitted(app)) == before


# --- one push per reviewer per 10 minutes -----------------------------------------------------------


def test_pushes_are_coalesced_per_reviewer_and_the_inbox_keeps_every_item(app, client, roles):
    coordinator = roles["coordinator"]
    residents = [make_user(app) for _ in range(4)]
    post_wish(client, residents[0])
    clock.advance(timedelta(minutes=4))
    post_wish(client, residents[1])
    clock.advance(timedelta(minutes=5, seconds=59))
    post_wish(client, residents[2])  # 9:59 after the first push: still batched
    clock.advance(timedelta(seconds=1))
    post_wish(client, residents[3])  # 10 minutes after it: a push again
    rows = submitted(app, coordinator.id)
    assert [(r.push_status, r.last_error) for r in rows] == [
        ("pending", None),
        ("skipped", "batched"),
        ("skipped", "batched"),
        ("pending", None),
    ]
    assert len(client.get("/api/v1/me/notifications", headers=coordinator.headers).get_json()["items"]) == 4
    unread = client.get("/api/v1/me/notifications/unread-count", headers=coordinator.headers).get_json()
    assert unread == {"unread": 4}
    # every reviewer has their own window
    assert [r.push_status for r in submitted(app, roles["admin"].id)] == ["pending", "skipped", "skipped", "pending"]


def test_only_the_coalesced_kind_is_held_back(app, client, roles):
    resident = make_user(app)
    wish = post_wish(client, resident)
    post_wish(client, make_user(app))
    # another kind to the same coordinator right after is pushed as usual
    approved = client.post(f"/api/v1/postings/{wish}/approve", headers=roles["coordinator"].headers)
    assert approved.status_code == 200
    with app.app_context():
        approved_row = db.session.scalars(sa.select(Notification).where(Notification.kind == "posting_approved")).one()
        assert (approved_row.user_id, approved_row.push_status) == (resident.id, "pending")


def test_a_muted_reviewer_opens_no_window_and_quiet_hours_push_once_at_their_end(app, client, roles):
    coordinator, other = roles["coordinator"], roles["other_coordinator"]
    client.put(
        "/api/v1/me/notification-settings", json={"muted_kinds": ["posting_submitted"]}, headers=coordinator.headers
    )
    quiet = {"quiet_hours": {"start": "09:00", "end": "12:00"}}
    client.put("/api/v1/me/notification-settings", json=quiet, headers=other.headers)
    post_wish(client, make_user(app))
    clock.advance(timedelta(hours=1))  # 11:00 in Ningbo: still quiet for the other coordinator
    post_wish(client, make_user(app))
    assert [(r.push_status, r.last_error) for r in submitted(app, coordinator.id)] == [
        ("skipped", "muted"),
        ("skipped", "muted"),
    ]
    deferred = submitted(app, other.id)
    assert [(r.push_status, r.last_error) for r in deferred] == [("pending", None), ("skipped", "batched")]
    assert deferred[0].next_attempt_at == NOW + timedelta(hours=2)  # 12:00 in Ningbo
    # unmuted, the coordinator is pushed at once: muting opened no window
    client.put("/api/v1/me/notification-settings", json={"muted_kinds": []}, headers=coordinator.headers)
    clock.advance(timedelta(minutes=1))
    post_wish(client, make_user(app))
    assert submitted(app, coordinator.id)[-1].push_status == "pending"


def test_one_push_goes_out_per_reviewer_for_a_burst(app, client, roles):
    """End to end through the dispatcher: five wishes, one push per reviewer's phone."""
    with app.app_context():
        for role in ("coordinator", "other_coordinator", "admin"):
            db.session.add(Device(user_id=roles[role].id, token=f"token-{role}", platform="android", provider="fcm"))
        db.session.commit()
    for _ in range(5):
        post_wish(client, make_user(app))
        clock.advance(timedelta(seconds=30))
    with app.app_context():
        counts = dispatch_until_empty()
        from notifications.dispatch import current_router

        sent = Counter(message.token for message in current_router()["memory"].sent)
    assert sent == {"token-coordinator": 1, "token-other_coordinator": 1, "token-admin": 1}
    assert counts["sent"] == 3


def test_two_hundred_coordinators_cost_no_more_statements_than_one(app, client, roles):
    """The reviewers are found with one query and told with one INSERT and one
    window statement, however many there are."""

    def statements_for_a_wish() -> int:
        with app.app_context():
            engine = db.engine
        seen = []

        def count(_conn, _cursor, statement, *_args):
            seen.append(statement)

        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            post_wish(client, make_user(app))
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    clock.advance(timedelta(minutes=11))
    few = statements_for_a_wish()
    with app.app_context():
        now = utcnow()
        password = hash_password("x" * 12)
        stamps = {"created_at": now, "updated_at": now}
        users = [
            {"phone": f"+86137{i:08d}", "password_hash": password, "display_name": f"协调员{i}", "muted_kinds": []}
            for i in range(200)
        ]
        user_ids = db.session.scalars(sa.insert(User).returning(User.id), [{**u, **stamps} for u in users]).all()
        members = [{"org_id": roles["org_id"], "user_id": u, "role": "coordinator", **stamps} for u in user_ids]
        db.session.execute(sa.insert(OrgMember), members)
        db.session.commit()
    clock.advance(timedelta(minutes=11))
    many = statements_for_a_wish()
    assert many == few
    rows = submitted(app)
    latest = max(int(r.data["posting_id"]) for r in rows)
    told = [r for r in rows if int(r.data["posting_id"]) == latest]
    assert len(told) == 203  # the 200, the org's first coordinator, the other org's, the admin
    assert {r.push_status for r in told} == {"pending"}


# --- at the same moment (PostgreSQL) ----------------------------------------------------------------


def test_wishes_submitted_at_once_push_each_reviewer_once(app, roles, postgres_only):
    residents = [make_user(app) for _ in range(8)]
    calls = [("POST", "/api/v1/postings", r.headers, WISH) for r in residents]
    results = at_once(app, calls)
    assert [status for status, _ in results] == [201] * 8
    for role in ("coordinator", "other_coordinator", "admin"):
        rows = submitted(app, roles[role].id)
        assert len(rows) == 8, role  # the inbox keeps each
        assert Counter(r.push_status for r in rows) == {"pending": 1, "skipped": 7}, role
        assert {r.last_error for r in rows if r.push_status == "skipped"} == {"batched"}
    assert submitted(app, roles["far_coordinator"].id) == []
