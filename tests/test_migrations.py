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
