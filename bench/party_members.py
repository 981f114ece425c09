"""Benchmark: a party branch's list and CSV report of its members' service (双报到).

On PostgreSQL (default ``postgresql://postgres@127.0.0.1:5432/yz_bench_party``,
or ``BENCH_DATABASE_URL``; created if missing, its tables rebuilt), bulk-loads
with generate_series (no ORM) a branch (org 1) of N party members (default
5,000), each reporting to one of 50 communities, among twice as many other
volunteers; a year of service records for everyone (default 60 a person, a
tenth of them pending or rejected, spread over ten orgs), and a year of wish
claims (default 12 a person, most of them done). Then, through the whole app
(JWT, schema, permission check) with Flask's test client:

- ``GET /api/v1/orgs/1/party-members?from=…&to=…&limit=100``, the first page
  and a page in the middle, over the last 12 months;
- ``GET /api/v1/orgs/1/party-members.csv?from=…&to=…`` for the same year,
  every member, unbuffered (chunks counted and dropped as they arrive);
- a community's list, ``GET /api/v1/orgs/2/party-members``.

Each is run once to warm up, then timed ``--runs`` times (best and median printed).

    .venv/bin/python bench/party_members.py [--members 5000] [--records 60] [--claims 12] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from app.clock import local_date, utcnow  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import User  # noqa: E402
from app.services.tokens import issue_tokens  # noqa: E402
from bench.dbsetup import bench_app, ensure_database, insert_people  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_party"
COMMUNITIES = 50
OTHER_ORGS = 10


def load(conn: sa.Connection, members: int, records: int, claims: int) -> None:
    """User 1 coordinates the branch (org 1) and the first community (org 2); users
    2..members+1 are the branch's members, each reporting to a community; as many again
    (twice) are other volunteers. Orgs 2..51 are communities, 52..61 other orgs."""
    people = 1 + members * 3
    insert_people(conn, people, coordinators=1)
    conn.execute(
        sa.text(
            """
            INSERT INTO orgs (id, name, kind, district, status, applicant_id, member_count, created_at, updated_at)
            SELECT 1, '鼓楼街道第一党支部', 'party_branch', 'haishu', 'approved', 1, :members + 1, now(), now()
            UNION ALL
            SELECT g, '社区' || g, 'community', 'haishu', 'approved', 1, 1, now(), now()
            FROM generate_series(2, :communities + 1) AS g
            UNION ALL
            SELECT g, '志愿组织' || g, 'ngo', 'yinzhou', 'approved', 1, 1, now(), now()
            FROM generate_series(:communities + 2, :communities + :others + 1) AS g
            """
        ),
        {"members": members, "communities": COMMUNITIES, "others": OTHER_ORGS},
    )
    last_org = COMMUNITIES + OTHER_ORGS + 1
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('orgs', 'id'), :n)"), {"n": last_org})
    conn.execute(
        sa.text(
            """
            INSERT INTO org_members (org_id, user_id, role, created_at, updated_at)
            SELECT 1, 1, 'coordinator', now(), now() UNION ALL SELECT 2, 1, 'coordinator', now(), now()
            UNION ALL
            SELECT 1, g, 'member', now(), now() FROM generate_series(2, :members + 1) AS g
            UNION ALL
            SELECT :communities + 2 + g % :others, g, 'member', now(), now()
            FROM generate_series(:members + 2, :people) AS g
            """
        ),
        {"members": members, "people": people, "communities": COMMUNITIES, "others": OTHER_ORGS},
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO community_reports (user_id, org_id, created_at, updated_at)
            SELECT g, 2 + g % :communities, now(), now() FROM generate_series(2, :members + 1) AS g
            """
        ),
        {"members": members, "communities": COMMUNITIES},
    )
    # a year of records for everyone (user 2..people), any org's; one in ten not recorded
    conn.execute(
        sa.text(
            """
            INSERT INTO service_records (volunteer_id, org_id, kind, status, posting_kind, activity, minutes,
                                         started_at, ended_at, place, content, evaluation, rating,
                                         recorded_by, created_at)
            SELECT 2 + g % (:people - 1), 2 + g % (:orgs - 1),
                   CASE WHEN g % 10 = 0 THEN 'honor' ELSE 'credit' END,
                   CASE (g / (:people - 1)) % 20 WHEN 0 THEN 'pending' WHEN 1 THEN 'rejected' ELSE 'recorded' END,
                   'wish',
                   '为独居老人买菜 #' || g, 30 + g % 150,
                   now() - (g % 365) * interval '1 day' - (30 + g % 150) * interval '1 minute',
                   now() - (g % 365) * interval '1 day',
                   '鼓楼街道公园路社区服务中心', '陪王奶奶去菜场买菜。', '优秀', 5, 1,
                   now() - (g % 365) * interval '1 day' + interval '1 hour'
            FROM generate_series(1, :rows) AS g
            """
        ),
        {"people": people, "orgs": last_org, "rows": (people - 1) * records},
    )
    # a year of wishes, one claim each; most marked done
    wishes = (people - 1) * claims
    conn.execute(
        sa.text(
            """
            INSERT INTO postings (id, kind, title, description, status, district, org_id, author_id, capacity,
                                  claimed_count, waitlist_count, photo_urls, created_at, updated_at)
            SELECT g, 'wish', '心愿' || g, '详情', 'closed', 'haishu', 2 + g % :communities, 1, 1, 1, 0,
                   '[]'::json, now() - (g % 365) * interval '1 day', now()
            FROM generate_series(1, :wishes) AS g
            """
        ),
        {"wishes": wishes, "communities": COMMUNITIES},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('postings', 'id'), :n)"), {"n": wishes})
    conn.execute(
        sa.text(
            """
            INSERT INTO claims (posting_id, user_id, kind, status, claimed_at, fulfilled_at, photo_urls,
                                energy_debited, reminder_stage, auto_confirmed, created_at, updated_at)
            SELECT g, 2 + g % (:people - 1), 'wish', CASE WHEN g % 8 = 0 THEN 'released' ELSE 'confirmed' END,
                   now() - (g % 365) * interval '1 day' - interval '2 days',
                   CASE WHEN g % 8 = 0 THEN NULL ELSE now() - (g % 365) * interval '1 day' END,
                   '[]'::json, 0, 0, false, now(), now()
            FROM generate_series(1, :wishes) AS g
            """
        ),
        {"wishes": wishes, "people": people},
    )


def timed(client, url: str, headers: dict, runs: int, check) -> list[float]:
    """Warm once, then ``runs`` timed requests (unbuffered: a download's chunks are
    read and dropped as they arrive)."""
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        resp = client.get(url, headers=headers, buffered=False)
        assert resp.status_code == 200, (url, resp.status_code)
        body = b"".join(resp.response) if check is not None else b""
        resp.close()
        if i:
            times.append(time.perf_counter() - started)
        if check is not None and i == 0:
            check(body)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=5_000, help="party members of the branch")
    parser.add_argument("--records", type=int, default=60, help="records a person over the year")
    parser.add_argument("--claims", type=int, default=12, help="wish claims a person over the year")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = bench_app(url)
    with app.app_context():
        db.drop_all()
        db.create_all()
        started = time.perf_counter()
        with db.engine.begin() as conn:
            load(conn, args.members, args.records, args.claims)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("users", "volunteers", "orgs", "org_members", "community_reports", "service_records"):
                conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
            conn.execute(sa.text("VACUUM ANALYZE postings"))
            conn.execute(sa.text("VACUUM ANALYZE claims"))
            counts = {
                table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}"))  # noqa: S608 - fixed names
                for table in ("users", "service_records", "claims")
            }
        loaded = time.perf_counter() - started
        print(f"loaded in {loaded:.1f} s: " + ", ".join(f"{n:,} {table}" for table, n in counts.items()))
        token = issue_tokens(db.session.get(User, 1))["access_token"]
        today = local_date(utcnow())
        db.session.commit()
        db.session.remove()

    first = today.replace(year=today.year - 1) if not (today.month == 2 and today.day == 29) else today
    period = f"from={first.isoformat()}&to={today.isoformat()}"
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def page_check(body):
        import json

        items = json.loads(body)["items"]
        assert len(items) == 100 and all(i["recorded_hours"] > 0 for i in items[1:]), items[:2]

    def csv_check(body):
        assert body.startswith(b"\xef\xbb\xbf"), body[:3]
        assert body.count(b"\n") == args.members + 2, body.count(b"\n")  # header, the coordinator, the members

    middle = None
    with app.test_request_context():
        from app.services.pagination import encode_cursor

        middle = encode_cursor([args.members // 2])
    runs = [
        ("list, first page of 100", f"/api/v1/orgs/1/party-members?{period}&limit=100", page_check),
        ("list, a page in the middle", f"/api/v1/orgs/1/party-members?{period}&limit=100&cursor={middle}", page_check),
        ("community list, first page of 100", f"/api/v1/orgs/2/party-members?{period}&limit=100", None),
        (f"CSV, {args.members:,} members", f"/api/v1/orgs/1/party-members.csv?{period}", csv_check),
    ]
    for name, path, check in runs:
        times = timed(client, path, headers, args.runs, check)
        print(f"{name}: best {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
