"""Benchmark: a coordinator approves 1,000 pending records in bulk, through the real route.

On PostgreSQL (default ``postgresql://postgres@127.0.0.1:5432/yz_bench_approve``,
or ``BENCH_DATABASE_URL``; created if missing, its tables rebuilt), bulk-loads
with generate_series one org, two coordinators (the one who made the records
and the one who approves them), V volunteers (default 200) and N pending
credit records (default 1,000; each on a claim of its own, so each mints its
energy), none overlapping. Then ``POST /api/v1/orgs/1/records/approve`` runs
through the whole app (JWT, schema, permission check, one conditional UPDATE
per call, the counters and energy of each volunteer, one ``record_approved``
per record) with Flask's test client, 100 ids a call — the most a call
takes — until all are approved.

Printed: the wall time of the whole approval, per call (min / median / max),
per record, and checks that every record is recorded, each volunteer's credit
minutes and energy balance equal what their records add up to, and that the
ledger holds one ``service_hours`` entry per record.

    APP_ENV=development .venv/bin/python bench/approve_records.py [--records 1000] [--volunteers 200]
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

from app.extensions import db  # noqa: E402
from app.models import User  # noqa: E402
from app.policy import MAX_BULK_APPROVAL  # noqa: E402
from app.services.tokens import issue_tokens  # noqa: E402
from bench.dbsetup import bench_app, ensure_database, insert_people  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_approve"


def load(conn: sa.Connection, records: int, volunteers: int) -> None:
    """Users 1 and 2 (coordinators of org 1), 3.. (volunteers), a project, and
    ``records`` pending records (one claim each) made by coordinator 1, each
    volunteer's records a day apart."""
    insert_people(conn, volunteers + 2, coordinators=2)
    conn.execute(
        sa.text(
            "INSERT INTO orgs (id, name, kind, district, status, applicant_id, member_count, created_at, updated_at)"
            " VALUES (1, '鼓楼街道志愿服务站', 'community', 'haishu', 'approved', 1, 2, now(), now())"
        )
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('orgs', 'id'), 1)"))
    conn.execute(
        sa.text(
            "INSERT INTO org_members (org_id, user_id, role, created_at, updated_at) "
            "VALUES (1, 1, 'coordinator', now(), now()), (1, 2, 'coordinator', now(), now())"
        )
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO postings (id, kind, title, description, status, district, org_id, author_id, capacity,
                                  claimed_count, waitlist_count, photo_urls, created_at, updated_at)
            VALUES (1, 'wish', '为独居老人买菜', '详情', 'closed', 'haishu', 1, 1, 1, 1, 0, '[]'::json,
                    now() - interval '400 days', now())
            """
        )
    )
    conn.execute(
        sa.text(
            """
            INSERT INTO claims (id, posting_id, user_id, kind, status, claimed_at, photo_urls, energy_debited,
                                reminder_stage, auto_confirmed, minutes, created_at, updated_at)
            SELECT g, 1, g % :volunteers + 3, 'wish', 'confirmed', now() - interval '300 days', '[]'::json, 0, 0,
                   true, 90, now(), now()
            FROM generate_series(1, :rows) AS g
            """
        ),
        {"volunteers": volunteers, "rows": records},
    )
    conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('claims', 'id'), :n)"), {"n": records})
    conn.execute(
        sa.text(
            """
            INSERT INTO service_records (volunteer_id, posting_id, claim_id, org_id, kind, status, posting_kind,
                                         activity, minutes, started_at, ended_at, place, content, recorded_by,
                                         created_at)
            SELECT g % :volunteers + 3, 1, g, 1, 'credit', 'pending', 'wish', '为独居老人买菜 #' || g, 90,
                   now() - (g / :volunteers + 1) * interval '1 day' - interval '90 minutes',
                   now() - (g / :volunteers + 1) * interval '1 day',
                   '鼓楼街道公园路社区', '陪王奶奶去菜场买菜。', 1, now() - interval '1 hour' + g * interval '1 ms'
            FROM generate_series(1, :rows) AS g
            """
        ),
        {"volunteers": volunteers, "rows": records},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000, help="pending records to approve")
    parser.add_argument("--volunteers", type=int, default=200, help="volunteers the records belong to")
    args = parser.parse_args()

    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    app = bench_app(url, PUSH_BACKEND="memory")
    with app.app_context():
        db.drop_all()
        db.create_all()
        with db.engine.begin() as conn:
            load(conn, args.records, args.volunteers)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("users", "volunteers", "claims", "service_records"):
                conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
        ids = db.session.scalars(
            sa.select(sa.column("id")).select_from(sa.table("service_records")).order_by(sa.column("id"))
        ).all()
        # coordinator 2 approves what coordinator 1 made (a real session: the token's family is checked)
        token = issue_tokens(db.session.get(User, 2))["access_token"]
        db.session.commit()
        db.session.remove()
    print(f"loaded {len(ids):,} pending records of {args.volunteers} volunteers")

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    calls = []
    approved = 0
    started = time.perf_counter()
    for i in range(0, len(ids), MAX_BULK_APPROVAL):
        batch = ids[i : i + MAX_BULK_APPROVAL]
        call_started = time.perf_counter()
        resp = client.post("/api/v1/orgs/1/records/approve", json={"ids": batch}, headers=headers)
        calls.append(time.perf_counter() - call_started)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["skipped"] == [], resp.get_json()
        approved += len(resp.get_json()["approved"])
    total = time.perf_counter() - started

    with app.app_context():
        pending = db.session.scalar(sa.text("SELECT count(*) FROM service_records WHERE status <> 'recorded'"))
        drift = db.session.scalar(
            sa.text(
                """
                SELECT count(*) FROM volunteers v
                WHERE v.credit_minutes <> (SELECT coalesce(sum(minutes), 0) FROM service_records r
                                           WHERE r.volunteer_id = v.user_id AND r.status = 'recorded')
                   OR v.energy_balance <> (SELECT coalesce(sum(delta), 0) FROM energy_ledger e
                                           WHERE e.user_id = v.user_id)
                """
            )
        )
        hours_entries = db.session.scalar(sa.text("SELECT count(*) FROM energy_ledger WHERE reason = 'service_hours'"))
        told = db.session.scalar(sa.text("SELECT count(*) FROM notifications WHERE kind = 'record_approved'"))
        db.engine.dispose()
    assert (approved, pending, drift, hours_entries, told) == (len(ids), 0, 0, len(ids), len(ids))
    print(
        f"approved {approved:,} records in {len(calls)} calls of {MAX_BULK_APPROVAL}: {total:.2f} s "
        f"({total / approved * 1000:.2f} ms a record); a call: min {min(calls) * 1000:.0f} ms, "
        f"median {statistics.median(calls) * 1000:.0f} ms, max {max(calls) * 1000:.0f} ms"
    )
    print("checked: every record recorded; credit minutes and energy equal the records; one ledger entry each")


if __name__ == "__main__":
    main()
