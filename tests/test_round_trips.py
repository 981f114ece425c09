"""Round trips to PostgreSQL per request (``app.database``): the hot reads run
outside a transaction (no ``BEGIN``, no ``ROLLBACK``), a pooled connection is
checked without a ``SELECT 1`` before each use, and a server that hangs up on
the pool's connections costs no request an error.

Counted on the wire (``tests/wire.py``): the app talks to PostgreSQL through a
relay that counts what the client waits for.
"""

from __future__ import annotations

import time

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import _config_dict
from tests.factories import make_org, make_posting, make_user, make_volunteer
from tests.wire import WireCounter

pytestmark = pytest.mark.usefixtures("postgres_only")

HOME = (29.87, 121.55)
# within the first ring (1 km): one statement however few postings there are
NEARBY = "/api/v1/postings?near=29.87,121.55&radius_km=1&sort=distance&kind=wish"
WARM_UP = 6  # psycopg prepares a statement on its 5th run (one more round trip, once)


@pytest.fixture
def wire(app, db_url, photos_dir):
    """(an app on the ``app`` fixture's database, talking through a counting relay, the relay)."""
    counter = WireCounter(db_url)
    relayed = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": counter.url, "STORAGE_LOCAL_PATH": photos_dir})
    yield relayed, counter
    with relayed.app_context():
        db.engine.dispose()
    counter.close()


def counted(app, counter, method: str, url: str, **kwargs):
    """The answer to one request, and the (round trips, simple queries) it cost."""
    client = app.test_client()
    for _ in range(WARM_UP):
        client.open(url, method=method, **kwargs)
    counter.reset()
    resp = client.open(url, method=method, **kwargs)
    return resp, (counter.round_trips, list(counter.queries))


def test_a_feed_page_is_one_round_trip_and_a_posting_page_too(app, wire):
    relayed, counter = wire
    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish", tags=["助老"])
    page, (trips, queries) = counted(relayed, counter, "GET", NEARBY)
    assert page.status_code == 200 and [item["id"] for item in page.json["items"]] == [wish]
    # the page's statement alone: no pre-ping, no BEGIN, no ROLLBACK
    assert (trips, queries) == (1, [])
    one, (trips, queries) = counted(relayed, counter, "GET", f"/api/v1/postings/{wish}")
    assert one.status_code == 200 and one.json["tags"] == ["助老"]
    assert (trips, queries) == (1, [])


def test_a_signed_in_feed_page_adds_the_token_and_the_viewers_claims(app, wire):
    relayed, counter = wire
    resident = make_user(app)
    volunteer = make_volunteer(app)
    make_posting(app, resident, kind="wish")
    page, (trips, queries) = counted(relayed, counter, "GET", NEARBY, headers=volunteer.headers)
    assert page.status_code == 200 and len(page.json["items"]) == 1
    # the token's check (with the viewer's coordinator roles), the page, the viewer's claims
    assert (trips, queries) == (3, [])


def test_for_me_runs_outside_a_transaction(app, wire):
    relayed, counter = wire
    resident = make_user(app)
    me = make_volunteer(app, skills=["elderly"], home=HOME, push_radius_km=1)
    make_posting(app, resident, kind="wish", lat=HOME[0], lng=HOME[1], tags=["助老"])
    page, (trips, queries) = counted(relayed, counter, "GET", "/api/v1/postings?for_me=true", headers=me.headers)
    assert page.status_code == 200 and len(page.json["items"]) == 1
    # the token (with the viewer's roles), the 1 km ring of each tier (one skill
    # named, none; each leaving out the postings the viewer holds), the rows, the
    # viewer's claims on them
    assert queries == [] and trips == 5


def test_what_the_app_polls_is_read_outside_a_transaction(app, wire):
    """The signed-in user (with their roles) and the inbox's badge."""
    relayed, counter = wire
    coordinator = make_org(app)[1]
    me, (trips, queries) = counted(relayed, counter, "GET", "/api/v1/me", headers=coordinator.headers)
    assert me.status_code == 200 and "coordinator" in me.json["roles"]
    # the token's check (the roles in it), the avatar, the orgs the user belongs to
    assert (trips, queries) == (3, [])
    badge, (trips, queries) = counted(
        relayed, counter, "GET", "/api/v1/me/notifications/unread-count", headers=coordinator.headers
    )
    assert badge.status_code == 200 and (trips, queries) == (2, [])
    inbox, (trips, queries) = counted(relayed, counter, "GET", "/api/v1/me/notifications", headers=coordinator.headers)
    assert inbox.status_code == 200 and (trips, queries) == (2, [])


def test_writes_and_other_views_keep_their_transaction(app, wire):
    relayed, counter = wire
    resident = make_user(app)
    volunteer = make_volunteer(app)
    mine, (_, queries) = counted(relayed, counter, "GET", "/api/v1/me/claims", headers=volunteer.headers)
    assert mine.status_code == 200 and [query.split()[0] for query in queries] == ["BEGIN", "ROLLBACK"]
    wish = make_posting(app, resident, kind="wish")
    client = relayed.test_client()
    client.get(NEARBY)
    counter.reset()
    claimed = client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers)
    assert claimed.status_code == 201
    # (BEGIN names the isolation level once the pool has reset a connection's mode)
    assert [query.split()[0] for query in counter.queries] == ["BEGIN", "COMMIT"]


def test_a_server_that_hangs_up_costs_no_request_an_error(app, wire):
    """Every pooled connection closed by the server (a restart, the backends
    killed): the next requests, reads and writes, are answered as usual."""
    relayed, counter = wire
    resident = make_user(app)
    volunteers = [make_volunteer(app) for _ in range(2)]
    wishes = [make_posting(app, resident, kind="wish") for _ in range(2)]
    client = relayed.test_client()
    assert client.get(NEARBY).status_code == 200
    assert client.get("/api/v1/me", headers=volunteers[0].headers).status_code == 200
    counter.hang_up()
    page = client.get(NEARBY)
    assert page.status_code == 200 and sorted(item["id"] for item in page.json["items"]) == sorted(wishes)
    one = client.get(f"/api/v1/postings/{wishes[0]}")
    assert one.status_code == 200 and one.json["id"] == wishes[0]
    counter.hang_up()
    claim = client.post(f"/api/v1/postings/{wishes[1]}/claims", json={}, headers=volunteers[1].headers)
    assert claim.status_code == 201
    _assert_claim_stored(app, claim.json["id"], wishes[1])


def _assert_claim_stored(app, claim_id: int, posting_id: int) -> None:
    """The claim answered 201 is in the database, on its posting, and the posting counts it."""
    from app.models import Claim, Posting

    with app.app_context():
        claim = db.session.get(Claim, claim_id)
        assert claim is not None and claim.posting_id == posting_id and claim.status == "active"
        assert db.session.get(Posting, posting_id).claimed_count == 1


def test_backends_killed_on_the_server_cost_no_request_an_error(app):
    """The server ends the backends of the pool's connections (its last word is a
    FATAL message, then the end of the stream): the next requests are answered."""
    import sqlalchemy as sa

    resident = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, resident, kind="wish")
    client = app.test_client()
    for _ in range(3):
        assert client.get(NEARBY).status_code == 200
        assert client.get("/api/v1/me", headers=volunteer.headers).status_code == 200
        with app.app_context():
            killer = sa.create_engine(db.engine.url, poolclass=sa.pool.NullPool)
        with killer.connect() as conn:
            killed = conn.scalars(
                sa.text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'yongzhiyuan'"
                    " AND pid <> pg_backend_pid()"
                )
            ).all()
            terminate = sa.text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid")
            conn.execute(terminate, {"p": killed})
            # pg_terminate_backend only signals: the backend says its last word and
            # hangs up when it next runs. The guarantee is about what follows (as
            # after a restart, which answers again only once its backends are gone);
            # a request in the instant between is answered 503 with Retry-After.
            deadline = time.monotonic() + 30
            alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:p AS int[]))")
            while conn.scalar(alive, {"p": killed}):
                conn.commit()  # pg_stat_activity is read once per transaction
                assert time.monotonic() < deadline, "the terminated backends never exited"
                time.sleep(0.01)
        killer.dispose()
        assert killed
    page = client.get(NEARBY)
    assert page.status_code == 200 and [item["id"] for item in page.json["items"]] == [wish]
    one = client.get(f"/api/v1/postings/{wish}")
    assert one.status_code == 200 and one.json["id"] == wish
    claim = client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers)
    assert claim.status_code == 201
    _assert_claim_stored(app, claim.json["id"], wish)


def test_a_connection_idle_for_long_is_pinged_first(app, wire, monkeypatch):
    from app import database

    relayed, counter = wire
    make_posting(app, make_user(app), kind="wish")
    client = relayed.test_client()
    assert client.get(NEARBY).status_code == 200
    monkeypatch.setattr(database, "PING_IDLE_SECONDS", 0.0)
    counter.reset()
    assert client.get(NEARBY).status_code == 200
    assert counter.queries == ["SELECT 1"]
