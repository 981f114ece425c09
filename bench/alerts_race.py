"""Withdrawals racing the release job: do the nearby alerts (微呼百应) hold anyone up?

    .venv/bin/python bench/alerts_race.py [--volunteers 100000] [--overdue 500] [--withdrawals 200] [--workers 8]

On PostgreSQL (``yz_bench_alerts``, or ``BENCH_DATABASE_URL``; dropped and
rebuilt), loads V volunteers over Ningbo (bench/nearby.py's mixture: dense
around the old town), ``--overdue`` wishes in the old town whose active claims
are past due, and ``--withdrawals`` more wishes there with active claims. Then,
all at once:

- one thread runs ``release_overdue_claims`` (it reopens the overdue wishes:
  every one is news for ~500 volunteers nearby) and then ``alert_nearby``
  until no alert is left to send — the scheduler's work;
- ``--workers`` threads withdraw the other claims through
  ``claims.withdraw_claim`` — a request's whole database work: the
  withdrawal's transaction, its commit, then its own wish's alerts fanned out
  after the commit (or left to the job when a lock is held).

It prints each withdrawal's time (p50, p95, max, how many over 1 s), the
release job's and the alert job's, and checks the caps: nobody more than 3
alerts today, no wish more than 500, the allowances equal to the alerts sent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app, jobs  # noqa: E402
from app.extensions import db  # noqa: E402
from app.geo import GEOCELL_DEG  # noqa: E402
from app.models import NearbyAlertAllowance, NearbyAlertRequest, Notification, User  # noqa: E402
from app.services import claims, nearby_alerts  # noqa: E402
from app.services.permissions import Actor  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, ensure_database  # noqa: E402
from bench.nearby import AUTHORS, CENTRE, load_volunteers  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/yz_bench_alerts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volunteers", type=int, default=100_000)
    parser.add_argument("--overdue", type=int, default=500, help="overdue claims the release job releases")
    parser.add_argument("--withdrawals", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8, help="threads withdrawing at once")
    args = parser.parse_args()
    url = ensure_database(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL), fresh=True)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "APP_ENV": "development", "PUSH_BACKEND": "log", **LOADER_CONFIG})
    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        overdue, held = load(args)
        print(f"loaded in {time.perf_counter() - started:.0f} s: {args.volunteers:,} volunteers, "
              f"{len(overdue)} overdue claims, {len(held)} claims to withdraw")  # fmt: skip
    # the app as it serves: the web's statement timeout (5 s) for the withdrawals
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "APP_ENV": "development", "PUSH_BACKEND": "log"})
    barrier = threading.Barrier(args.workers + 1)
    timings: dict[str, float] = {}

    def scheduler() -> None:
        with app.app_context():
            barrier.wait()
            t0 = time.perf_counter()
            released = jobs.release_overdue_claims()
            timings["release"] = time.perf_counter() - t0
            timings["released"] = released["released"]
            t1 = time.perf_counter()
            sent = Counter()
            while True:
                result = jobs.alert_nearby()
                sent.update(postings=result["postings"], alerted=result["alerted"])
                if not result["postings"] and not nearby_alerts.next_requested():
                    break
            timings["alert_job"] = time.perf_counter() - t1
            timings.update(sent)

    def withdraw(item: tuple[int, int]) -> tuple[float, str]:
        claim_id, user_id = item
        with app.app_context():
            t0 = time.perf_counter()
            try:
                claims.withdraw_claim(Actor(db.session.get(User, user_id)), claim_id)
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001 - counted and shown
                db.session.rollback()
                outcome = type(exc).__name__
            return time.perf_counter() - t0, outcome

    def worker(items: list[tuple[int, int]]) -> list[tuple[float, str]]:
        barrier.wait()
        return [withdraw(item) for item in items]

    shares = [held[i :: args.workers] for i in range(args.workers)]
    with ThreadPoolExecutor(max_workers=args.workers + 1) as pool:
        job = pool.submit(scheduler)
        results = [r for share in pool.map(worker, shares) for r in share]
        job.result()
    with app.app_context():
        while jobs.alert_nearby()["postings"]:  # what withdrawals left to the job
            pass
        report(args, results, timings)


def load(args) -> tuple[list[int], list[tuple[int, int]]]:
    """Authors, volunteers, and the wishes with their claims, straight in SQL."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO users (id, phone, password_hash, display_name, is_admin, locale, timezone, muted_kinds,"
                " nearby_alerts, created_at, updated_at) SELECT g, '+86139' || lpad(g::text, 8, '0'), 'bench',"
                " '作者' || g, false, 'zh-CN', 'Asia/Shanghai', '[]'::json, false, now(), now()"
                " FROM generate_series(1, :n) AS g"
            ),
            {"n": AUTHORS},
        )
        load_volunteers(conn, args.volunteers)
        wishes = args.overdue + args.withdrawals
        # wishes within ~2 km of the old town, each claimed by its own volunteer (far ids, alerts off for them)
        conn.execute(
            sa.text(
                """
                INSERT INTO postings (id, kind, title, description, status, district, lat, lng, geocell, author_id,
                                      capacity, claimed_count, waitlist_count, photo_urls, claim_ttl_hours,
                                      created_at, updated_at)
                SELECT g, 'wish', '心愿' || g, '帮忙', 'claimed', 'haishu', lat, lng,
                       floor((lat + 90) / :deg)::bigint * 100000 + floor((lng + 180) / :deg)::bigint,
                       1, 1, 1, 0, '[]', 168, now(), now()
                FROM (SELECT g, :clat + (random() - 0.5) * 0.036 AS lat, :clng + (random() - 0.5) * 0.04 AS lng
                      FROM generate_series(1, :w) AS g) AS p
                """
            ),
            {"w": wishes, "deg": GEOCELL_DEG, "clat": CENTRE[0], "clng": CENTRE[1]},
        )
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('postings', 'id'), :n)"), {"n": wishes})
        claimant = AUTHORS + args.volunteers  # the last volunteers claim (one wish each)
        conn.execute(
            sa.text(
                """
                INSERT INTO claims (id, posting_id, user_id, kind, status, claimed_at, due_at, photo_urls,
                                    created_at, updated_at)
                SELECT g, g, :last - g + 1, 'wish', 'active', now() - interval '8 days',
                       CASE WHEN g <= :overdue THEN now() - interval '1 minute' ELSE now() + interval '1 day' END,
                       '[]', now(), now()
                FROM generate_series(1, :w) AS g
                """
            ),
            {"w": wishes, "overdue": args.overdue, "last": claimant},
        )
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('claims', 'id'), :n)"), {"n": wishes})
        conn.execute(
            sa.text("UPDATE volunteers SET active_wish_claims = 1 WHERE user_id > :first"),
            {"first": claimant - wishes},
        )
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    overdue = list(range(1, args.overdue + 1))
    held = [
        (g, AUTHORS + args.volunteers - g + 1) for g in range(args.overdue + 1, args.overdue + args.withdrawals + 1)
    ]
    return overdue, held


def report(args, results: list[tuple[float, str]], timings: dict) -> None:
    seconds = sorted(s for s, _ in results)
    outcomes = Counter(outcome for _, outcome in results)
    per_user = Counter(db.session.scalars(sa.select(Notification.user_id).where(Notification.kind == "nearby_posting")))
    per_posting = Counter(
        data["posting_id"]
        for data in db.session.scalars(sa.select(Notification.data).where(Notification.kind == "nearby_posting"))
    )
    allowances = dict(db.session.execute(sa.select(NearbyAlertAllowance.user_id, NearbyAlertAllowance.alerts)).all())
    left = db.session.scalar(sa.select(sa.func.count()).select_from(NearbyAlertRequest))
    load = os.getloadavg()
    print()
    print(
        f"alerts race: {args.volunteers:,} volunteers, release job reopening {args.overdue} wishes, "
        f"{args.withdrawals} withdrawals from {args.workers} threads; load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}"
    )
    print(f"  withdrawals: {dict(outcomes)}")
    print(
        f"  withdrawal time: p50 {statistics.median(seconds) * 1000:.0f} ms, "
        f"p95 {seconds[int(len(seconds) * 0.95) - 1] * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms, "
        f"over 1 s: {sum(s > 1 for s in seconds)}"
    )
    print(
        f"  release job: {timings.get('released', 0)} released in {timings.get('release', 0):.1f} s; "
        f"alert job: {timings.get('postings', 0)} postings, {timings.get('alerted', 0):,} alerts in "
        f"{timings.get('alert_job', 0):.1f} s"
    )
    print(
        f"  alerts: {sum(per_user.values()):,} to {len(per_user):,} volunteers; most to one volunteer "
        f"{max(per_user.values(), default=0)}, most for one wish {max(per_posting.values(), default=0)}; "
        f"allowances agree: {allowances == dict(per_user)}; requests left: {left}"
    )
    if max(per_user.values(), default=0) > nearby_alerts.DAILY_LIMIT or allowances != dict(per_user) or left:
        raise SystemExit("FAILED: a cap was passed or an alert is missing")


if __name__ == "__main__":
    main()
