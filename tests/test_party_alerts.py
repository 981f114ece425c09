"""Wishes reach party members first (党员志愿者优先): the nearby alert's first wave goes to
the party members of the wish's community (or any in range), the second to everyone
else in range PARTY_FIRST_MINUTES later, once, only while nobody has claimed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock, jobs
from app.extensions import db
from app.models import CommunityReport, NearbyAlertRequest, Notification, User
from tests.factories import add_member, make_org, make_volunteer
from tests.moments import YEAR
from tests.test_nearby_alerts import north, post_wish, use_up_allowance

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Ningbo


def told(app) -> list[int]:
    """The user ids told of a nearby posting, in the order they were told (repeats kept)."""
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(Notification.user_id).where(Notification.kind == "nearby_posting").order_by(Notification.id)
            )
        )


def near(app, km: float = 0.5, **kwargs):
    return make_volunteer(app, home=north(km), push_radius_km=3.0, **kwargs)


def party_member(app, branch: int, community: int | None = None, km: float = 0.5):
    member = near(app, km)
    add_member(app, branch, member)
    if community is not None:
        with app.app_context():
            db.session.add(CommunityReport(user_id=member.id, org_id=community))
            db.session.commit()
    return member


def run_job(app):
    with app.app_context():
        return jobs.alert_nearby()


@pytest.fixture
def world(app):
    clock.freeze(NOW)
    community, coordinator = make_org(app, kind="community")
    branch, _ = make_org(app, kind="party_branch")
    return community, coordinator, branch


def test_the_first_wave_reaches_the_communitys_party_members_the_second_everyone_once(app, client, world):
    community, coordinator, branch = world
    reporting = party_member(app, branch, community)
    elsewhere = party_member(app, branch, None)  # a party member reporting to no community
    far_member = party_member(app, branch, community, km=20.0)  # out of their own range
    neighbour = near(app, 1.0)
    make_volunteer(app, coordinator, home=north(0.1))  # the author: never told
    add_member(app, branch, coordinator)

    wish = post_wish(client, coordinator, community)
    assert told(app) == [reporting.id]

    clock.advance(timedelta(minutes=29))
    run_job(app)
    assert told(app) == [reporting.id]  # not yet

    clock.advance(timedelta(minutes=1))
    run_job(app)
    assert sorted(told(app)[1:]) == sorted([elsewhere.id, neighbour.id])
    assert far_member.id not in told(app) and coordinator.id not in told(app)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(NearbyAlertRequest)) == 0
        data = db.session.scalar(sa.select(Notification.data).where(Notification.user_id == neighbour.id))
    assert data == {"kind": "nearby_posting", "posting_id": str(wish)}

    clock.advance(timedelta(hours=2))
    run_job(app)
    assert len(told(app)) == 3  # once


def test_a_wish_claimed_in_the_first_wave_never_reaches_the_rest(app, client, world):
    community, coordinator, branch = world
    reporting = party_member(app, branch, community)
    neighbour = near(app, 1.0)
    wish = post_wish(client, coordinator, community)
    assert told(app) == [reporting.id]
    resp = client.post(f"/api/v1/postings/{wish}/claims", headers=reporting.headers, json={})
    assert resp.status_code == 201, resp.get_json()
    clock.advance(timedelta(minutes=31))
    run_job(app)
    assert neighbour.id not in told(app) and told(app) == [reporting.id]


def test_without_a_community_any_party_member_in_range_comes_first(app, client, world):
    _, coordinator, branch = world
    ngo, ngo_coordinator = make_org(app, kind="ngo")
    member = party_member(app, branch, None)
    neighbour = near(app, 1.0)
    post_wish(client, ngo_coordinator, ngo)
    assert told(app) == [member.id]
    clock.advance(timedelta(minutes=30))
    run_job(app)
    assert told(app) == [member.id, neighbour.id]
    del coordinator


def test_no_party_member_in_range_means_everyone_at_once(app, client, world):
    community, coordinator, branch = world
    party_member(app, branch, community, km=30.0)  # out of range
    silent = party_member(app, branch, community)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == silent.id).values(nearby_alerts=False))
        db.session.commit()
    neighbours = [near(app, km) for km in (0.5, 1.5)]
    post_wish(client, coordinator, community)
    assert sorted(told(app)) == sorted(n.id for n in neighbours)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(NearbyAlertRequest)) == 0


def test_the_daily_cap_and_the_posting_cap_hold_across_both_waves(app, client, world, monkeypatch):
    from app.services import nearby_alerts as nearby

    community, coordinator, branch = world
    members = [party_member(app, branch, community, km=km) for km in (0.2, 0.4)]
    capped = near(app, 0.6)
    use_up_allowance(app, capped.id)
    others = [near(app, km) for km in (0.8, 1.0, 1.2)]
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 4)
    post_wish(client, coordinator, community)
    clock.advance(timedelta(minutes=30))
    run_job(app)
    got = told(app)
    assert got[:2] == [m.id for m in members]
    assert capped.id not in got
    assert got[2:] == [others[0].id, others[1].id]  # 4 in all, nearest first


def test_party_first_minutes_is_a_setting(app, client, world):
    community, coordinator, branch = world
    app.config["PARTY_FIRST_MINUTES"] = 5
    party_member(app, branch, community)
    neighbour = near(app, 1.0)
    post_wish(client, coordinator, community)
    clock.advance(timedelta(minutes=5))
    run_job(app)
    assert neighbour.id in told(app)
