"""The benchmarks' one way to get their PostgreSQL database, and their app objects."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.config import database_url

# The benchmarks' keys, made per run: a key written here would be published
# (and production refuses every value found in the checkout).
SECRET = secrets.token_urlsafe(48)


def ensure_database(url: str, *, fresh: bool = False) -> str:
    """Create the PostgreSQL database ``url`` names if it is missing (drop and
    recreate it when ``fresh``); returns the SQLAlchemy URL. Other URLs, such
    as SQLite files, are returned as they are."""
    url = database_url(url)
    if not url.startswith("postgresql"):
        return url
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if fresh:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if fresh or not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}):
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


# Loading a million rows takes longer than the app's request limits allow: the
# benchmarks' own app objects (loaders, in-process timings) lift them.
LOADER_CONFIG = {"DB_STATEMENT_TIMEOUT_MS": 0, "DB_CLIENT_TIMEOUT_SECONDS": 3600}


def bench_app(url: str, **config: Any) -> Flask:
    """An app on ``url`` for loading data and timing requests in process: no
    scheduler, no rate limits, the run's keys, the loaders' limits lifted."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SCHEDULER_EMBEDDED": False,
            "RATELIMIT_ENABLED": False,
            "SECRET_KEY": SECRET,
            "JWT_SECRET_KEY": SECRET,
            **LOADER_CONFIG,
            **config,
        }
    )


def insert_people(conn: sa.Connection, users: int, coordinators: int) -> None:
    """Users 1..``users`` (generate_series, PostgreSQL): the first ``coordinators`` named
    王协调, 协调员2, …, the others volunteers (志愿者N) with a volunteer profile each."""
    conn.execute(
        sa.text(
            """
            INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, muted_kinds,
                               nearby_alerts, created_at, updated_at)
            SELECT g, '+86139' || lpad(g::text, 8, '0'), 'bench',
                   CASE WHEN g = 1 THEN '王协调' WHEN g <= :coordinators THEN '协调员' || g ELSE '志愿者' || g END,
                   false, 'zh-CN', '[]'::json, true, now() - interval '400 days', now() - interval '400 days'
            FROM generate_series(1, CAST(:users AS integer)) AS g
            """
        ),
        {"users": users, "coordinators": coordinators},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": users})
    conn.execute(
        sa.text(
            """
            INSERT INTO volunteers (user_id, volunteer_no, real_name, id_hash, id_masked, skills, district,
                                    push_radius_km, verified, credit_minutes, honor_minutes, energy_balance,
                                    active_wish_claims, registered_at, created_at, updated_at)
            SELECT g, 'NB' || lpad(g::text, 8, '0'), '张' || chr(19968 + g % 500), md5(g::text),
                   '3302**********' || lpad((g % 10000)::text, 4, '0'), '[]'::json, 'haishu', 3, true,
                   0, 0, 0, 0, now(), now(), now()
            FROM generate_series(CAST(:first AS integer), CAST(:users AS integer)) AS g
            """
        ),
        {"first": coordinators + 1, "users": users},
    )
