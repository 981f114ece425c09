"""The benchmarks' one way to get their PostgreSQL database."""

from __future__ import annotations

import sqlalchemy as sa

from app.config import database_url


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
