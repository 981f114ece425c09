"""Calendar feeds (日历订阅): the secret URL, its rotation, and the RFC 5545 body.

The issue's "done when": the feed parses with ``icalendar``, has one event per
sign-up, and the old URL is 404 after rotation.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from icalendar import Calendar

from app import clock
from app.extensions import db
from app.models import CalendarFeed, IdempotencyKey, Posting
from tests.factories import make_claim, make_org, make_posting, make_user, make_volunteer, set_locale
from tests.moments import YEAR

NOW = datetime(YEAR, 11, 30, 4, 0, tzinfo=UTC)
MINE = "/api/v1/me/calendar"
SITE = {"lat": 29.871234, "lng": 121.551234}


def new_url(client, account) -> str:
    resp = client.post(MINE, headers=account.headers)
    assert resp.status_code == 201, resp.get_json()
    url = resp.get_json()["url"]
    assert url.startswith("http://localhost/api/v1/calendar/") and url.endswith(".ics")
    return url


def path_of(url: str) -> str:
    return url.removeprefix("http://localhost")


def events(resp) -> dict[str, object]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    calendar = Calendar.from_ical(resp.data)
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def uid(claim_id: int) -> str:
    return f"claim-{claim_id}@localhost"


@pytest.fixture
def signed_up(app):
    """A volunteer with sign-ups of every kind and state, and a neighbour with one of their own."""
    clock.freeze(NOW)
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    neighbour = make_volunteer(app)
    resident = make_user(app)
    start = NOW + timedelta(days=2)
    project = make_posting(
        app, coordinator, kind="project", org_id=org_id, title="社区垃圾分类宣传", address="海曙区鼓楼街道",
        starts_at=start, ends_at=start + timedelta(hours=3), **SITE,
    )  # fmt: skip
    charity = make_posting(
        app, coordinator, kind="charity", org_id=org_id, title="义卖", address=None, lat=None, lng=None
    )
    full = make_posting(app, coordinator, kind="project", org_id=org_id, title="满员的项目", capacity=1)
    service = make_posting(app, coordinator, kind="service", org_id=org_id, title="上门理发")
    wish = make_posting(app, resident, kind="wish", title="帮独居老人修水龙头", address="柳锦社区", **SITE)
    reward = make_posting(app, coordinator, kind="energy", org_id=org_id, title="大米一袋")
    past = make_posting(
        app, coordinator, kind="charity", org_id=org_id, title="上个月的活动",
        starts_at=NOW - timedelta(days=20), ends_at=NOW - timedelta(days=20) + timedelta(hours=2),
    )  # fmt: skip
    long_ago = make_posting(
        app, coordinator, kind="charity", org_id=org_id, title="很久以前的活动",
        starts_at=NOW - timedelta(days=40), ends_at=NOW - timedelta(days=40) + timedelta(hours=2),
    )  # fmt: skip
    claims = {
        "project": make_claim(app, project, volunteer),
        "charity": make_claim(app, charity, volunteer, status="withdrawn"),
        "waitlisted": make_claim(app, full, volunteer, status="waitlisted"),
        "service": make_claim(app, service, volunteer),
        "wish": make_claim(app, wish, volunteer),
        "reward": make_claim(app, reward, volunteer),
        "past": make_claim(app, past, volunteer, status="confirmed"),
        "long_ago": make_claim(app, long_ago, volunteer, status="confirmed"),
        "neighbour": make_claim(app, project, neighbour),
    }
    return {
        "volunteer": volunteer,
        "neighbour": neighbour,
        "coordinator": coordinator,
        "claims": claims,
        "postings": {"project": project, "wish": wish, "service": service},
        "start": start,
    }


def test_the_feed_has_one_event_per_sign_up(app, client, signed_up):
    claims = signed_up["claims"]
    resp = client.get(path_of(new_url(client, signed_up["volunteer"])))
    assert resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert resp.headers["Cache-Control"] == "private, max-age=900"
    assert resp.headers["ETag"]
    found = events(resp)
    expected = {uid(claims[name]) for name in ("project", "charity", "waitlisted", "service", "wish", "past")}
    assert set(found) == expected  # no reward, nothing over 30 days old, not the neighbour's

    project = found[uid(claims["project"])]
    assert project["DTSTART"].dt == signed_up["start"]
    assert project["DTEND"].dt == signed_up["start"] + timedelta(hours=3)
    assert project["DTSTART"].dt.tzinfo is not None and project["DTSTART"].dt.utcoffset() == timedelta(0)
    assert str(project["SUMMARY"]) == "社区垃圾分类宣传"
    assert str(project["LOCATION"]) == "海曙区鼓楼街道"
    assert (project["GEO"].latitude, project["GEO"].longitude) == (SITE["lat"], SITE["lng"])
    assert str(project["STATUS"]) == "CONFIRMED"
    assert project["LAST-MODIFIED"].dt and project["DTSTAMP"].dt
    body = resp.get_data(as_text=True)
    assert f"DTSTART:{signed_up['start']:%Y%m%dT%H%M%S}Z" in body

    withdrawn = found[uid(claims["charity"])]
    assert str(withdrawn["STATUS"]) == "CANCELLED"
    assert str(withdrawn["SUMMARY"]).startswith("【已退出】")
    assert "GEO" not in withdrawn and "LOCATION" not in withdrawn
    assert str(found[uid(claims["waitlisted"])]["STATUS"]) == "TENTATIVE"

    wish = found[uid(claims["wish"])]
    due = NOW + timedelta(hours=168)
    assert (wish["DTSTART"].dt, wish["DTEND"].dt) == (due - timedelta(minutes=30), due)
    assert str(wish["SUMMARY"]) == "截止：帮独居老人修水龙头"
    assert f"请在 {YEAR}-12-07 12:00 前完成" in str(wish["DESCRIPTION"])  # in Ningbo's time
    # A service booked with no time is shown when it was booked.
    service = found[uid(claims["service"])]
    assert (service["DTSTART"].dt, service["DTEND"].dt) == (NOW, NOW + timedelta(minutes=30))


def test_the_feed_speaks_its_owners_language(app, client, signed_up):
    claims = signed_up["claims"]
    url = path_of(new_url(client, signed_up["volunteer"]))
    chinese = client.get(url)
    set_locale(client, signed_up["volunteer"], "en")
    english = client.get(url, headers={"If-None-Match": chinese.headers["ETag"]})
    assert english.status_code == 200  # another language, another ETag
    found = events(english)
    assert str(found[uid(claims["charity"])]["SUMMARY"]).startswith("[withdrawn] ")
    wish = found[uid(claims["wish"])]
    assert str(wish["SUMMARY"]) == "Due: 帮独居老人修水龙头"
    assert "Status: active" in str(wish["DESCRIPTION"])
    assert f"Complete it by {YEAR}-12-07 12:00." in str(wish["DESCRIPTION"])


def test_another_users_claims_never_appear(app, client, signed_up):
    neighbour_events = events(client.get(path_of(new_url(client, signed_up["neighbour"]))))
    assert set(neighbour_events) == {uid(signed_up["claims"]["neighbour"])}
    mine = events(client.get(path_of(new_url(client, signed_up["volunteer"]))))
    assert uid(signed_up["claims"]["neighbour"]) not in mine


def test_a_new_url_replaces_the_old_one_and_delete_revokes_it(app, client, signed_up):
    volunteer = signed_up["volunteer"]
    first = new_url(client, volunteer)
    assert client.get(path_of(first)).status_code == 200
    second = new_url(client, volunteer)
    assert second != first
    gone = client.get(path_of(first))
    assert gone.status_code == 404 and gone.get_json()["error"] == "not_found"
    assert client.get(path_of(second)).status_code == 200

    assert client.delete(MINE, headers=volunteer.headers).status_code == 204
    assert client.get(path_of(second)).status_code == 404
    assert client.delete(MINE, headers=volunteer.headers).status_code == 204
    assert client.post(MINE).status_code == 401
    assert client.get("/api/v1/calendar/not-a-token.ics").status_code == 404


def test_only_the_tokens_hash_is_stored(app, client, signed_up):
    url = new_url(client, signed_up["volunteer"])
    token = url.rsplit("/", 1)[1].removesuffix(".ics")
    assert len(token) == 43  # 256 random bits
    with app.app_context():
        rows = db.session.scalars(sa.select(CalendarFeed)).all()
        assert [(r.user_id, r.token_hash) for r in rows] == [
            (signed_up["volunteer"].id, hashlib.sha256(token.encode()).hexdigest())
        ]


def test_a_new_url_is_never_replayed_from_the_idempotency_store(app, client, signed_up):
    headers = {**signed_up["volunteer"].headers, "Idempotency-Key": "calendar-1"}
    first = client.post(MINE, headers=headers).get_json()["url"]
    second = client.post(MINE, headers=headers).get_json()["url"]
    assert first != second
    assert client.get(path_of(second)).status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0


def test_if_none_match_answers_304_until_something_changes(app, client, signed_up):
    volunteer = signed_up["volunteer"]
    path = path_of(new_url(client, volunteer))
    first = client.get(path)
    etag = first.headers["ETag"]
    again = client.get(path)
    assert again.headers["ETag"] == etag and again.data == first.data

    unchanged = client.get(path, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    assert unchanged.headers["Cache-Control"] == "private, max-age=900"
    assert client.get(path, headers={"If-None-Match": f"W/{etag}"}).status_code == 304  # via a gzipping proxy
    assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200

    clock.advance(timedelta(minutes=5))
    withdrawn = client.post(f"/api/v1/claims/{signed_up['claims']['project']}/withdraw", headers=volunteer.headers)
    assert withdrawn.status_code == 200, withdrawn.get_json()
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    event = events(changed)[uid(signed_up["claims"]["project"])]
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["LAST-MODIFIED"].dt == NOW + timedelta(minutes=5)


def test_an_edited_posting_updates_its_event_under_the_same_uid(app, client, signed_up):
    path = path_of(new_url(client, signed_up["volunteer"]))
    etag = client.get(path).headers["ETag"]
    clock.advance(timedelta(minutes=1))
    with app.app_context():
        posting = db.session.get(Posting, signed_up["postings"]["project"])
        posting.title = "社区垃圾分类宣传（改到下午）"
        posting.starts_at = signed_up["start"] + timedelta(hours=5)
        posting.ends_at = signed_up["start"] + timedelta(hours=8)
        db.session.commit()
    resp = client.get(path, headers={"If-None-Match": etag})
    event = events(resp)[uid(signed_up["claims"]["project"])]
    assert str(event["SUMMARY"]) == "社区垃圾分类宣传（改到下午）"
    assert event["DTSTART"].dt == signed_up["start"] + timedelta(hours=5)


def test_the_window_is_thirty_days_back(app, client, signed_up):
    path = path_of(new_url(client, signed_up["volunteer"]))
    assert uid(signed_up["claims"]["past"]) in events(client.get(path))
    clock.advance(timedelta(days=11))
    assert uid(signed_up["claims"]["past"]) not in events(client.get(path))


def test_a_wish_point_is_exact_only_for_its_contacts(app, client, signed_up):
    volunteer = signed_up["volunteer"]
    path = path_of(new_url(client, volunteer))
    wish_uid = uid(signed_up["claims"]["wish"])
    geo = events(client.get(path))[wish_uid]["GEO"]
    assert (geo.latitude, geo.longitude) == (SITE["lat"], SITE["lng"])
    assert (
        client.post(f"/api/v1/claims/{signed_up['claims']['wish']}/withdraw", headers=volunteer.headers).status_code
        == 200
    )
    event = events(client.get(path))[wish_uid]
    assert (event["GEO"].latitude, event["GEO"].longitude) == (29.871, 121.551)
    assert str(event["STATUS"]) == "CANCELLED"


# --- rate limits ------------------------------------------------------------------------------------------------


@pytest.fixture
def limited(make_app):
    return lambda **config: make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://", **config)


def test_a_feed_url_is_rate_limited(limited, signed_up):
    client = limited(RATELIMIT_CALENDAR_FEED="2/hour").test_client()
    mine = path_of(new_url(client, signed_up["volunteer"]))
    theirs = path_of(new_url(client, signed_up["neighbour"]))
    assert [client.get(mine).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get(theirs).status_code == 200  # its own budget


def test_unknown_feed_urls_are_rate_limited_per_ip(limited, signed_up):
    client = limited(RATELIMIT_CALENDAR_MISS_IP="2/minute").test_client()
    mine = path_of(new_url(client, signed_up["volunteer"]))
    scanner, calendar_service = {"REMOTE_ADDR": "10.0.0.9"}, {"REMOTE_ADDR": "10.0.0.1"}
    # Hits do not count against the address.
    assert [client.get(mine, environ_base=calendar_service).status_code for _ in range(3)] == [200] * 3
    guesses = [client.get(f"/api/v1/calendar/{'x' * 43}.ics", environ_base=scanner).status_code for _ in range(3)]
    assert guesses == [404, 404, 429]
    assert client.get(mine, environ_base=calendar_service).status_code == 200


# --- races ------------------------------------------------------------------------------------------------------


def test_two_new_urls_at_once_leave_one_working(app, postgres_only):
    from tests.test_races import at_once

    account = make_user(app)
    results = at_once(app, [("POST", MINE, account.headers, None)] * 2)
    assert [status for status, _ in results] == [201, 201]
    client = app.test_client()
    working = [client.get(path_of(body["url"])).status_code for _, body in results]
    assert sorted(working) == [200, 404]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(CalendarFeed)) == 1
