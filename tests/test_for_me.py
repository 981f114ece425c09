"""For me (为我推荐): open postings near a volunteer's home, best match first, in keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.geo import KM_PER_DEG_LAT, approximate, geocell_for, haversine_km
from app.models import Posting, PostingTag
from tests.database import analyze, fill_city, recorded
from tests.factories import make_claim, make_org, make_posting, make_user, make_volunteer
from tests.moments import YEAR

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)
HOME = (29.87, 121.55)
URL = "/api/v1/postings?for_me=true"


def north(km: float) -> tuple[float, float]:
    return HOME[0] + km / KM_PER_DEG_LAT, HOME[1]


@pytest.fixture
def org(app):
    clock.freeze(NOW)
    return make_org(app)


def post(app, author, km: float, **fields) -> int:
    lat, lng = north(km)
    return make_posting(app, author, lat=lat, lng=lng, **fields)


def page(client, account, query: str = "") -> dict:
    resp = client.get(URL + query, headers=account.headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def ids(body: dict) -> list[int]:
    return [item["id"] for item in body["items"]]


def test_skills_first_then_distance_within_the_radius_and_open_only(app, client, org):
    org_id, coordinator = org
    me = make_volunteer(app, skills=["elderly"], home=HOME, push_radius_km=3)
    other = make_volunteer(app)
    matching = post(app, coordinator, 2.0, title="陪老人散步", tags=["助老", "陪伴"])
    plain = post(app, coordinator, 0.5, title="搬书")
    project = post(app, coordinator, 1.0, kind="project", org_id=org_id, tags=["elderly"])
    beyond = post(app, coordinator, 3.5, tags=["助老"])
    closed = post(app, coordinator, 0.2, status="closed", tags=["助老"])
    taken = post(app, coordinator, 0.3)
    make_claim(app, taken, other)  # claimed: no longer open
    held = post(app, coordinator, 0.4, kind="charity", org_id=org_id)
    make_claim(app, held, me)
    mine = post(app, me, 0.1, tags=["助老"])
    service = post(app, coordinator, 0.6, kind="service", tags=["助老"])
    energy = post(app, coordinator, 0.7, kind="energy", org_id=org_id)
    pending = post(app, coordinator, 0.8, status="pending_review")
    nowhere = make_posting(app, coordinator, lat=None, lng=None, tags=["助老"])

    body = page(client, me)
    assert ids(body) == [project, matching, plain]
    assert body["next_cursor"] is None
    first, second, third = body["items"]
    assert first["match"] == {"skills": ["elderly"], "distance_km": 1.0}
    assert second["match"] == {"skills": ["elderly"], "distance_km": 2.0} and second["distance_km"] == 2.0
    # a wish is measured from its rounded point (about 100 m): to 0.1 km
    assert third["match"] == {"skills": [], "distance_km": round(haversine_km(*HOME, *approximate(*north(0.5))), 1)}
    left_out = {beyond, closed, taken, held, mine, service, energy, pending, nowhere}
    assert left_out.isdisjoint(ids(body))

    # the plain feed never carries a match
    feed = client.get("/api/v1/postings", headers=me.headers).get_json()
    assert all(item["match"] is None for item in feed["items"])


def test_more_skills_matched_rank_first_then_the_nearest_deadline(app, client, org):
    _, coordinator = org
    me = make_volunteer(app, skills=["elderly", "repair", "driving"], home=HOME, push_radius_km=10)
    both = post(app, coordinator, 8.0, tags=["维修", "助老", "elderly"])  # two tags name the same skill
    one_far = post(app, coordinator, 3.0, tags=["driving"])
    soon = post(app, coordinator, 1.0, tags=["repair"], expires_at=NOW + timedelta(days=2))
    later = post(app, coordinator, 1.0, tags=["repair"], expires_at=NOW + timedelta(days=9))
    never = post(app, coordinator, 1.0, tags=["repair"], expires_at=None)
    none = post(app, coordinator, 0.1)

    body = page(client, me)
    assert ids(body) == [both, soon, later, never, one_far, none]
    assert body["items"][0]["match"]["skills"] == ["elderly", "repair"]


def test_a_volunteer_without_skills_gets_the_nearest_first(app, client, org):
    _, coordinator = org
    me = make_volunteer(app, skills=[], home=HOME, push_radius_km=50)
    far = post(app, coordinator, 40.0, tags=["助老"])
    near = post(app, coordinator, 0.5)
    middle = post(app, coordinator, 5.0)
    assert ids(page(client, me)) == [near, middle, far]


def test_pages_never_repeat_or_skip_while_postings_open(app, client, org):
    """Keyset pages over (skills matched, distance, deadline, id), across tiers and rings."""
    org_id, coordinator = org
    me = make_volunteer(app, skills=["elderly", "repair"], home=HOME, push_radius_km=30)
    tags_by_tier = {2: ["助老", "repair"], 1: ["elderly"], 0: []}
    placed = {}
    for tier, tags in tags_by_tier.items():
        for km in (0.4, 2.5, 2.5, 7.0, 25.0):
            placed[post(app, coordinator, km, tags=tags, title=f"{tier}-{km}")] = (tier, km)

    originals = set(placed)
    seen: list[int] = []
    cursor = None
    while True:
        body = page(client, me, f"&limit=2&cursor={cursor}" if cursor else "&limit=2")
        seen += ids(body)
        for item in body["items"]:
            assert item["match"]["distance_km"] == item["distance_km"]
        # postings opening between pages, before and after the cursor
        for tier, km in ((2, 0.1), (0, 28.0)):
            placed[post(app, coordinator, km, tags=tags_by_tier[tier], title=f"new {tier}-{km}")] = (tier, km)
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen))
    assert originals <= set(seen)
    order = [placed[posting_id] for posting_id in seen]
    assert order == sorted(order, key=lambda place: (-place[0], place[1]))


def test_kind_narrows_it(app, client, org):
    org_id, coordinator = org
    me = make_volunteer(app, home=HOME)
    post(app, coordinator, 0.5)
    project = post(app, coordinator, 1.0, kind="project", org_id=org_id)
    assert ids(page(client, me, "&kind=project")) == [project]
    resp = client.get(URL + "&kind=service", headers=me.headers)
    assert resp.status_code == 422 and "kind" in resp.get_json()["errors"]["query"]


def test_who_may_ask(app, client, org):
    assert client.get(URL).get_json()["error"] == "authorization_required"
    assert client.get(URL).status_code == 401
    resident = make_user(app)
    resp = client.get(URL, headers=resident.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (403, "volunteer_required")
    homeless = make_volunteer(app, home=None)
    resp = client.get(URL, headers=homeless.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (422, "home_required")
    assert "for_me" in resp.get_json()["errors"]["query"]


@pytest.mark.parametrize(
    "extra", ["&near=29.87,121.55", "&sort=distance&near=29.87,121.55", "&status=closed", "&tag=x"]
)
def test_for_me_has_its_own_place_and_order(app, client, org, extra):
    me = make_volunteer(app, home=HOME)
    resp = client.get(URL + extra, headers=me.headers)
    assert resp.status_code == 422
    assert resp.get_json()["error"] == "validation_error"


def test_a_cursor_of_another_order_is_refused(app, client, org):
    _, coordinator = org
    me = make_volunteer(app, home=HOME)
    for km in (0.5, 1.0, 1.5):
        post(app, coordinator, km)
    newest = client.get("/api/v1/postings?limit=1").get_json()["next_cursor"]
    nearest = client.get("/api/v1/postings?limit=1&near=29.87,121.55&sort=distance").get_json()["next_cursor"]
    for cursor in (newest, nearest, "not-a-cursor"):
        resp = client.get(f"{URL}&cursor={cursor}", headers=me.headers)
        assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor"), cursor
    mine = page(client, me, "&limit=1")["next_cursor"]
    resp = client.get(f"/api/v1/postings?near=29.87,121.55&sort=distance&cursor={mine}")
    assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor")


def test_tags_carry_the_point_of_a_live_posting_only(app, client, org):
    """The tag index "for me" searches holds live postings, at their current place."""
    org_id, coordinator = org

    def tag_points(posting_id: int) -> set[tuple]:
        with app.app_context():
            rows = db.session.execute(
                sa.select(PostingTag.tag, PostingTag.lat, PostingTag.lng, PostingTag.geocell).where(
                    PostingTag.posting_id == posting_id
                )
            )
            return set(rows.tuples())

    body = {
        "kind": "wish",
        "title": "陪老人聊天",
        "description": "每周一次",
        "district": "haishu",
        "org_id": org_id,
        "location": {"lat": 29.87, "lng": 121.55},
        "tags": ["助老"],
    }
    wish = client.post("/api/v1/postings", json=body, headers=coordinator.headers).get_json()["id"]
    assert tag_points(wish) == {("助老", 29.87, 121.55, geocell_for(29.87, 121.55))}
    patch = client.patch(
        f"/api/v1/postings/{wish}", json={"location": {"lat": 29.9, "lng": 121.6}}, headers=coordinator.headers
    )
    assert patch.status_code == 200
    assert tag_points(wish) == {("助老", 29.9, 121.6, geocell_for(29.9, 121.6))}
    patch = client.patch(f"/api/v1/postings/{wish}", json={"tags": ["维修", "助老"]}, headers=coordinator.headers)
    assert patch.status_code == 200
    place = (29.9, 121.6, geocell_for(29.9, 121.6))
    assert tag_points(wish) == {("维修", *place), ("助老", *place)}
    assert client.post(f"/api/v1/postings/{wish}/cancel", json={}, headers=coordinator.headers).status_code == 200
    assert tag_points(wish) == {("维修", None, None, None), ("助老", None, None, None)}

    service = client.post(
        "/api/v1/postings",
        json={**body, "kind": "service", "title": "上门理发", "capacity": 3},
        headers=coordinator.headers,
    )
    assert service.status_code == 201, service.get_json()
    assert tag_points(service.get_json()["id"]) == {("助老", None, None, None)}


def test_postings_that_end_leave_the_tag_index(app, client, org):
    org_id, coordinator = org
    volunteer = make_volunteer(app)
    project = post(app, coordinator, 1.0, kind="project", org_id=org_id, tags=["events"])
    wish = post(app, coordinator, 1.0, tags=["events"], expires_at=NOW + timedelta(days=1))
    claimed = post(app, coordinator, 1.0, tags=["events"])
    claim_id = make_claim(app, claimed, volunteer, status="fulfilled")
    assert (
        client.post(f"/api/v1/claims/{claim_id}/confirm", json={"rating": 5}, headers=coordinator.headers).status_code
        == 200
    )
    clock.advance(timedelta(days=3))
    assert app.test_cli_runner().invoke(args=["jobs", "run", "expire_postings"]).exit_code == 0
    with app.app_context():
        rows = db.session.execute(sa.select(Posting.id, Posting.status).where(Posting.id.in_([project, wish, claimed])))
        statuses = dict(rows.tuples().all())
        placed = db.session.scalars(sa.select(PostingTag.posting_id).where(PostingTag.geocell.is_not(None))).all()
    assert statuses == {project: "closed", wish: "expired", claimed: "closed"}
    assert placed == []


# --- "for me" reads indexes (PostgreSQL) ------------------------------------------------------


def _tag_city() -> None:
    """Tags on two postings in three: 助老 or 维修, with their point while live (as the app writes them)."""
    db.session.execute(
        sa.text(
            """
            INSERT INTO posting_tags (posting_id, tag, position, lat, lng, geocell)
            SELECT id, CASE WHEN id % 3 = 0 THEN '助老' ELSE '维修' END, 0,
                   CASE WHEN live THEN lat END, CASE WHEN live THEN lng END, CASE WHEN live THEN geocell END
            FROM (SELECT id, lat, lng, geocell,
                         kind IN ('wish', 'project', 'charity') AND status IN ('open', 'claimed') AS live
                  FROM postings WHERE id % 3 <> 1) AS p
            """
        )
    )
    db.session.commit()
    analyze("posting_tags")


def test_for_me_reads_the_tag_index_and_the_geocell_index(app, org, postgres_only):
    from app.models import User
    from app.services.matching import postings_for_me
    from app.services.permissions import Actor

    skilled = make_volunteer(app, skills=["elderly", "translation"], home=HOME, push_radius_km=3)
    unmatched = make_volunteer(app, skills=["translation"], home=HOME, push_radius_km=3)  # no posting names it
    with app.app_context():
        fill_city(60_000)
        _tag_city()
    plans = []
    for account in (skilled, unmatched):
        with recorded(app) as seen, app.app_context():
            items, _ = postings_for_me(Actor(db.session.get(User, account.id)), limit=20)
            assert len(items) == 20 and all(item.distance_km <= 3.0 for item in items)
            raw = db.session.connection().connection.driver_connection
            for statement, parameters in seen:
                if "candidate" in statement:
                    with raw.cursor() as cursor:
                        cursor.execute("EXPLAIN (FORMAT TEXT) " + statement, parameters)
                        plans.append("\n".join(row[0] for row in cursor.fetchall()))
    named = [plan for plan in plans if "Group" in plan]
    unnamed = [plan for plan in plans if "Group" not in plan]
    assert named and unnamed, plans
    for plan in named:
        # the tags that name a skill, around home, from the index alone; then those postings by key
        assert "Index Only Scan using ix_posting_tags_tag_geocell" in plan, plan
        assert "geocell = ANY" in plan and "Index Scan using pk_postings" in plan, plan
    for plan in unnamed:
        # the postings that name none: the geocell index alone, their tags probed by key
        assert "Index Only Scan using ix_postings_status_kind_geocell" in plan, plan
        assert "pk_posting_tags" in plan, plan
    for plan in plans:
        assert "Seq Scan" not in plan and "Bitmap Heap Scan" not in plan, plan
