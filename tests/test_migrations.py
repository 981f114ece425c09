"""Migrations upgrade a database that holds data, on SQLite and on PostgreSQL.

Each test builds its own database at the first revision, fills it the way the
older release left it, upgrades to the head, and checks what the new code
reads. (The suite's own schema comes from the models; ``.ci/run`` also upgrades
empty databases and checks the models have no drift.)
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import clock, create_app
from app.config import TestConfig, database_url
from app.extensions import db
from app.models import User
from app.services import tokens
from tests.moments import YEAR

pytestmark = pytest.mark.slow

INITIAL = "0caec556a4db"
NOW = datetime(YEAR, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
def fresh_url(tmp_path):
    """An empty database of the suite's kind, dropped afterwards."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'migrate.sqlite'}"
        return
    admin = sa.create_engine(database_url(base), isolation_level="AUTOCOMMIT")
    name = f"yz_migrate_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = database_url(base).rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _app(url: str):
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    return create_app({**config, "SQLALCHEMY_DATABASE_URI": url})


def _old_rows(conn) -> None:
    """Rows as the first release wrote them."""
    stamp = NOW - timedelta(days=3)
    conn.execute(
        sa.text(
            "INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, timezone, muted_kinds,"
            " nearby_alerts, created_at, updated_at) VALUES"
            " (1, '+8613900000001', 'x', '王协调', false, 'zh-CN', 'Asia/Shanghai', '[]', true, :t, :t),"
            " (2, '+8613900000002', 'x', '小李', false, 'en', 'Europe/Berlin', '[]', true, :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO orgs (id, name, kind, district, status, applicant_id, member_count, created_at, updated_at)"
            " VALUES (1, '鼓楼街道', 'community', 'haishu', 'approved', 1, 1, :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO volunteers (id, user_id, volunteer_no, real_name, id_hash, id_masked, skills, district,"
            " push_radius_km, verified, credit_minutes, honor_minutes, energy_balance, active_wish_claims,"
            " registered_at, created_at, updated_at) VALUES"
            " (1, 2, 'NB00000001', '李四', 'h', '3302**********1234', '[]', 'haishu', 3, false, 0, 0, 0, 0,"
            " :t, :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO postings (id, kind, title, description, status, district, org_id, author_id, capacity,"
            " claimed_count, waitlist_count, starts_at, ends_at, photo_urls, created_at, updated_at) VALUES"
            " (1, 'project', '过去的活动', '详情', 'open', 'haishu', 1, 1, 10, 1, 0, :s, :e, '[]', :t, :t)"
        ),
        {"t": stamp, "s": NOW - timedelta(days=2), "e": NOW - timedelta(days=2) + timedelta(hours=3)},
    )
    conn.execute(
        sa.text(
            "INSERT INTO claims (id, posting_id, user_id, kind, status, claimed_at, photo_urls, energy_debited,"
            " reminder_stage, created_at, updated_at) VALUES (1, 1, 2, 'project', 'active', :t, '[]', 0, 0, :t, :t)"
        ),
        {"t": stamp},
    )


def test_the_rulebook_migration_upgrades_a_database_with_data(fresh_url):
    app = _app(fresh_url)
    with app.app_context():
        upgrade(revision=INITIAL)
        with db.engine.begin() as conn:
            _old_rows(conn)
        upgrade()
        with db.engine.connect() as conn:
            zones = dict(conn.execute(sa.text("SELECT id, timezone FROM users ORDER BY id")).all())
            auto = conn.execute(sa.text("SELECT auto_confirmed FROM claims")).scalar_one()
            verified = conn.execute(sa.text("SELECT verified, verified_at FROM volunteers")).one()
            status = conn.execute(sa.text("SELECT status FROM postings")).scalar_one()
        db.engine.dispose()
    # the old forced default becomes "the deployment's default"; a chosen zone stays
    assert zones == {1: None, 2: "Europe/Berlin"}
    assert not auto
    assert (bool(verified[0]), verified[1]) == (False, None)
    # the migration closes nothing: the job does
    assert status == "open"

    clock.freeze(NOW)
    try:
        app.test_cli_runner().invoke(args=["jobs", "run", "expire_postings"])
        app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"])
    finally:
        clock.reset()
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM postings")).scalar_one() == "closed"
            assert conn.execute(sa.text("SELECT status FROM claims")).scalar_one() == "no_show"
        db.engine.dispose()


# the revision before the matching migration (324fc09ae94c)
BEFORE_MATCHING = "20fea59b41ec"


def _matching_rows(conn) -> None:
    """Rows as the rulebook release left them: free-text skills, tags without a
    point, rated records (one of an auto-confirmed claim)."""
    stamp = NOW - timedelta(days=3)
    conn.execute(
        sa.text(
            "INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, muted_kinds,"
            " nearby_alerts, created_at, updated_at) VALUES"
            " (1, '+8613900000001', 'x', '王协调', false, 'zh-CN', '[]', true, :t, :t),"
            " (2, '+8613900000002', 'x', '小李', false, 'zh-CN', '[]', true, :t, :t),"
            " (3, '+8613900000003', 'x', '小陈', false, 'zh-CN', '[]', true, :t, :t),"
            " (4, '+8613900000004', 'x', '小杨', false, 'zh-CN', '[]', true, :t, :t)"
        ),
        {"t": stamp},
    )
    volunteers = [
        (1, 2, '["助老", "家电维修", " 心理 ", "陪伴"]', 29.87, 121.55),
        (2, 3, '["助学", "理发", "环保", "助学", "环境清洁"]', None, None),
        (3, 4, "[]", 29.9, 121.6),
    ]
    for vid, user_id, skills, lat, lng in volunteers:
        conn.execute(
            sa.text(
                "INSERT INTO volunteers (id, user_id, volunteer_no, real_name, id_hash, id_masked, skills, district,"
                " home_lat, home_lng, push_radius_km, verified, credit_minutes, honor_minutes, energy_balance,"
                " active_wish_claims, registered_at, created_at, updated_at) VALUES"
                " (:id, :user_id, :no, '某某', :hash, '3302**********1234', :skills, 'haishu', :lat, :lng, 5,"
                " false, 0, 0, 0, 0, :t, :t, :t)"
            ),
            {
                "id": vid,
                "user_id": user_id,
                "no": f"NB{vid:08d}",
                "hash": f"h{vid}",
                "skills": skills,
                "lat": lat,
                "lng": lng,
                "t": stamp,
            },
        )
    conn.execute(
        sa.text(
            "INSERT INTO postings (id, kind, title, description, status, district, author_id, capacity,"
            " claimed_count, waitlist_count, lat, lng, geocell, photo_urls, created_at, updated_at) VALUES"
            " (1, 'wish', '陪老人', '详情', 'open', 'haishu', 1, 1, 0, 0, 29.87, 121.55, 600000, '[]', :t, :t),"
            " (2, 'wish', '修灯', '详情', 'closed', 'haishu', 1, 1, 1, 0, NULL, NULL, NULL, '[]', :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO posting_tags (posting_id, tag, position) VALUES (1, '助老', 0), (1, '陪伴', 1), (2, '维修', 0)"
        )
    )
    for cid, posting_id, user_id, auto in ((1, 2, 2, False), (2, 1, 2, False), (3, 1, 3, True)):
        conn.execute(
            sa.text(
                "INSERT INTO claims (id, posting_id, user_id, kind, status, claimed_at, photo_urls, energy_debited,"
                " reminder_stage, auto_confirmed, created_at, updated_at)"
                " VALUES (:id, :p, :u, 'wish', 'confirmed', :t, '[]', 0, 0, :auto, :t, :t)"
            ),
            {"id": cid, "p": posting_id, "u": user_id, "auto": auto, "t": stamp},
        )
    records = [(1, 2, 1, 5), (2, 2, 2, 2), (3, 3, 3, 4), (4, 2, None, None)]
    for rid, user_id, claim_id, rating in records:
        conn.execute(
            sa.text(
                "INSERT INTO service_records (id, volunteer_id, claim_id, kind, activity, minutes, rating, created_at)"
                " VALUES (:id, :u, :c, 'credit', '活动', 60, :r, :t)"
            ),
            {"id": rid, "u": user_id, "c": claim_id, "r": rating, "t": stamp},
        )


def test_the_matching_migration_turns_skills_into_codes_and_counts_ratings(fresh_url, capsys):
    app = _app(fresh_url)
    with app.app_context():
        upgrade(revision=BEFORE_MATCHING)
        with db.engine.begin() as conn:
            _matching_rows(conn)
        capsys.readouterr()
        upgrade()
        # Alembic's env.py logs to stderr (it replaces the handlers, caplog's too)
        logged = [line for line in capsys.readouterr().err.splitlines() if "[alembic.migration.skills]" in line]
        with db.engine.connect() as conn:
            skills = {
                row[0]: json.loads(row[1]) if isinstance(row[1], str) else row[1]
                for row in conn.execute(sa.text("SELECT id, skills FROM volunteers ORDER BY id"))
            }
            index = set(
                conn.execute(sa.text("SELECT user_id, skill, home_lat, home_lng, push_radius_km FROM volunteer_skills"))
            )
            tags = set(conn.execute(sa.text("SELECT posting_id, tag, lat, lng, geocell FROM posting_tags")))
            ratings = set(conn.execute(sa.text("SELECT user_id, rating_count, rating_total FROM volunteers")))
        db.engine.dispose()

    assert skills == {1: ["elderly", "repair", "psychology"], 2: ["tutoring", "haircut", "cleaning"], 3: []}
    assert index == {
        (2, "elderly", 29.87, 121.55, 5.0),
        (2, "repair", 29.87, 121.55, 5.0),
        (2, "psychology", 29.87, 121.55, 5.0),
        (3, "tutoring", None, None, 5.0),
        (3, "haircut", None, None, 5.0),
        (3, "cleaning", None, None, 5.0),
    }
    assert logged == ["INFO  [alembic.migration.skills] volunteer 1 (NB00000001): dropped skills 陪伴"]
    assert tags == {
        (1, "助老", 29.87, 121.55, 600000),
        (1, "陪伴", 29.87, 121.55, 600000),
        (2, "维修", None, None, None),
    }
    # the auto-confirmed claim's rating and the unrated record do not count
    assert ratings == {(2, 2, 7), (3, 0, 0), (4, 0, 0)}

    # the app reads what the migration wrote
    clock.freeze(NOW)
    try:
        client = app.test_client()
        with app.app_context():
            access = tokens.issue_tokens(db.session.get(User, 2))["access_token"]
            db.session.commit()
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"}).get_json()
        assert me["volunteer"]["skills"] == ["elderly", "repair", "psychology"]
        assert me["volunteer"]["rating"] == {"average": 3.5, "count": 2}
    finally:
        clock.reset()
        with app.app_context():
            db.engine.dispose()


# the revision before the photos migration (e5a7c3b19d42)
BEFORE_PHOTOS = "d05777ce2584"


def test_the_photos_migration_drops_the_old_links(fresh_url, capsys):
    """Links to images hosted elsewhere were never checked (a resident's home in their
    GPS tags): they are emptied, counted in the log, and the API shows no photos."""
    app = _app(fresh_url)
    stamp = NOW - timedelta(days=3)
    links = json.dumps(["https://img.example.com/a.jpg", "https://img.example.com/b.jpg"])
    with app.app_context():
        upgrade(revision=BEFORE_PHOTOS)
        with db.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, muted_kinds,"
                    " nearby_alerts, created_at, updated_at) VALUES"
                    " (1, '+8613900000001', 'x', '王阿姨', false, 'zh-CN', '[]', true, :t, :t),"
                    " (2, '+8613900000002', 'x', '小李', false, 'zh-CN', '[]', true, :t, :t)"
                ),
                {"t": stamp},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO postings (id, kind, title, description, status, district, author_id, capacity,"
                    " claimed_count, waitlist_count, photo_urls, created_at, updated_at) VALUES"
                    " (1, 'wish', '修灯', '详情', 'closed', 'haishu', 1, 1, 1, 0, :links, :t, :t),"
                    " (2, 'wish', '买菜', '详情', 'open', 'haishu', 1, 1, 0, 0, '[]', :t, :t)"
                ),
                {"t": stamp, "links": links},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO claims (id, posting_id, user_id, kind, status, claimed_at, note, photo_urls,"
                    " energy_debited, reminder_stage, auto_confirmed, created_at, updated_at)"
                    " VALUES (1, 1, 2, 'wish', 'confirmed', :t, '灯修好了', :links, 0, 0, false, :t, :t)"
                ),
                {"t": stamp, "links": json.dumps(["https://img.example.com/c.jpg"])},
            )
        capsys.readouterr()
        upgrade()
        logged = [line for line in capsys.readouterr().err.splitlines() if "[alembic.migration.photos]" in line]
        with db.engine.connect() as conn:
            left = conn.execute(sa.text("SELECT photo_urls FROM postings UNION ALL SELECT photo_urls FROM claims"))
            assert [json.loads(v) if isinstance(v, str) else v for (v,) in left] == [[], [], []]
            assert conn.execute(sa.text("SELECT photos_private FROM claims")).scalar_one() is None
            assert conn.execute(sa.text("SELECT count(*) FROM photos")).scalar_one() == 0
        db.engine.dispose()
    assert logged == [
        "INFO  [alembic.migration.photos] dropped the photo links of 1 postings (2 links) and 1 fulfilments (1 links)"
    ]
    client = app.test_client()
    posting = client.get("/api/v1/postings/1").get_json()
    # the confirmation came before the choice existed: nobody chose to publish it
    assert (posting["photos"], posting["story"]) == ([], None)
    with app.app_context():
        db.engine.dispose()


# the revision before records became an organisation's record (9d41e7b2c3a5)
BEFORE_RECORDING = "e5a7c3b19d42"


def _unreviewed_records(conn) -> dict:
    """Rows as the release before left them: records counted as soon as written,
    some without an org, an honor record without times, a place as a code,
    one rater who rated twice, counters that drifted."""
    stamp = NOW - timedelta(days=3)
    conn.execute(
        sa.text(
            "INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, muted_kinds,"
            " nearby_alerts, created_at, updated_at) VALUES"
            " (1, '+8613900000001', 'x', '王协调', false, 'zh-CN', '[]', true, :t, :t),"
            " (2, '+8613900000002', 'x', '小李', false, 'zh-CN', '[]', true, :t, :t),"
            " (3, '+8613900000003', 'x', '王阿姨', false, 'zh-CN', '[]', true, :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO orgs (id, name, kind, district, status, applicant_id, member_count, created_at, updated_at)"
            " VALUES (1, '鼓楼街道', 'community', 'haishu', 'approved', 1, 1, :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO org_members (id, org_id, user_id, role, created_at, updated_at)"
            " VALUES (1, 1, 1, 'coordinator', :t, :t)"
        ),
        {"t": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO volunteers (id, user_id, volunteer_no, real_name, id_hash, id_masked, skills, district,"
            " push_radius_km, verified, credit_minutes, honor_minutes, energy_balance, active_wish_claims,"
            " rating_count, rating_total, registered_at, created_at, updated_at) VALUES"
            " (1, 2, 'NB00000001', '李四', 'h', '3302**********1234', '[]', 'haishu', 3, false, 999, 0, 40, 0,"
            " 9, 40, :t, :t, :t)"
        ),
        {"t": stamp},
    )
    postings = [
        (1, "project", "活动", 1, None),  # an org's project
        (2, "wish", "心愿", None, 1),  # a resident's wish, approved by the coordinator
        (3, "service", "理发", None, None),  # a service offered without an org
    ]
    for pid, kind, title, org_id, reviewed_by in postings:
        conn.execute(
            sa.text(
                "INSERT INTO postings (id, kind, title, description, status, district, org_id, author_id, capacity,"
                " claimed_count, waitlist_count, reviewed_by, photo_urls, created_at, updated_at) VALUES"
                " (:id, :kind, :title, '详情', 'closed', 'haishu', :org, 1, 1, 1, 0, :rev, '[]', :t, :t)"
            ),
            {"id": pid, "kind": kind, "title": title, "org": org_id, "rev": reviewed_by, "t": stamp},
        )
    hour = timedelta(hours=1)
    records = [
        # id, posting, org, kind, minutes, started, ended, place, rating, recorded_by, created
        (1, 1, 1, "credit", 60, stamp - 5 * hour, stamp - 4 * hour, "haishu", 4, 1, stamp - 4 * hour),
        (2, 2, None, "credit", 60, None, None, "公园路 1 号", 5, 3, stamp - 2 * hour),
        (3, 3, None, "credit", 30, stamp - 90 * timedelta(minutes=1), stamp - hour, "haishu", 3, 3, stamp - hour),
        (4, None, 1, "honor", 120, None, None, "haishu", None, 1, stamp),
    ]
    for rid, posting, org, kind, minutes, started, ended, place, rating, by, created in records:
        conn.execute(
            sa.text(
                "INSERT INTO service_records (id, volunteer_id, posting_id, org_id, kind, activity, minutes,"
                " started_at, ended_at, place, rating, recorded_by, created_at)"
                " VALUES (:id, 2, :p, :o, :k, '活动', :m, :s, :e, :place, :r, :by, :c)"
            ),
            {
                "id": rid,
                "p": posting,
                "o": org,
                "k": kind,
                "m": minutes,
                "s": started,
                "e": ended,
                "place": place,
                "r": rating,
                "by": by,
                "c": created,
            },
        )
    return {"stamp": stamp}


def test_the_recording_migration_makes_old_records_recorded_and_finds_their_org(fresh_url):
    app = _app(fresh_url)
    with app.app_context():
        upgrade(revision=BEFORE_RECORDING)
        with db.engine.begin() as conn:
            world = _unreviewed_records(conn)
        upgrade()
        with db.engine.connect() as conn:
            rows = {
                row[0]: row[1:]
                for row in conn.execute(
                    sa.text("SELECT id, status, org_id, place, started_at, ended_at FROM service_records")
                )
            }
            recording = dict(conn.execute(sa.text("SELECT id, recording_org_id FROM postings")).all())
            ratings = set(conn.execute(sa.text("SELECT rater_id, rating FROM volunteer_ratings")))
            counters = conn.execute(
                sa.text(
                    "SELECT credit_minutes, honor_minutes, energy_balance, rating_count, rating_total FROM volunteers"
                )
            ).one()
        db.engine.dispose()

    assert {rid: (status, org) for rid, (status, org, *_rest) in rows.items()} == {
        1: ("recorded", 1),
        2: ("recorded", 1),  # the org of the coordinator who approved the wish
        3: ("recorded", None),  # a service without an org: no org to be found, still counted
        4: ("recorded", 1),
    }
    assert recording == {1: None, 2: 1, 3: None}
    assert (rows[1][2], rows[2][2], rows[4][2]) == ("海曙区", "公园路 1 号", "海曙区")
    # every record has its window: the minutes up to its end, else up to when it was written
    stamp = world["stamp"]

    def as_utc(value):
        value = datetime.fromisoformat(value) if isinstance(value, str) else value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    assert (as_utc(rows[4][3]), as_utc(rows[4][4])) == (stamp - timedelta(minutes=120), stamp)
    assert as_utc(rows[2][4]) - as_utc(rows[2][3]) == timedelta(minutes=60)
    # one rating per rater, the latest; the counters are what the records and ratings say
    assert ratings == {(1, 4), (3, 3)}
    assert tuple(counters) == (150, 120, 40, 2, 7)

    clock.freeze(NOW)
    try:
        client = app.test_client()
        with app.app_context():
            access = tokens.issue_tokens(db.session.get(User, 1))["access_token"]
            db.session.commit()
        listed = client.get("/api/v1/orgs/1/records", headers={"Authorization": f"Bearer {access}"}).get_json()
        assert [(item["id"], item["status"]) for item in listed["items"]] == [
            (1, "recorded"),
            (2, "recorded"),
            (4, "recorded"),
        ]
    finally:
        clock.reset()
        with app.app_context():
            db.engine.dispose()
