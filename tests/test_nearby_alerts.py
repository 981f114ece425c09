"""微呼百应: nearby volunteers hear of a wish, a project or a charity activity that needs people."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock, jobs
from app.clock import local_date
from app.extensions import db
from app.geo import KM_PER_DEG_LAT
from app.models import Notification, Posting, User
from app.services import nearby_alerts as nearby
from tests.database import recorded
from tests.factories import make_claim, make_org, make_posting, make_user, make_volunteer
from tests.moments import YEAR

NOW = datetime(YEAR, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Ningbo
WISH = (29.87, 121.55)


def north(km: float) -> tuple[float, float]:
    """A point ``km`` due north of the wish."""
    return WISH[0] + km / KM_PER_DEG_LAT, WISH[1]


def volunteer(app, km: float | None, radius: float = 3.0, skills=None, **kwargs):
    return make_volunteer(
        app, home=north(km) if km is not None else None, push_radius_km=radius, skills=skills, **kwargs
    )


def alerts(app, kind: str = "nearby_posting") -> dict[int, Notification]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification).where(Notification.kind == kind)).all()
        db.session.expunge_all()
        return {row.user_id: row for row in rows}


def post_wish(client, coordinator, org_id, **overrides) -> int:
    body = {
        "kind": "wish",
        "title": "陪张奶奶去医院",
        "description": "周三上午",
        "district": "haishu",
        "org_id": org_id,
        "location": {"lat": WISH[0], "lng": WISH[1]},
        **overrides,
    }
    resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def run_alerts(app, posting_id: int) -> int:
    """What opening ``posting_id`` does: request its alerts in one transaction, fan them out in another."""
    with app.app_context():
        nearby.request_alerts([posting_id])
        db.session.commit()
        return nearby.fan_out(posting_id) or 0


def use_up_allowance(app, user_id: int) -> None:
    """The volunteer has had their alerts for today already."""
    with app.app_context():
        tz = db.session.get(User, user_id).timezone
        for _ in range(nearby.DAILY_LIMIT):
            nearby.take_allowances({user_id: local_date(clock.utcnow(), tz)})
        db.session.commit()


@pytest.fixture
def org(app):
    clock.freeze(NOW)
    return make_org(app)


def test_volunteers_within_their_own_radius_hear_of_an_open_wish(app, client, org):
    org_id, coordinator = org
    close = volunteer(app, 0.5)
    wide = volunteer(app, 8.0, radius=10.0)
    edge = volunteer(app, 45.0, radius=50.0)
    too_far = volunteer(app, 5.0, radius=3.0)
    beyond_max = volunteer(app, 55.0, radius=50.0)
    silent = volunteer(app, 0.3)
    homeless = volunteer(app, None)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == silent.id).values(nearby_alerts=False))
        db.session.commit()
    make_volunteer(app, coordinator, home=north(0.1))  # the author is a volunteer too

    posting_id = post_wish(client, coordinator, org_id)

    got = alerts(app)
    assert set(got) == {close.id, wide.id, edge.id}
    assert {too_far.id, beyond_max.id, silent.id, homeless.id, coordinator.id}.isdisjoint(got)
    note = got[wide.id]
    assert note.data == {"kind": "nearby_posting", "posting_id": str(posting_id)}
    assert "8.0" in note.body and "陪张奶奶去医院" in note.body
    assert note.dedupe_key == f"nearby_posting:posting:{posting_id}:{wide.id}"
    assert "0.5" in got[close.id].body


def test_volunteers_with_a_skill_the_tags_name_come_first(app, client, org, monkeypatch):
    org_id, coordinator = org
    carer = volunteer(app, 2.5, skills=["elderly", "driving"])
    tutor = volunteer(app, 1.0, skills=["tutoring"])
    anyone = volunteer(app, 0.5, skills=[])
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 2)
    post_wish(client, coordinator, org_id, tags=["助老", "就医"])
    assert set(alerts(app)) == {carer.id, anyone.id}  # the skilled one, then the nearest

    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 500)
    post_wish(client, coordinator, org_id, title="无标签心愿")
    assert sorted(n.user_id for n in _all_alerts(app)) == sorted([carer.id, anyone.id, carer.id, tutor.id, anyone.id])


def _all_alerts(app) -> list[Notification]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification).where(Notification.kind == "nearby_posting")).all()
        db.session.expunge_all()
        return rows


def test_a_residents_wish_alerts_only_once_approved(app, client, org):
    org_id, coordinator = org
    near = volunteer(app, 1.0)
    resident = make_user(app)
    resp = client.post(
        "/api/v1/postings",
        json={
            "kind": "wish",
            "title": "帮忙换灯泡",
            "description": "客厅",
            "district": "haishu",
            "location": {"lat": WISH[0], "lng": WISH[1]},
        },
        headers=resident.headers,
    )
    posting_id = resp.get_json()["id"]
    assert alerts(app) == {}
    client.post(f"/api/v1/postings/{posting_id}/approve", headers=coordinator.headers)
    assert set(alerts(app)) == {near.id}


@pytest.mark.parametrize("kind", ["service", "energy"])
def test_kinds_that_need_no_volunteers_alert_nobody(app, org, kind):
    org_id, coordinator = org
    volunteer(app, 1.0)
    posting_id = make_posting(app, coordinator, kind=kind, org_id=org_id, lat=WISH[0], lng=WISH[1])
    assert run_alerts(app, posting_id) == 0
    assert alerts(app) == {}


@pytest.mark.parametrize("kind", ["project", "charity"])
def test_an_activity_short_of_people_alerts_the_skilled_first_within_the_caps(app, client, org, monkeypatch, kind):
    org_id, coordinator = org
    first_aider = volunteer(app, 2.8, skills=["first_aid"])
    driver = volunteer(app, 2.0, skills=["driving", "first_aid"])
    near = [volunteer(app, km) for km in (0.3, 0.6)]
    busy = volunteer(app, 0.1, skills=["first_aid"])  # had their three alerts today already
    use_up_allowance(app, busy.id)
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 3)
    resp = client.post(
        "/api/v1/postings",
        headers=coordinator.headers,
        json={
            "kind": kind,
            "title": "社区急救培训志愿者",
            "description": "协助讲师",
            "district": "haishu",
            "org_id": org_id,
            "location": {"lat": WISH[0], "lng": WISH[1]},
            "tags": ["first_aid"],
            "capacity": 5,
            "starts_at": f"{YEAR}-03-05T01:00:00Z",
            "ends_at": f"{YEAR}-03-05T04:00:00Z",
        },
    )
    assert resp.status_code == 201, resp.get_json()
    posting_id = resp.get_json()["id"]
    told = {n.user_id: n for n in _all_alerts(app) if n.data.get("posting_id") == str(posting_id)}
    assert set(told) == {driver.id, first_aider.id, near[0].id}
    assert busy.id not in told
    note = told[driver.id]
    assert (note.title, note.body) == ("附近需要志愿者", "距您约 2.0 公里：「社区急救培训志愿者」")
    assert "心愿" not in note.title + note.body


def test_a_full_project_alerts_nobody_and_one_that_frees_a_place_alerts_the_new_only(app, client, org):
    org_id, coordinator = org
    make_volunteer(app, coordinator, home=north(0.1))  # the author is a volunteer too
    project = make_posting(app, coordinator, kind="project", org_id=org_id, capacity=1, status="full")
    claimant = volunteer(app, 0.5)
    with app.app_context():
        db.session.execute(sa.update(Posting).where(Posting.id == project).values(claimed_count=0))
        db.session.commit()
    assert run_alerts(app, project) == 0
    assert alerts(app) == {}

    # it opens: everyone near but the author hears; the one who claims the place fills it
    with app.app_context():
        db.session.execute(sa.update(Posting).where(Posting.id == project).values(status="open"))
        db.session.commit()
    assert run_alerts(app, project) == 1
    resp = client.post(f"/api/v1/postings/{project}/claims", headers=claimant.headers, json={})
    assert resp.json["status"] == "active"
    newcomer = volunteer(app, 1.5)

    # the claimant gives the place back: the project reopens and the newcomer hears of it,
    # never the claimant (told before, and a past claimant) nor the author
    resp = client.post(f"/api/v1/claims/{resp.json['id']}/withdraw", headers=claimant.headers)
    assert resp.status_code == 200, resp.get_json()
    # the withdrawal requested the alerts; the alert_nearby job sends them
    assert [n.user_id for n in _all_alerts(app) if n.data.get("posting_id") == str(project)] == [claimant.id]
    with app.app_context():
        assert jobs.alert_nearby()["alerted"] == 1
    notes = [n for n in _all_alerts(app) if n.data.get("posting_id") == str(project)]
    assert sorted(n.user_id for n in notes) == sorted([claimant.id, newcomer.id])


def test_claimants_and_the_author_are_never_alerted(app, org):
    org_id, coordinator = org
    make_volunteer(app, coordinator, home=north(0.1), skills=["events"])
    waiting = volunteer(app, 0.2, skills=["events"])
    released = volunteer(app, 0.3, skills=["events"])
    fresh = volunteer(app, 0.4)
    project = make_posting(app, coordinator, kind="charity", org_id=org_id, capacity=None, tags=["活动组织"])
    make_claim(app, project, waiting, status="waitlisted")
    make_claim(app, project, released, status="withdrawn")
    assert run_alerts(app, project) == 1
    assert set(alerts(app)) == {fresh.id}


def test_a_wish_without_a_place_or_not_open_alerts_nobody(app, org):
    _, coordinator = org
    volunteer(app, 1.0)
    for fields in ({"lat": None, "lng": None}, {"status": "pending_review"}, {"status": "claimed"}):
        assert run_alerts(app, make_posting(app, coordinator, **fields)) == 0
    assert alerts(app) == {}


def test_at_most_three_alerts_a_day_in_the_volunteers_time_zone(app, org):
    _, coordinator = org
    clock.freeze(datetime(YEAR, 3, 1, 15, 0, tzinfo=UTC))  # 23:00 in Ningbo
    shanghai = volunteer(app, 1.0)
    london = volunteer(app, 1.0)
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == london.id).values(timezone="Europe/London"))
        db.session.commit()

    counts = [run_alerts(app, make_posting(app, coordinator, title=f"心愿{i}")) for i in range(4)]
    assert counts == [2, 2, 2, 0]

    clock.advance(timedelta(hours=1, minutes=30))  # 00:30 in Ningbo, still 16:30 in London
    assert run_alerts(app, make_posting(app, coordinator, title="新的一天")) == 1
    by_user = {}
    for note in _all_alerts(app):
        by_user.setdefault(note.user_id, []).append(note)
    assert (len(by_user[shanghai.id]), len(by_user[london.id])) == (4, 3)


def test_nearest_first_up_to_the_per_wish_limit(app, org, monkeypatch):
    _, coordinator = org
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 3)
    by_distance = [volunteer(app, km, radius=10) for km in (4.0, 0.5, 2.5, 1.0, 3.0)]
    capped = volunteer(app, 0.2, radius=10)
    # the nearest volunteer had their three alerts today already
    use_up_allowance(app, capped.id)
    posting_id = make_posting(app, coordinator)
    assert run_alerts(app, posting_id) == 3
    got = {n.user_id for n in _all_alerts(app) if n.data.get("posting_id") == str(posting_id)}
    assert got == {by_distance[1].id, by_distance[3].id, by_distance[2].id}  # 0.5, 1.0, 2.5 km


def test_running_again_alerts_nobody_twice_and_respects_the_limit(app, org, monkeypatch):
    _, coordinator = org
    first = volunteer(app, 1.0)
    posting_id = make_posting(app, coordinator)
    assert run_alerts(app, posting_id) == 1
    assert run_alerts(app, posting_id) == 0

    # released and open again: a volunteer who moved nearby meanwhile hears of it
    newcomer = volunteer(app, 2.0)
    assert run_alerts(app, posting_id) == 1
    assert sorted(n.user_id for n in _all_alerts(app)) == sorted([first.id, newcomer.id])

    # those told before count towards the limit as they come up, nearest first
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 2)
    farther = volunteer(app, 2.5)
    assert run_alerts(app, posting_id) == 0  # 1.0 km and 2.0 km were told: the limit is reached
    closer = volunteer(app, 0.5)
    assert run_alerts(app, posting_id) == 1  # nearer than both: told, then the 1.0 km one fills the limit
    told = {n.user_id for n in _all_alerts(app)}
    assert closer.id in told and farther.id not in told


def test_alerts_are_one_bulk_insert(app, org):
    """A fixed number of statements whatever the number of volunteers."""
    _, coordinator = org

    def statements_for(posting_id: int) -> list[str]:
        with recorded(app) as seen, app.app_context():
            nearby.alert_volunteers(db.session.get(Posting, posting_id))
            db.session.commit()
        return [statement for statement, _ in seen]

    for km in (0.5, 1.0, 1.5):
        volunteer(app, km)
    few = statements_for(make_posting(app, coordinator))
    for i in range(30):
        volunteer(app, 0.1 + i * 0.05)
    many = statements_for(make_posting(app, coordinator, title="第二个"))
    assert len(many) == len(few)
    inserts = [s for s in many if s.lstrip().upper().startswith("INSERT INTO NOTIFICATIONS")]
    assert len(inserts) == 1
    assert len(_all_alerts(app)) == 3 + 33


def test_wishes_opening_at_once_never_push_a_volunteer_past_the_daily_limit(app, org, postgres_only):
    import threading

    _, coordinator = org
    target = volunteer(app, 1.0)
    wishes = [make_posting(app, coordinator, title=f"同时{i}") for i in range(8)]
    barrier = threading.Barrier(len(wishes))
    errors = []

    def open_wish(posting_id: int) -> None:
        try:
            with app.app_context():
                posting = db.session.get(Posting, posting_id)
                barrier.wait()
                nearby.alert_volunteers(posting)
                db.session.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_wish, args=(w,)) for w in wishes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [n.user_id for n in _all_alerts(app)] == [target.id] * nearby.DAILY_LIMIT


def test_the_walk_crosses_pages_and_rings_nearest_first(app, org, monkeypatch):
    _, coordinator = org
    monkeypatch.setattr(nearby, "_PAGE", 2)
    ring_one = [volunteer(app, km) for km in (2.5, 0.5, 1.5, 1.0, 2.0)]
    wide = volunteer(app, 6.0, radius=10.0)
    widest = volunteer(app, 20.0, radius=30.0)
    volunteer(app, 6.0, radius=5.0)  # out of their own radius
    skilled_out = volunteer(app, 0.7, skills=["tutoring"])

    posting_id = make_posting(app, coordinator)
    assert run_alerts(app, posting_id) == 8
    assert {n.user_id for n in _all_alerts(app)} == {a.id for a in ring_one} | {wide.id, widest.id, skilled_out.id}

    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 6)
    tagged = make_posting(app, coordinator, title="需要学业辅导", tags=["学业辅导"])
    assert run_alerts(app, tagged) == 6
    got = {n.user_id for n in _all_alerts(app) if n.data.get("posting_id") == str(tagged)}
    assert got == {skilled_out.id} | {a.id for a in ring_one}  # the skilled one, then the five nearest
    untagged = make_posting(app, coordinator, title="第三个")
    assert run_alerts(app, untagged) == 6
    got = {n.user_id for n in _all_alerts(app) if n.data.get("posting_id") == str(untagged)}
    assert got == {a.id for a in ring_one} | {skilled_out.id}  # the six nearest; 6 km and 20 km left out


def test_the_skilled_pass_reads_pages_too_and_the_second_pass_skips_them(app, org, monkeypatch):
    _, coordinator = org
    monkeypatch.setattr(nearby, "_PAGE", 2)
    skilled = [volunteer(app, km, radius=10, skills=["repair", "digital"]) for km in (4.0, 6.0, 9.0)]
    others = [volunteer(app, km, radius=10) for km in (0.5, 1.0)]
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 4)
    posting_id = make_posting(app, coordinator, tags=["repair", "手机电脑"])
    assert run_alerts(app, posting_id) == 4
    assert set(alerts(app)) == {*(a.id for a in skilled), others[0].id}


# --- never holding up a claim, and the caps under concurrency (PostgreSQL, real threads) ----------------------


def _alerts_by_user(app) -> dict[int, int]:
    with app.app_context():
        return dict(
            db.session.execute(
                sa.select(Notification.user_id, sa.func.count())
                .where(Notification.kind == "nearby_posting")
                .group_by(Notification.user_id)
            ).all()
        )


def test_a_withdrawal_never_waits_on_another_fan_out(app, client, org, postgres_only):
    """A fan-out holding a volunteer's allowance (its transaction still open) does not
    hold up a withdrawal whose reopened wish would alert the same volunteer: the
    withdrawal answers at once and leaves its alerts to the alert_nearby job."""
    import threading

    _, coordinator = org
    neighbour = volunteer(app, 0.5)
    claimant = volunteer(app, None)
    wish = make_posting(app, coordinator)
    claim_id = make_claim(app, wish, claimant)
    holding, release = threading.Event(), threading.Event()

    def other_fan_out() -> None:
        with app.app_context():
            nearby.take_allowances({neighbour.id: local_date(clock.utcnow(), None)})
            holding.set()
            release.wait(30)  # the lock on the neighbour's allowance row is held until here
            db.session.rollback()

    other = threading.Thread(target=other_fan_out)
    other.start()
    try:
        assert holding.wait(10)
        resp = client.post(f"/api/v1/claims/{claim_id}/withdraw", headers=claimant.headers)
        # answered while the other fan-out still holds its lock: it never waited for it
        assert resp.status_code == 200, resp.get_json()
        assert release.is_set() is False
        assert _alerts_by_user(app) == {}
    finally:
        release.set()
        other.join(30)
    with app.app_context():
        assert jobs.alert_nearby()["alerted"] == 1
    assert _alerts_by_user(app) == {neighbour.id: 1}


def test_withdrawals_racing_the_release_job_keep_the_caps_exact(app, org, postgres_only, monkeypatch):
    """The release job reopens overdue wishes while volunteers withdraw from others and
    the alert job runs, all at once: every withdrawal answers, no volunteer gets more
    than three alerts a day (nor fewer, there are enough wishes), no wish more than
    its limit, and the allowances agree with the alerts sent."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app.models import NearbyAlertAllowance, NearbyAlertRequest

    _, coordinator = org
    monkeypatch.setattr(nearby, "PER_POSTING_LIMIT", 4)
    neighbours = [volunteer(app, 0.2 + i * 0.1) for i in range(8)]
    overdue, held = [], []
    for i in range(12):
        claimant = volunteer(app, None)
        wish = make_posting(app, coordinator, title=f"逾期{i}")
        make_claim(app, wish, claimant, due_at=clock.utcnow() - timedelta(minutes=1))
        overdue.append(wish)
    for i in range(12):
        claimant = volunteer(app, None)
        wish = make_posting(app, coordinator, title=f"撤回{i}")
        held.append((make_claim(app, wish, claimant), claimant))
    start = threading.Barrier(len(held) + 2)

    def withdraw(item) -> int:
        claim_id, claimant = item
        client = app.test_client()
        start.wait()
        return client.post(f"/api/v1/claims/{claim_id}/withdraw", headers=claimant.headers).status_code

    def run_job(name: str) -> dict:
        with app.app_context():
            start.wait()
            return getattr(jobs, name)(batch_size=3)

    with ThreadPoolExecutor(max_workers=len(held) + 2) as pool:
        release = pool.submit(run_job, "release_overdue_claims")
        sweep = pool.submit(run_job, "alert_nearby")
        statuses = list(pool.map(withdraw, held))
        released = release.result()
        sweep.result()
    with app.app_context():
        while jobs.alert_nearby()["postings"]:
            pass
    assert statuses == [200] * len(held)
    assert released["released"] == len(overdue)
    told = _alerts_by_user(app)
    assert told == {n.id: nearby.DAILY_LIMIT for n in neighbours}
    with app.app_context():
        per_posting = Counter(
            data["posting_id"]
            for data in db.session.scalars(sa.select(Notification.data).where(Notification.kind == "nearby_posting"))
        ).items()
        allowances = dict(
            db.session.execute(sa.select(NearbyAlertAllowance.user_id, NearbyAlertAllowance.alerts)).all()
        )
        assert db.session.scalar(sa.select(sa.func.count()).select_from(NearbyAlertRequest)) == 0
    assert max(count for _, count in per_posting) <= 4
    assert sum(count for _, count in per_posting) == len(neighbours) * nearby.DAILY_LIMIT
    assert allowances == told


def test_a_fan_out_that_fails_after_the_commit_leaves_the_alerts_to_the_job(app, client, org, monkeypatch):
    """The posting is made (201): the alerts wait for the alert_nearby job instead of failing the request."""
    org_id, coordinator = org
    neighbour = volunteer(app, 1.0)
    real = nearby.alert_volunteers

    def broken(posting):
        raise RuntimeError("the walk broke")

    monkeypatch.setattr(nearby, "alert_volunteers", broken)
    posting_id = post_wish(client, coordinator, org_id)
    assert alerts(app) == {}
    monkeypatch.setattr(nearby, "alert_volunteers", real)
    with app.app_context():
        assert jobs.alert_nearby()["alerted"] == 1
    assert alerts(app)[neighbour.id].data == {"kind": "nearby_posting", "posting_id": str(posting_id)}
