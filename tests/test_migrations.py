"""Migrations upgrade a database that holds data, on SQLite and on PostgreSQL.

Each test builds its own database at the first revision, fills it the way the
older release left it, upgrades to the head, and checks what the new code
reads. (The suite's own schema comes from the models; ``.ci/run`` also upgrades
empty databases and checks the models have no drift.)
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app import clock, create_app
from app.config import TestConfig, database_url
from app.extensions import db

INITIAL = "0caec556a4db"
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


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
