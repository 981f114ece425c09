"""Tests that look at the database directly: the statements a block sends, and a city of
postings filled straight in SQL (PostgreSQL) for the plan tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask

from app.clock import utcnow
from app.extensions import db
from app.geo import GEOCELL_DEG


@contextmanager
def recorded(app: Flask) -> Iterator[list[tuple[str, object]]]:
    """Every (statement, parameters) the app's engine sends inside the block."""
    seen: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        seen.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def fill_city(rows: int) -> None:
    """``rows`` postings over Ningbo straight in SQL (PostgreSQL), then fresh
    statistics; runs in an app context."""
    db.session.execute(
        sa.text(
            """
            INSERT INTO postings (kind, title, description, status, district, lat, lng, geocell, author_id,
                                  capacity, claimed_count, waitlist_count, photo_urls, created_at, updated_at)
            SELECT (ARRAY['wish','project','charity','service','energy'])[1 + g % 5], 't', 'd',
                   (ARRAY['open','open','claimed','closed','expired'])[1 + (g / 5) % 5], 'haishu',
                   lat, lng,
                   floor((lat + 90) / :deg)::bigint * 100000 + floor((lng + 180) / :deg)::bigint,
                   :author, 1, 0, 0, '[]', :now - g * interval '1 second', :now
            FROM (SELECT g, 29.5 + random() * 0.8 AS lat, 121.1 + random() * 0.9 AS lng
                  FROM generate_series(1, :rows) AS g) AS points
            """
        ),
        {
            "rows": rows,
            "deg": GEOCELL_DEG,
            "author": db.session.scalar(sa.text("SELECT min(id) FROM users")),
            "now": utcnow(),  # the app's clock, not the database's
        },
    )
    db.session.commit()
    analyze("postings")


def analyze(table: str) -> None:
    """Fresh statistics and visibility map for ``table`` (index-only scans need it)."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
