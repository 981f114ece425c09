"""Prove a PostgreSQL backup restores: dump, restore into a fresh database, check it.

    python deploy/restore_check.py postgresql://USER@HOST:5432/yongzhiyuan [--target NAME] [--keep] [--dump FILE]

1. ``pg_dump --format=custom`` of the source, taken in one exported snapshot,
   in which every table's rows are counted too (a live database keeps
   changing; the dump and the counts see the same moment);
2. a fresh database ``--target`` (default ``<source>_restore_check``) on the
   same server is created (dropped first if it exists; never the source) and
   ``pg_restore --exit-on-error --no-owner --no-privileges`` fills it;
3. every table of the copy holds exactly the counted rows, and
   ``flask --app wsgi doctor`` run against the copy reports its database and
   migrations ``ok`` (its other checks — keys, Redis, push, the scheduler's
   heartbeat — are about the environment, not the backup: shown, not required);
4. the copy is dropped unless ``--keep``; ``--dump FILE`` keeps the dump.

Needs ``pg_dump`` and ``pg_restore`` (the PostgreSQL client tools, the
server's major version or newer) and a role that may create databases. The
environment's keys go to ``flask doctor`` as they are (run it with the
production environment file to check those too). Exits 0 when the restore is
proven, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_CHECKS = ("database", "migrations")


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy's spelling) → ``postgresql://…``."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def dump_with_counts(source: str, dump_path: str) -> dict[str, int]:
    """Dump ``source`` and count its tables' rows, both in one snapshot."""
    with psycopg.connect(source) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
                )
            ]
            # a dump holds every person's data: readable by its owner only
            fd = os.open(dump_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            os.chmod(dump_path, 0o600)
            subprocess.run(
                ["pg_dump", "--format=custom", f"--snapshot={snapshot}", f"--file={dump_path}", source],
                check=True,
                umask=0o077,
            )
            return {table: count_rows(conn, table) for table in tables}


def count_rows(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()[0]


def recreate(server_url: str, name: str) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def compare_counts(target: str, expected: dict[str, int]) -> list[str]:
    problems = []
    with psycopg.connect(target) as conn:
        restored = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        for table, rows in expected.items():
            if table not in restored:
                problems.append(f"table {table} is missing")
            elif (got := count_rows(conn, table)) != rows:
                problems.append(f"table {table}: {got} rows, the source had {rows}")
    return problems


def run_doctor(target: str) -> tuple[dict[str, bool], str]:
    """``flask doctor`` against ``target``: which checks said ok, and its output."""
    env = {**os.environ, "DATABASE_URL": target, "FLASK_APP": "wsgi"}
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "doctor"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    status = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("ok", "FAIL") and rest.split():
            status[rest.split()[0]] = verdict == "ok"
    return status, result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the database to back up: postgresql://USER@HOST:PORT/NAME")
    parser.add_argument("--target", help="the scratch database to restore into (default <source>_restore_check)")
    parser.add_argument("--keep", action="store_true", help="keep the restored database")
    parser.add_argument("--dump", help="write the dump here and keep it (default: a temporary file)")
    args = parser.parse_args(argv)

    source = libpq_url(args.source)
    target_name = args.target or f"{database_of(source)}_restore_check"
    if target_name == database_of(source):
        parser.error("the target must not be the source database")
    target = with_database(source, target_name)

    with tempfile.TemporaryDirectory() as scratch:
        dump_path = args.dump or os.path.join(scratch, "backup.dump")
        counts = dump_with_counts(source, dump_path)
        print(f"dumped {database_of(source)}: {len(counts)} tables, {sum(counts.values())} rows, "
              f"{os.path.getsize(dump_path)} bytes")  # fmt: skip
        recreate(source, target_name)
        try:
            subprocess.run(
                ["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", f"--dbname={target}", dump_path],
                check=True,
            )
            problems = compare_counts(target, counts)
            print(f"restored into {target_name}: " + ("every table's rows match" if not problems else "MISMATCH"))
            status, output = run_doctor(target)
            print(output.rstrip())
            for check in REQUIRED_CHECKS:
                if not status.get(check):
                    problems.append(f"flask doctor: {check} is not ok")
        finally:
            if not args.keep:
                drop(source, target_name)
    for problem in problems:
        print(f"FAIL {problem}")
    print("restore proven" if not problems else "restore NOT proven")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
