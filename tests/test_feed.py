"""The wish wall GET /postings: filters, keyset pages under inserts, nearby search and its index."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.geo import approximate, geocell_for, haversine_km
from app.models import Posting
from tests.database import fill_city
from tests.factories import make_org, make_posting, make_user
from tests.moments import YEAR

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)
CENTRE = (29.87, 121.55)  # 鼓楼, Ningbo


def ids(resp) -> list[int]:
    assert resp.status_code == 200, resp.get_json()
    return [item["id"] for item in resp.get_json()["items"]]


def walk(client, url: str, headers=None, between_pages=None) -> list[dict]:
    """Every item of every page of ``url``, calling ``between_pages`` after each page."""
    items, cursor, pages = [], None, 0
    while True:
        sep = "&" if "?" in url else "?"
        resp = client.get(url + (f"{sep}cursor={cursor}" if cursor else ""), headers=headers or {})
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        items.extend(body["items"])
        pages += 1
        assert pages < 200
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        if between_pages:
            between_pages(pages)


@pytest.fixture
def author(app):
    clock.freeze(NOW)
    return make_user(app)


# --- filters ---------------------------------------------------------------------------


def test_the_feed_is_public_and_shows_open_postings_newest_first(app, client, author):
    first = make_posting(app, author)
    clock.advance(timedelta(minutes=1))
    second = make_posting(app, author, kind="service")
    for status in ("pending_review", "rejected", "cancelled", "expired", "closed", "claimed"):
        make_posting(app, author, status=status)
    resp = client.get("/api/v1/postings")
    assert ids(resp) == [second, first]
    assert resp.get_json()["next_cursor"] is None
    item = resp.get_json()["items"][1]
    assert item["distance_km"] is None
    assert item["author"] == {"id": author.id, "display_name": item["author"]["display_name"]}


def test_filters_combine(app, client, author):
    org_id, coordinator = make_org(app, district="yinzhou")
    rng = random.Random(7)
    kinds = ("wish", "project", "charity", "service", "energy")
    districts = ("haishu", "yinzhou", "jiangbei")
    tag_pool = ("助老", "助学", "环保", "维修")
    rows = []
    for _ in range(80):
        kind = rng.choice(kinds)
        district = rng.choice(districts)
        tags = rng.sample(tag_pool, rng.randint(0, 2))
        status = rng.choice(("open", "open", "open", "claimed", "expired"))
        with_org = rng.random() < 0.4
        posting_id = make_posting(
            app,
            coordinator if with_org else author,
            kind=kind,
            district=district,
            tags=tags,
            status=status,
            org_id=org_id if with_org else None,
        )
        clock.advance(timedelta(seconds=1))
        rows.append(
            {"id": posting_id, "kind": kind, "district": district, "tags": tags, "status": status, "org": with_org}
        )

    def expect(kinds_=None, statuses=("open",), district=None, tags=None, org=None):
        return [
            r["id"]
            for r in sorted(rows, key=lambda r: -r["id"])
            if (not kinds_ or r["kind"] in kinds_)
            and r["status"] in statuses
            and (district is None or r["district"] == district)
            and (not tags or set(tags) & set(r["tags"]))
            and (org is None or r["org"] == org)
        ]

    cases = [
        ("", expect()),
        ("?kind=wish", expect(["wish"])),
        ("?kind=wish&kind=energy", expect(["wish", "energy"])),
        ("?kind=project&district=haishu", expect(["project"], district="haishu")),
        ("?tag=助老", expect(tags=["助老"])),
        ("?tag=助老&tag=环保&district=yinzhou", expect(tags=["助老", "环保"], district="yinzhou")),
        (f"?org_id={org_id}&kind=service&kind=wish", expect(["service", "wish"], org=True)),
        ("?status=expired", expect(statuses=("expired",))),
        ("?status=open&status=claimed&tag=维修", expect(statuses=("open", "claimed"), tags=["维修"])),
        (f"?author_id={author.id}&kind=charity", expect(["charity"], org=False)),
    ]
    for query, expected in cases:
        got = [item["id"] for item in walk(client, f"/api/v1/postings{query}{'&' if query else '?'}limit=7")]
        assert got == expected, query
        assert expected or query == "", "each case should select something"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("kind=gift", "kind"),
        ("status=lost", "status"),
        ("district=chaoyang", "district"),
        ("sort=distance", "sort"),
        ("sort=random", "sort"),
        ("near=29.87", "near"),
        ("near=abc,def", "near"),
        ("near=91,121", "near"),
        ("near=29.87,121.55&radius_km=51", "radius_km"),
        ("near=29.87,121.55&radius_km=0", "radius_km"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("org_id=x", "org_id"),
    ],
)
def test_bad_queries_are_422(client, query, field):
    resp = client.get(f"/api/v1/postings?{query}")
    assert resp.status_code == 422, resp.get_json()
    body = resp.get_json()
    assert body["error"] == "validation_error"
    assert field in body["errors"]["query"]


def test_a_cursor_belongs_to_its_sort_order(app, client, author):
    for _ in range(3):
        make_posting(app, author)
    cursor = client.get("/api/v1/postings?limit=1").get_json()["next_cursor"]
    assert cursor
    resp = client.get(f"/api/v1/postings?limit=1&sort=ending_soon&cursor={cursor}")
    assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        # well-formed but unsigned: what a forger would send (a huge id, a wrong type)
        "WyJuZXdlc3QiLHsiZHQiOiIyMDI2LTExLTI2VDEwOjAwOjAwKzAwOjAwIn0sMTAwMDAwMDAwMDAwMDAwMDAwMDAwXQ",
        "WyJuZXdlc3QiLCJ4IiwieSJd",
        "",
    ],
)
def test_a_forged_cursor_is_400_invalid_cursor(client, cursor):
    resp = client.get(f"/api/v1/postings?cursor={cursor}")
    if cursor:
        assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor")
    else:
        assert resp.status_code == 200


def test_a_cursor_signed_with_an_older_key_is_stale(app, client, author):
    for _ in range(3):
        make_posting(app, author)
    cursor = client.get("/api/v1/postings?limit=1").get_json()["next_cursor"]
    app.config["SECRET_KEY"] = "a-rotated-secret-key-long-enough-for-all-uses"
    resp = client.get(f"/api/v1/postings?limit=1&cursor={cursor}")
    assert (resp.status_code, resp.get_json()["error"]) == (400, "invalid_cursor")


# --- pages stay stable while rows are inserted ------------------------------------------


@pytest.mark.parametrize("sort", ["newest", "ending_soon", "distance"])
def test_pages_neither_repeat_nor_lose_items_while_rows_are_inserted(app, client, author, sort):
    rng = random.Random(sort)
    # equal sort values on purpose: the id breaks ties
    expiries = [NOW + timedelta(days=rng.choice((1, 2, 3))) for _ in range(30)]
    points = [(CENTRE[0] + rng.choice((0, 0.005, 0.01)), CENTRE[1]) for _ in range(30)]
    original = set()
    for i in range(30):
        original.add(make_posting(app, author, expires_at=expiries[i], lat=points[i][0], lng=points[i][1]))
        if i % 3 == 0:
            clock.advance(timedelta(seconds=1))  # several rows share a created_at

    def insert_more(page: int) -> None:
        # new rows everywhere in the order: before, between and after the cursor
        for _ in range(3):
            clock.advance(timedelta(seconds=1))
            make_posting(
                app,
                author,
                expires_at=NOW + timedelta(days=rng.choice((1, 2, 3, 4))),
                lat=CENTRE[0] + rng.choice((0, 0.005, 0.01, 0.02)),
                lng=CENTRE[1],
            )

    near = "&near=29.87,121.55&radius_km=5" if sort == "distance" else ""
    items = walk(client, f"/api/v1/postings?limit=4&sort={sort}{near}", between_pages=insert_more)
    seen = [item["id"] for item in items]
    assert len(seen) == len(set(seen)), "an item came twice"
    assert original <= set(seen), "an item was lost"
    keys = {
        "newest": lambda it: (-datetime.fromisoformat(it["created_at"]).timestamp(), -it["id"]),
        "ending_soon": lambda it: (it["expires_at"], it["id"]),
        "distance": lambda it: (it["distance_km"], it["id"]),
    }[sort]
    assert items == sorted(items, key=keys)


def test_ending_soon_puts_postings_without_an_end_last(app, client, author):
    never = make_posting(app, author, kind="service")
    late = make_posting(app, author, expires_at=NOW + timedelta(days=20))
    project = make_posting(app, author, kind="project")  # no expiry: ends in 2 days + 3 h
    soon = make_posting(app, author, expires_at=NOW + timedelta(days=1))
    got = [item["id"] for item in walk(client, "/api/v1/postings?sort=ending_soon&limit=1")]
    assert got == [soon, project, late, never]


# --- nearby -------------------------------------------------------------------------------


def _scatter(app, author, n: int, seed: int, spread: float = 0.12) -> dict[int, tuple[float, float]]:
    """n open postings at random points around the centre, some exactly on it:
    each with the point a search measures it from (a wish's rounded point)."""
    rng = random.Random(seed)
    points = {}
    for i in range(n):
        if i < 3:
            lat, lng = CENTRE
        else:
            lat = CENTRE[0] + rng.uniform(-spread, spread)
            lng = CENTRE[1] + rng.uniform(-spread, spread)
        kind = rng.choice(("wish", "service"))
        points[make_posting(app, author, lat=lat, lng=lng, kind=kind)] = (
            approximate(lat, lng) if kind == "wish" else (lat, lng)
        )
    return points


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "radius"), [(1, 3.0), (2, 5.5), (3, 0.8), (4, 12.0)])
def test_distance_order_and_radius_match_brute_force(app, client, author, seed, radius):
    points = _scatter(app, author, 150, seed)
    rng = random.Random(seed * 100)
    for _ in range(3):
        lat = CENTRE[0] + rng.uniform(-0.05, 0.05)
        lng = CENTRE[1] + rng.uniform(-0.05, 0.05)
        truth = sorted(
            (haversine_km(lat, lng, plat, plng), pid)
            for pid, (plat, plng) in points.items()
            if haversine_km(lat, lng, plat, plng) <= radius
        )
        items = walk(client, f"/api/v1/postings?near={lat},{lng}&radius_km={radius}&sort=distance&limit=9")
        assert [item["id"] for item in items] == [pid for _, pid in truth]
        for item, (km, _) in zip(items, truth, strict=True):
            # wishes: strangers see the distance to 0.1 km (see test_postings, privacy)
            assert item["distance_km"] == pytest.approx(km, abs=0.05 + 1e-9)
        # the same set under the default order, each with its distance
        newest = walk(client, f"/api/v1/postings?near={lat},{lng}&radius_km={radius}&limit=50")
        assert sorted(item["id"] for item in newest) == sorted(pid for _, pid in truth)
        assert all(item["distance_km"] is not None for item in newest)


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 20])
def test_nearest_first_pages_walk_out_through_the_rings(app, client, author, limit):
    """sort=distance reads ring by ring (1, 3, 10, 50 km) and stops at the first
    ring that fills the page; points on, inside and outside each ring's edge,
    paged by every size, still come out complete and in order."""
    km_north = [0.3, 0.999, 1.0, 1.001, 2.5, 3.0, 3.2, 9.0, 10.0, 10.4, 24.0, 49.0]
    points = {}
    for km in km_north:
        lat = CENTRE[0] + km / 111.195  # app.geo's Earth: 111.195 km a degree of latitude
        points[make_posting(app, author, lat=lat, lng=CENTRE[1])] = lat
    truth = sorted((haversine_km(*CENTRE, lat, CENTRE[1]), pid) for pid, lat in points.items())
    url = f"/api/v1/postings?near={CENTRE[0]},{CENTRE[1]}&radius_km=50&sort=distance&limit={limit}"
    assert [item["id"] for item in walk(client, url)] == [pid for _, pid in truth]
    within_ten = [pid for km, pid in truth if km <= 10.0]
    url = f"/api/v1/postings?near={CENTRE[0]},{CENTRE[1]}&radius_km=10&sort=distance&limit={limit}"
    assert [item["id"] for item in walk(client, url)] == within_ten


def test_radius_boundary_and_default(app, client, author):
    # along a meridian: 1 degree of latitude is 111.195 km on the mean sphere
    # (services: at a public venue, searched on their exact point; wishes: test_place_privacy)
    inside = make_posting(app, author, kind="service", lat=CENTRE[0] + 2.99 / 111.195, lng=CENTRE[1])
    outside = make_posting(app, author, kind="service", lat=CENTRE[0] + 3.01 / 111.195, lng=CENTRE[1])
    no_place = make_posting(app, author, lat=None, lng=None)
    got = ids(client.get("/api/v1/postings?near=29.87,121.55"))  # radius 3 km by default
    assert got == [inside]
    got = ids(client.get("/api/v1/postings?near=29.87,121.55&radius_km=3.02"))
    assert sorted(got) == sorted([inside, outside])
    assert no_place in ids(client.get("/api/v1/postings"))


def test_nearby_with_filters(app, client, author):
    wish = make_posting(app, author, tags=["助老"])
    make_posting(app, author, kind="service", tags=["助老"])
    make_posting(app, author, tags=["助学"])
    make_posting(app, author, tags=["助老"], district="yinzhou")
    make_posting(app, author, tags=["助老"], lat=30.2, lng=121.55)  # 37 km north
    got = ids(client.get("/api/v1/postings?near=29.871,121.551&kind=wish&tag=助老&district=haishu&sort=distance"))
    assert got == [wish]


def test_geocell_follows_every_write(app, author):
    posting_id = make_posting(app, author, lat=29.9, lng=121.6)
    with app.app_context():
        assert db.session.get(Posting, posting_id).geocell == geocell_for(29.9, 121.6)


# --- the nearby query uses the index (PostgreSQL) --------------------------------------------


def test_the_nearby_query_reads_the_geocell_index(app, client, author, postgres_only):
    from app.services.feed import Near, list_postings
    from app.services.permissions import Actor

    with app.app_context():
        fill_city(60_000)
        with db.engine.connect() as conn:
            captured = []

            def capture(_conn, _cursor, statement, parameters, _context, _many):
                if "FROM postings" in statement and "distance_km" in statement:
                    captured.append((statement, parameters))

            sa.event.listen(db.engine, "before_cursor_execute", capture)
            try:
                items, _ = list_postings(Actor(None), kinds=["wish"], near=Near(29.87, 121.55, 3.0), sort="distance")
            finally:
                sa.event.remove(db.engine, "before_cursor_execute", capture)
            assert items and all(item.distance_km <= 3.0 for item in items)
            statement, parameters = captured[0]
            raw = conn.connection.driver_connection
            with raw.cursor() as cursor:
                cursor.execute("EXPLAIN (FORMAT TEXT) " + statement, parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
    print(plan)
    # one scan of the geocell index, answered from the index alone; the heap is
    # read by primary key for the page's rows only, and so are their tags and
    # photos (however the planner reads a handful of rows by key)
    assert "Index Only Scan using ix_postings_status_kind_geocell" in plan, plan
    assert "geocell = ANY" in plan, plan
    assert "Index Scan using pk_postings" in plan, plan
    assert "Seq Scan" not in plan and "Bitmap Heap Scan on postings" not in plan, plan
    assert plan.count("Index Cond: (posting_id = postings.id)") == 2, plan


def test_ending_soon_reads_its_index_city_wide(app, client, author, postgres_only):
    """sort=ending_soon over every kind walks ix_postings_status_ending_at in
    order and stops at the page, instead of sorting every open posting; the
    constant it ends with is written into the SQL, as the index has it."""
    from tests.database import recorded

    with app.app_context():
        fill_city(60_000)
    with recorded(app) as seen:
        resp = client.get("/api/v1/postings?sort=ending_soon&limit=20")
    assert resp.status_code == 200 and len(resp.get_json()["items"]) == 20
    statement, parameters = next((s, p) for s, p in seen if "coalesce(postings.expires_at" in s)
    assert "9999-12-31" in statement
    with app.app_context(), db.engine.connect() as conn:
        with conn.connection.driver_connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT TEXT) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "ix_postings_status_ending_at" in plan, plan
    print(plan)
    assert "Sort" not in plan, plan
