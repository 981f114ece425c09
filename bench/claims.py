"""Claim throughput under gunicorn on PostgreSQL, and a check for double claims.

    .venv/bin/python bench/claims.py                      # PostgreSQL yz_bench_d, 32 clients
    .venv/bin/python bench/claims.py -n 2000 --clients 16 --workers 2 --threads 8
    .venv/bin/python bench/claims.py --idempotency        # every POST carries an Idempotency-Key

The app runs as it does in production: ``gunicorn wsgi:app`` with gthread
workers, on PostgreSQL, rate limits off. The clients are separate processes
(threads inside them), each with a keep-alive HTTP connection, all real
``POST /api/v1/postings/{id}/claims`` requests with a bearer token:

1. ``distinct``   N volunteers claim N different wishes (no contention but the
                  commit path): claims per second, latency.
2. ``hot``        N volunteers sign up for ONE project with ``--capacity`` places;
                  the rest are waitlisted — every request updates the same row.
3. ``contested``  every client tries every one of ``--contested`` wishes, each
                  with its own volunteer: exactly one winner per wish.

After each phase the database is checked: no wish with two live claims, no
(posting, volunteer) with two live claims, ``claimed_count`` and
``waitlist_count`` equal to the claims that hold them, the hot project exactly
at capacity, and every 201 the clients saw is a row. The database named by
--db is dropped and recreated: never point it at data you want to keep.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from flask_jwt_extended import create_access_token  # noqa: E402

from app import create_app  # noqa: E402
from app.clock import utcnow  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Claim, Posting, RefreshToken, User, Volunteer  # noqa: E402
from app.policy import LIVE_CLAIM_STATUSES, PLACE_CLAIM_STATUSES  # noqa: E402
from app.services.accounts import hash_password  # noqa: E402
from bench import driver  # noqa: E402
from bench.dbsetup import ensure_database  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/yz_bench_d"
SECRET = secrets.token_urlsafe(48)  # made per run: a key written here would be published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=4000, help="claims in the distinct and hot phases")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--client-procs", type=int, default=4, help="client processes (threads split among them)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="gthread threads per worker")
    parser.add_argument("--capacity", type=int, default=100, help="places of the hot project")
    parser.add_argument("--contested", type=int, default=200, help="wishes every client tries in phase 3")
    parser.add_argument("--idempotency", action="store_true", help="send an Idempotency-Key with every claim")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    args = parser.parse_args()

    url = ensure_database(args.db, fresh=True)
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "APP_ENV": "development", "SECRET_KEY": SECRET, "JWT_SECRET_KEY": SECRET}
    )
    print(f"seeding {args.db} ...", flush=True)
    world = seed(app, args)
    server = driver.start_gunicorn(
        "wsgi:app", args.port, workers=args.workers, threads=args.threads, env=driver.app_env(args.db, SECRET)
    )
    try:
        print(
            f"gunicorn: {args.workers} workers x {args.threads} threads (gthread); "
            f"{args.clients} clients in {args.client_procs} processes; idempotency keys: {args.idempotency}\n",
            flush=True,
        )
        distinct = [(f"/api/v1/postings/{w}/claims", t) for w, t in zip(world["wishes"], world["tokens"], strict=True)]
        cpu = driver.server_cpu_seconds(server)
        report("distinct", *run_phase(args, distinct), cpu=driver.server_cpu_seconds(server) - cpu)
        check(app, world, hot_seen=None)

        hot = [(f"/api/v1/postings/{world['project']}/claims", t) for t in world["tokens"]]
        cpu = driver.server_cpu_seconds(server)
        results, elapsed = run_phase(args, hot)
        report("hot", results, elapsed, cpu=driver.server_cpu_seconds(server) - cpu)
        check(app, world, hot_seen=results)

        contested = []
        for client in range(args.clients):
            for k in range(args.contested):
                wish = world["contested"][(k + client * 7) % args.contested]
                contested.append((f"/api/v1/postings/{wish}/claims", world["contested_tokens"][client][k]))
        # each client walks the wishes in its own order; interleave so that clients race
        ordered = [contested[c * args.contested + k] for k in range(args.contested) for c in range(args.clients)]
        cpu = driver.server_cpu_seconds(server)
        results, elapsed = run_phase(args, ordered)
        report("contested", results, elapsed, cpu=driver.server_cpu_seconds(server) - cpu)
        winners = Counter(path for (path, _), (status, _, _, _) in zip(ordered, results, strict=True) if status == 201)
        assert len(winners) == args.contested and set(winners.values()) == {1}, "a contested wish had two winners"
        check(app, world, hot_seen=None)
        print("\nzero double claims: every check passed")
    finally:
        driver.stop(server)


# --- setup ----------------------------------------------------------------------------


def seed(app, args) -> dict:
    """Volunteers, their access tokens, wishes and the hot project, by bulk INSERT."""
    n, contested_n = args.n, args.contested
    volunteers_needed = n + args.clients * contested_n
    with app.app_context():
        db.create_all()
        now = utcnow()
        password = hash_password("bench-password")
        author_id = db.session.execute(
            sa.insert(User)
            .values(
                phone="+8613000000000", password_hash=password, display_name="发布人", created_at=now, updated_at=now
            )
            .returning(User.id)
        ).scalar_one()
        user_ids = []
        for start in range(0, volunteers_needed, 5000):
            rows = [
                {
                    "phone": f"+86139{i:08d}",
                    "password_hash": password,
                    "display_name": f"志愿者{i}",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(start + 5000, volunteers_needed))
            ]
            user_ids += db.session.execute(sa.insert(User).values(rows).returning(User.id)).scalars().all()
        for start in range(0, len(user_ids), 5000):
            chunk = user_ids[start : start + 5000]
            db.session.execute(
                sa.insert(Volunteer),
                [
                    {
                        "user_id": uid,
                        "volunteer_no": f"NB{uid:08d}",
                        "real_name": "志愿者",
                        "id_hash": hashlib.sha256(str(uid).encode()).hexdigest(),
                        "id_masked": "3302**********0000",
                        "district": "haishu",
                        "skills": [],
                        "registered_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for uid in chunk
                ],
            )

        def postings(count, **values):
            rows = [
                {
                    "title": f"心愿{i}",
                    "description": "bench",
                    "district": "haishu",
                    "author_id": author_id,
                    "status": "open",
                    "lat": 29.87,
                    "lng": 121.55,
                    "photo_urls": [],
                    "created_at": now,
                    "updated_at": now,
                    **values,
                }
                for i in range(count)
            ]
            return db.session.execute(sa.insert(Posting).values(rows).returning(Posting.id)).scalars().all()

        wish = {"kind": "wish", "capacity": 1, "expires_at": now + timedelta(days=30), "claim_ttl_hours": 168}
        wishes = postings(n, **wish)
        contested = postings(contested_n, **wish)
        project = postings(
            1,
            kind="project",
            capacity=args.capacity,
            starts_at=now + timedelta(days=2),
            ends_at=now + timedelta(days=2, hours=3),
        )[0]
        # The tokens' family, as a login would have opened it (a family nobody issued is revoked).
        db.session.add(
            RefreshToken(jti="bench", family_id="bench", user_id=user_ids[0], expires_at=now + timedelta(days=1))
        )
        db.session.commit()
        expiry = timedelta(hours=2)
        tokens = [
            create_access_token(identity=str(uid), additional_claims={"fam": "bench"}, expires_delta=expiry)
            for uid in user_ids
        ]
    contested_tokens = [tokens[n + c * contested_n : n + (c + 1) * contested_n] for c in range(args.clients)]
    return {
        "wishes": wishes,
        "contested": contested,
        "project": project,
        "tokens": tokens[:n],
        "contested_tokens": contested_tokens,
    }


# --- the clients ---------------------------------------------------------------------------


def run_phase(args, requests: list[tuple[str, str]]) -> tuple[list[tuple], float]:
    """Send ``requests`` (path, token) from ``--clients`` connections at once;
    returns (status, error slug or claim status, claim id, seconds) per request,
    in order, and the wall-clock time of the phase."""
    slices = [list(range(c, len(requests), args.clients)) for c in range(args.clients)]
    per_proc = [slices[p :: args.client_procs] for p in range(args.client_procs)]
    jobs = [([[(i, requests[i]) for i in s] for s in group], args.port, args.idempotency) for group in per_proc]
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.client_procs) as pool:
        parts = pool.map(_client_process, jobs)
    elapsed = time.perf_counter() - start
    results: list = [None] * len(requests)
    for part in parts:
        for i, outcome in part:
            results[i] = outcome
    return results, elapsed


def _client_process(job):
    slices, port, idempotency = job
    with ThreadPoolExecutor(max_workers=len(slices)) as pool:
        parts = list(pool.map(lambda s: _client(s, port, idempotency), slices))
    return [item for part in parts for item in part]


def _client(items, port, idempotency):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    for i, (path, token) in items:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if idempotency:
            headers["Idempotency-Key"] = f"bench-{i}-{path}"
        t0 = time.perf_counter()
        conn.request("POST", path, body=b"{}", headers=headers)
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
        latency = time.perf_counter() - t0
        slug = body.get("status") if resp.status < 400 else body.get("error")
        out.append((i, (resp.status, slug, body.get("id") if resp.status < 400 else None, latency)))
    conn.close()
    return out


# --- figures and checks -----------------------------------------------------------------


def report(name: str, results: list[tuple], elapsed: float, cpu: float | None = None) -> None:
    latencies = sorted(r[3] for r in results)
    outcomes = Counter((r[0], r[1]) for r in results)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    print(
        f"{name:10s} {len(results):6d} requests in {elapsed:6.2f} s = {len(results) / elapsed:7.1f} claims/s   "
        f"latency ms p50 {pct(50):6.1f}  p95 {pct(95):6.1f}  p99 {pct(99):6.1f}  max {latencies[-1] * 1000:6.1f}   "
        f"mean {statistics.fmean(latencies) * 1000:6.1f}"
        + (f"   server CPU {cpu * 1000 / len(results):5.2f} ms/request" if cpu is not None else "")
    )
    print(f"{'':10s} outcomes: {dict(sorted(outcomes.items()))}")
    unexpected = {k: v for k, v in outcomes.items() if k[0] >= 500 or k[0] in (401, 422)}
    assert not unexpected, f"unexpected answers {unexpected}"


def check(app, world, hot_seen) -> None:
    with app.app_context():
        doubles = db.session.execute(
            sa.select(Claim.posting_id)
            .where(Claim.kind == "wish", Claim.status.in_(LIVE_CLAIM_STATUSES))
            .group_by(Claim.posting_id)
            .having(sa.func.count() > 1)
        ).all()
        assert not doubles, f"wishes with two live claims: {doubles[:10]}"
        twice = db.session.execute(
            sa.select(Claim.posting_id, Claim.user_id)
            .where(Claim.status.in_(LIVE_CLAIM_STATUSES))
            .group_by(Claim.posting_id, Claim.user_id)
            .having(sa.func.count() > 1)
        ).all()
        assert not twice, f"volunteers holding two live claims on one posting: {twice[:10]}"
        held = (
            sa.select(Claim.posting_id, sa.func.count().label("n"))
            .where(Claim.status.in_(PLACE_CLAIM_STATUSES))
            .group_by(Claim.posting_id)
            .subquery()
        )
        waiting = (
            sa.select(Claim.posting_id, sa.func.count().label("n"))
            .where(Claim.status == "waitlisted")
            .group_by(Claim.posting_id)
            .subquery()
        )
        drift = db.session.execute(
            sa.select(Posting.id, Posting.claimed_count, held.c.n, Posting.waitlist_count, waiting.c.n)
            .outerjoin(held, held.c.posting_id == Posting.id)
            .outerjoin(waiting, waiting.c.posting_id == Posting.id)
            .where(
                sa.or_(
                    Posting.claimed_count != sa.func.coalesce(held.c.n, 0),
                    Posting.waitlist_count != sa.func.coalesce(waiting.c.n, 0),
                )
            )
        ).all()
        assert not drift, f"counters out of step with the claims: {drift[:10]}"
        over = db.session.scalar(
            sa.select(sa.func.count(Posting.id)).where(
                Posting.capacity.is_not(None), Posting.claimed_count > Posting.capacity
            )
        )
        assert over == 0
        limit_breach = db.session.scalar(
            sa.select(sa.func.count(Volunteer.id)).where(
                Volunteer.active_wish_claims > app.config["ACTIVE_WISH_CLAIM_LIMIT"]
            )
        )
        assert limit_breach == 0
        if hot_seen is not None:
            project = db.session.get(Posting, world["project"])
            statuses = Counter(r[1] for r in hot_seen if r[0] == 201)
            rows = dict(
                db.session.execute(
                    sa.select(Claim.status, sa.func.count())
                    .where(Claim.posting_id == project.id)
                    .group_by(Claim.status)
                ).all()
            )
            assert project.claimed_count == project.capacity == rows.get("active", 0) == statuses["active"]
            assert project.waitlist_count == rows.get("waitlisted", 0) == statuses["waitlisted"]
            print(
                f"{'':10s} hot project: {project.claimed_count}/{project.capacity} active, "
                f"{project.waitlist_count} waitlisted, status {project.status}"
            )
        seen_ids = db.session.scalar(sa.select(sa.func.count(Claim.id)))
        print(f"{'':10s} checks passed ({seen_ids} claim rows in all)")


if __name__ == "__main__":
    main()
