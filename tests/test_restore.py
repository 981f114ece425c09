"""deploy/restore_check.py on PostgreSQL: a migrated, seeded database is dumped,
restored into a fresh one, and the copy passes `flask doctor`'s database and
migration checks with every table's rows intact."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from deploy.restore_check import libpq_url, with_database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source_database(db_url, tmp_path_factory):
    """A database of its own beside the test database, migrated and seeded like a real one."""
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL)")
    server = libpq_url(db_url)
    name = f"{server.rsplit('/', 1)[-1]}_restore_src"
    admin = with_database(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server, name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLASK_")},
        "APP_ENV": "development",
        "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
        "DATABASE_URL": url,
        "LOG_LEVEL": "WARNING",
        "ARGON2_TIME_COST": "1",  # the seed's passwords, hashed cheaply
        "ARGON2_MEMORY_COST": "1024",
    }
    for command in (["db", "upgrade"], ["seed"]):
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *command],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    yield url, env
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restore_check(url: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "deploy/restore_check.py", url, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_a_dump_restores_into_a_fresh_database_that_passes_the_doctor(source_database, tmp_path):
    url, env = source_database
    kept = tmp_path / "backup.dump"
    result = restore_check(url, env, "--dump", str(kept))
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600  # a backup is for its owner only
    out = result.stdout
    assert "every table's rows match" in out
    assert "ok   database" in out and "ok   migrations" in out
    assert out.rstrip().endswith("restore proven")
    # the seeded rows were there to be counted, and the copy was dropped afterwards
    dumped = next(line for line in out.splitlines() if line.startswith("dumped "))
    assert int(dumped.split(" tables, ")[1].split(" rows")[0]) > 0
    with psycopg.connect(with_database(libpq_url(url), "postgres")) as conn:
        scratch = f"{url.rsplit('/', 1)[-1]}_restore_check"  # this run's own, not another worker's
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (scratch,))
        assert left.fetchone()[0] == 0


def test_a_restore_that_lacks_the_schema_version_is_not_proven(source_database):
    url, env = source_database
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE alembic_version RENAME TO alembic_version_away")
    try:
        result = restore_check(url, env)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER TABLE alembic_version_away RENAME TO alembic_version")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL flask doctor: migrations is not ok" in result.stdout
    assert "restore NOT proven" in result.stdout
