"""Benchmark: ``expire_postings`` against the ceiling of one bare UPDATE.

On PostgreSQL (default ``postgresql://postgres@127.0.0.1:5432/yz_bench_s``, or
``BENCH_DATABASE_URL``; the database is created if missing and its tables are
rebuilt), bulk-loads N open wishes (default 1,000,000) of which M (default
200,000) are past ``expires_at``, spread over the id range, with generate_series
(no ORM). A copy of the table, with the same indexes and checks, gets the ceiling: one bare

    UPDATE postings_copy SET status = 'expired' WHERE status = 'open' AND expires_at < now()

The real table gets ``app.jobs.expire_postings`` run to completion: batches of
JOB_BATCH_SIZE in their own transactions, each posting's poster told
(``posting_expired``, one notification row each). Prints both times and the ratio.

    .venv/bin/python bench/expire.py [--postings 1000000] [--expired 200000] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app, jobs  # noqa: E402
from app.extensions import db  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, ensure_database  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_s"
AUTHORS = 20_000


def load(conn: sa.Connection, postings: int, expired: int) -> None:
    """Authors and wishes by generate_series; ``expired`` of them past expires_at.

    ``(g * 7919) % postings`` is a permutation of 0..postings-1 (7919 is prime and
    does not divide the count), so exactly ``expired`` rows fall below the cut,
    scattered over the whole id range as real expiry dates would be.
    """
    conn.execute(
        sa.text(
            """
            INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, timezone,
                               muted_kinds, nearby_alerts, created_at, updated_at)
            SELECT g, '+86139' || lpad(g::text, 8, '0'), 'bench', '用户' || g, false,
                   CASE WHEN g % 10 = 0 THEN 'en' ELSE 'zh-CN' END, 'Asia/Shanghai',
                   '[]'::json, true, now() - interval '60 days', now() - interval '60 days'
            FROM generate_series(1, :authors) AS g
            """
        ),
        {"authors": AUTHORS},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"), {"n": AUTHORS})
    conn.execute(
        sa.text(
            """
            INSERT INTO postings (kind, title, description, status, district, author_id, capacity,
                                  claimed_count, waitlist_count, expires_at, claim_ttl_hours,
                                  lat, lng, photo_urls, created_at, updated_at)
            SELECT 'wish', '帮忙修理水龙头 #' || g, '社区独居老人家中水龙头漏水，需要志愿者上门帮忙。', 'open',
                   (ARRAY['haishu','jiangbei','beilun','zhenhai','yinzhou','fenghua','yuyao','cixi',
                          'ninghai','xiangshan'])[g % 10 + 1],
                   g % :authors + 1, 1, 0, 0,
                   CASE WHEN (g::bigint * 7919) % :postings < :expired
                        THEN now() - interval '1 minute' - (g % 20160) * interval '1 minute'
                        ELSE now() + interval '2 days' + (g % 40320) * interval '1 minute' END,
                   168, 29.80 + (g % 1000) * 0.0002, 121.45 + (g % 997) * 0.0002, '[]'::json,
                   now() - interval '30 days', now() - interval '30 days'
            FROM generate_series(1, :postings) AS g
            """
        ),
        {"authors": AUTHORS, "postings": postings, "expired": expired},
    )
    conn.execute(sa.text("DROP TABLE IF EXISTS postings_copy"))
    conn.execute(sa.text("CREATE TABLE postings_copy (LIKE postings INCLUDING INDEXES INCLUDING CONSTRAINTS)"))
    conn.execute(sa.text("INSERT INTO postings_copy SELECT * FROM postings"))


def count(conn: sa.Connection, sql: str) -> int:
    return conn.scalar(sa.text(sql))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "APP_ENV": "development",
            "SCHEDULER_EMBEDDED": False,
            "PUSH_BACKEND": "log",
            **LOADER_CONFIG,
        }
    )
    with app.app_context():
        engine = db.engine
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS postings_copy"))
        db.drop_all()
        db.create_all()

        started = time.perf_counter()
        with engine.begin() as conn:
            load(conn, args.postings, args.expired)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE users"))
            conn.execute(sa.text("VACUUM ANALYZE postings"))
            conn.execute(sa.text("VACUUM ANALYZE postings_copy"))
            # warm both tables alike
            count(conn, "SELECT count(*) FROM postings WHERE status = 'open'")
            count(conn, "SELECT count(*) FROM postings_copy WHERE status = 'open'")
        loaded = time.perf_counter() - started
        print(f"loaded {args.postings:,} open wishes ({args.expired:,} past expires_at) in {loaded:.1f} s")

        with engine.begin() as conn:
            started = time.perf_counter()
            bare = conn.execute(
                sa.text("UPDATE postings_copy SET status = 'expired' WHERE status = 'open' AND expires_at < now()")
            ).rowcount
        bare_seconds = time.perf_counter() - started

        started = time.perf_counter()
        result = jobs.expire_postings(batch_size=args.batch_size)
        job_seconds = time.perf_counter() - started
        db.session.remove()

        with engine.connect() as conn:
            expired_rows = count(conn, "SELECT count(*) FROM postings WHERE status = 'expired'")
            notified = count(conn, "SELECT count(*) FROM notifications WHERE kind = 'posting_expired'")
            still_open = count(conn, "SELECT count(*) FROM postings WHERE status = 'open'")

    assert bare == args.expired, bare
    assert result["expired"] == expired_rows == notified == args.expired, (result, expired_rows, notified)
    assert still_open == args.postings - args.expired
    print(f"bare UPDATE (ceiling):   {bare:>9,} rows  {bare_seconds:8.2f} s  {bare / bare_seconds:>10,.0f} rows/s")
    print(
        f"expire_postings:         {result['expired']:>9,} rows  {job_seconds:8.2f} s  "
        f"{result['expired'] / job_seconds:>10,.0f} rows/s  "
        f"({result['batches']} batches of {args.batch_size}, {notified:,} notification rows)"
    )
    print(f"ratio job / ceiling:     {job_seconds / bare_seconds:.1f}x")


if __name__ == "__main__":
    main()
