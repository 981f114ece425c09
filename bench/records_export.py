"""Benchmark: an org's records out as CSV (and XLSX) through the real route.

On PostgreSQL (default ``postgresql://postgres@127.0.0.1:5432/yz_bench_records``,
or ``BENCH_DATABASE_URL``; created if missing, its tables rebuilt), bulk-loads
with generate_series (no ORM) one org with N service records (default
100,000) by 2,000 volunteers over a year, in Chinese, plus as many records of
another org the export must skip. Then ``GET /api/v1/orgs/1/records.csv``
goes through the whole app (JWT, schema, permission check, streaming
response) with Flask's test client, unbuffered: the chunks are counted and
dropped as they arrive, as a client saving the file would.

Printed per run: rows, bytes, wall time, time to the first chunk, and memory:
the peak of Python allocations during the export (tracemalloc, a second run,
since tracing slows it down) and the process's peak RSS (``ru_maxrss``) before
and after the export.

    .venv/bin/python bench/records_export.py [--records 100000] [--xlsx]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from app.extensions import db  # noqa: E402
from app.models import User  # noqa: E402
from app.services.tokens import issue_tokens  # noqa: E402
from bench.dbsetup import bench_app, ensure_database, insert_people  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_records"
VOLUNTEERS = 2_000


def load(conn: sa.Connection, records: int) -> None:
    """Users 1 (the coordinator) and 2.. (volunteers), two orgs, and ``records``
    records for each, served over the year before now."""
    insert_people(conn, VOLUNTEERS + 1, coordinators=1)
    conn.execute(
        sa.text(
            """
            INSERT INTO orgs (id, name, kind, district, status, applicant_id, member_count, created_at, updated_at)
            VALUES (1, '鼓楼街道志愿服务站', 'community', 'haishu', 'approved', 1, 1, now(), now()),
                   (2, '鄞州区青年志愿者协会', 'ngo', 'yinzhou', 'approved', 1, 1, now(), now())
            """
        )
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('orgs', 'id'), 2)"))
    conn.execute(
        sa.text(
            "INSERT INTO org_members (org_id, user_id, role, created_at, updated_at) "
            "VALUES (1, 1, 'coordinator', now(), now())"
        )
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO service_records (volunteer_id, org_id, kind, status, posting_kind, activity, minutes,
                                         started_at, ended_at, place, content, evaluation, rating,
                                         recorded_by, created_at)
            SELECT g % :volunteers + 2, g % 2 + 1,
                   CASE WHEN g % 10 = 0 THEN 'honor' ELSE 'credit' END, 'recorded', 'wish',
                   '为独居老人买菜 #' || g, 30 + g % 150,
                   now() - (g % 365) * interval '1 day' - (30 + g % 150) * interval '1 minute',
                   now() - (g % 365) * interval '1 day',
                   '鼓楼街道公园路社区服务中心',
                   '陪王奶奶去菜场买菜，帮忙拎回家，顺便检查了家里的燃气阀门。',
                   '优秀', 5, 1, now() - (g % 365) * interval '1 day' + interval '1 hour'
            FROM generate_series(1, :rows) AS g
            """
        ),
        {"volunteers": VOLUNTEERS, "rows": records * 2},
    )


def export(client, url: str, headers: dict) -> dict:
    """One export, unbuffered; the chunks are counted and dropped."""
    started = time.perf_counter()
    resp = client.get(url, headers=headers, buffered=False)
    assert resp.status_code == 200, resp.status_code
    first_chunk = None
    size = lines = chunks = 0
    head = b""
    for chunk in resp.response:
        if first_chunk is None:
            first_chunk = time.perf_counter() - started
            head = chunk[:3]
        size += len(chunk)
        lines += chunk.count(b"\n")
        chunks += 1
    resp.close()
    return {
        "seconds": time.perf_counter() - started,
        "first_chunk": first_chunk,
        "bytes": size,
        "lines": lines,
        "chunks": chunks,
        "head": head,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def traced_peak(client, url: str, headers: dict) -> float:
    """Peak Python allocations (MB) during one more export."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    export(client, url, headers)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records of the exported org")
    parser.add_argument("--xlsx", action="store_true", help="also export records.xlsx")
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = bench_app(url)
    with app.app_context():
        db.drop_all()
        db.create_all()
        started = time.perf_counter()
        with db.engine.begin() as conn:
            load(conn, args.records)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("users", "volunteers", "service_records"):
                conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
        loaded = time.perf_counter() - started
        print(f"loaded {args.records:,} records of org 1 and {args.records:,} of org 2 in {loaded:.1f} s")
        # a real session: the token's family is checked on every request
        token = issue_tokens(db.session.get(User, 1))["access_token"]
        db.session.commit()
        db.session.remove()

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    runs = [("csv", "/api/v1/orgs/1/records.csv", args.records)]
    if args.xlsx:
        runs.append(("xlsx", "/api/v1/orgs/1/records.xlsx", args.records))
    for name, path, expected in runs:
        rss_before = peak_rss_mb()
        export(client, path, headers)  # warm the caches and the code paths
        result = export(client, path, headers)
        rss_after = peak_rss_mb()
        peak = traced_peak(client, path, headers)
        if name == "csv":
            assert result["head"] == b"\xef\xbb\xbf", result["head"]
            assert result["lines"] == expected + 1, result["lines"]  # the header and one line per record
        print(
            f"{name}: {expected:,} rows, {result['bytes'] / 1024 / 1024:.1f} MB in {result['chunks']} chunks, "
            f"{result['seconds']:.2f} s ({expected / result['seconds']:,.0f} rows/s), "
            f"first chunk after {result['first_chunk'] * 1000:.0f} ms; "
            f"peak Python allocations {peak:.1f} MB; "
            f"process peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after two exports"
        )


if __name__ == "__main__":
    main()
