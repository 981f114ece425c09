"""Push throughput: the outbox dispatcher through firebase-admin, against the ceiling.

    .venv/bin/python bench/push.py                       # 100,000 on PostgreSQL yz_bench_c
    .venv/bin/python bench/push.py -n 20000 --db sqlite:////tmp/push-bench.sqlite

The fake FCM (tests/fake_fcm.py) runs in its own process on loopback, so it
does not share a GIL with the client. The database gets N users, each with
one Android device token, and N pending notifications (written by
notify_each, so the enqueue rate is measured too). Then, in the same run:

1. ``dispatcher``   dispatch_until_empty(): claim → send_each → record, all of it;
2. ``send_each``    FcmSender.send() on the same N messages, no database;
3. ``send_each_async`` the SDK's asyncio/httpx variant, one event loop, 500 per call
                    (on --async-n messages only: it is an order of magnitude slower);
4. ``ceiling``      a bare script: the same request bodies posted with the same
                    HTTP client (google-auth's AuthorizedSession on requests, the
                    same adapter) from a persistent pool of W threads, for each W
                    in --ceiling-workers.

Each phase's count is checked against the fake's own count of accepted sends.
The database named by --db is dropped and recreated: never point it at data
you want to keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests.adapters  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from firebase_admin import _http_client, messaging  # noqa: E402
from google.auth.transport.requests import AuthorizedSession  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Device, Notification, User  # noqa: E402
from app.outbox import notify_each  # noqa: E402
from bench.dbsetup import ensure_database  # noqa: E402
from notifications.dispatch import dispatch_until_empty  # noqa: E402
from notifications.senders import PushMessage, PushResult  # noqa: E402
from notifications.senders.fcm import MAX_BATCH, FcmSender, build_message, sdk_retry  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/yz_bench_c"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100_000, help="notifications (and device tokens)")
    parser.add_argument("--db", default=DEFAULT_DB, help="database URL (dropped and recreated)")
    parser.add_argument("--batch", type=int, default=500, help="dispatcher batch size")
    parser.add_argument("--ceiling-workers", default="500,64", help="thread counts for the bare client")
    parser.add_argument("--async-n", type=int, default=5_000, help="messages for the (slow) send_each_async phase")
    parser.add_argument("--skip", default="", help="comma-separated phases to skip")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    skip = set(filter(None, args.skip.split(",")))

    fake_proc, fake = start_fake()
    try:
        app = create_app(
            {
                "SQLALCHEMY_DATABASE_URI": ensure_database(args.db),
                "APP_ENV": "development",
                "PUSH_BACKEND": "fcm",
                "FCM_ENDPOINT": fake["url"],
                "FIREBASE_CREDENTIALS": json.dumps(fake["service_account"]),
                "FCM_TIMEOUT_SECONDS": 30,
                "RATELIMIT_ENABLED": False,
            }
        )
        with app.app_context():
            report = run_phases(args, skip, fake)
        print_report(args, report)
    finally:
        fake_proc.stdin.close()
        fake_proc.wait(timeout=10)


@dataclass
class Result:
    name: str
    count: int
    wall: float
    client_cpu: float
    fake_cpu: float
    notes: str


def run_phases(args, skip: set[str], fake: dict) -> list[Result]:
    n = args.n
    report: list[Result] = []
    db.drop_all()
    db.create_all()
    seed_started = (time.perf_counter(), time.process_time())
    enqueue_seconds = seed(n)
    report.append(
        Result(
            "enqueue (notify_each, 1,000 per call)",
            n,
            enqueue_seconds,
            time.process_time() - seed_started[1],
            0,
            "rows written; CPU includes seeding users/devices",
        )
    )
    sender = FcmSender(fake["service_account"], fake["url"], timeout=30)

    def phase(name: str, expected_accepted: int, run, notes: str, count: int = n) -> None:
        before, cpu0, t0 = fake_stats(fake), time.process_time(), time.perf_counter()
        delivered, extra = run()
        wall, cpu, after = time.perf_counter() - t0, time.process_time() - cpu0, fake_stats(fake)
        got = after["accepted"] - before["accepted"]
        if got != expected_accepted or delivered != count:
            raise SystemExit(f"{name}: expected {count}, the fake accepted {got}, the client saw {delivered}")
        report.append(Result(name, count, wall, cpu, after["cpu_seconds"] - before["cpu_seconds"], extra or notes))

    if "dispatcher" not in skip:
        phase("dispatcher, null sender (DB only)", 0, lambda: dispatch_all(args.batch, NullSender()), "")
        reset_outbox()
        phase("dispatcher (DB + send_each)", n, lambda: dispatch_all(args.batch, sender), "")

    messages = [
        PushMessage(
            i,
            f"bench-token-{i + 1:07d}",
            "android",
            "心愿被认领啦",
            "小陈认领了您的「帮王奶奶买菜」。",
            {"kind": "wish_claimed", "posting_id": str(i), "claim_id": str(i)},
            f"posting-{i}",
            True,
        )
        for i in range(n)
    ]
    if "send_each" not in skip:
        phase(
            "send_each alone (no DB)",
            n,
            lambda: (sum(r.outcome == "sent" for r in sender.send(messages)), None),
            f"{MAX_BATCH} threads started per call",
        )
    if "async" not in skip:
        few = messages[: min(n, args.async_n)]
        phase(
            "send_each_async (no DB)",
            len(few),
            lambda: (run_send_each_async(sender, few), None),
            "httpx, one event loop",
            count=len(few),
        )
    bodies = [{"message": messaging._MessagingService.encode_message(build_message(m))} for m in messages]
    for workers in [int(w) for w in args.ceiling_workers.split(",") if w] if "ceiling" not in skip else []:
        phase(
            f"ceiling: bare client, {workers} threads",
            n,
            lambda workers=workers: (run_ceiling(sender, fake["url"], bodies, workers), None),
            "same bodies, same client, pool made once",
        )
    sender.close()
    return report


# --- setup -----------------------------------------------------------------------------------


def start_fake() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_fcm", "--project", "yz-bench"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, json.loads(proc.stdout.readline())


def fake_stats(fake: dict) -> dict:
    with urllib.request.urlopen(fake["url"] + "/_fake/stats", timeout=10) as resp:
        return json.loads(resp.read())


def seed(n: int) -> float:
    """N users with one device each, then N pending notifications; returns the enqueue seconds."""
    for start in range(0, n, 10_000):
        ids = range(start + 1, min(n, start + 10_000) + 1)
        db.session.execute(
            sa.insert(User.__table__),
            [{"id": i, "phone": f"+86130{i:08d}", "password_hash": "x", "display_name": f"用户{i}"} for i in ids],
        )
        db.session.execute(
            sa.insert(Device.__table__),
            [{"user_id": i, "token": f"bench-token-{i:07d}", "platform": "android"} for i in ids],
        )
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT setval('users_id_seq', :n)"), {"n": n})
        db.session.commit()
    started = time.perf_counter()
    for start in range(0, n, 1000):
        contexts = {i: {"posting_id": i, "claim_id": i} for i in range(start + 1, min(n, start + 1000) + 1)}
        notify_each("wish_claimed", contexts, dedupe="bench", title="帮王奶奶买菜", volunteer="小陈")
        db.session.commit()
    seconds = time.perf_counter() - started
    if db.engine.dialect.name == "postgresql":
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
    return seconds


# --- phases ----------------------------------------------------------------------------------


class NullSender:
    """Accepts everything at once: what the dispatcher costs without the network."""

    name = "null"

    def send(self, messages):
        return [PushResult("sent") for _ in messages]


def dispatch_all(batch: int, sender) -> tuple[int, str]:
    timed = TimedSender(sender)
    started = time.perf_counter()
    counts = dispatch_until_empty(batch_size=batch, sender=timed)
    wall = time.perf_counter() - started
    sent = db.session.scalar(sa.select(sa.func.count()).where(Notification.push_status == "sent"))
    if sent != counts.get("sent"):
        raise SystemExit(f"dispatcher counted {counts.get('sent')} sent, the table has {sent}")
    return sent, f"{counts.get('batches', 0)} batches; {timed.seconds / wall:.0%} of the time inside sender.send"


def reset_outbox() -> None:
    """Every row pending again, as it was after the enqueue."""
    n = Notification.__table__
    db.session.execute(
        sa.update(n).values(
            push_status="pending", push_attempts=0, next_attempt_at=n.c.created_at, sent_at=None, last_error=None
        )
    )
    db.session.commit()
    vacuum()


def vacuum() -> None:
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE notifications"))


class TimedSender:
    """Wraps a sender and adds up the time spent inside send()."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def send(self, messages):
        started = time.perf_counter()
        try:
            return self.inner.send(messages)
        finally:
            self.seconds += time.perf_counter() - started


def run_send_each_async(sender: FcmSender, messages: list[PushMessage]) -> int:
    """The SDK's send_each_async (httpx) in chunks of 500, all in one event loop."""
    fcm = [build_message(m) for m in messages]

    async def run() -> int:
        ok = 0
        for start in range(0, len(fcm), MAX_BATCH):
            batch = await messaging.send_each_async(fcm[start : start + MAX_BATCH], dry_run=False, app=sender.app)
            ok += batch.success_count
        # its connections belong to this loop: close them in it, not at delete_app()
        await messaging._get_messaging_service(sender.app)._async_client.aclose()
        return ok

    return asyncio.run(run())


def run_ceiling(sender: FcmSender, base_url: str, bodies: list[dict], workers: int) -> int:
    """The same POSTs with the same client stack, from a pool of ``workers`` threads made once."""
    session = AuthorizedSession(sender.app.credential.get_credential())
    session.mount(base_url + "/", requests.adapters.HTTPAdapter(pool_maxsize=workers, max_retries=sdk_retry()))
    url = sender.messages_url
    headers = {
        "X-GOOG-API-FORMAT-VERSION": "2",
        "X-FIREBASE-CLIENT": "fire-admin-python/bench",
        **_http_client.METRICS_HEADERS,
    }

    def post(body: dict) -> bool:
        return session.post(url, json=body, headers=headers, timeout=30).status_code == 200

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ok = sum(pool.map(post, bodies, chunksize=64))
    session.close()
    return ok


def print_report(args, report: list[Result]) -> None:
    print()
    print(f"push bench: n={args.n:,} batch={args.batch} db={args.db.split('@')[-1]} cpus={os.cpu_count()}")
    print(f"{'phase':42} {'count':>8} {'seconds':>8} {'per s':>7} {'client µs':>10} {'fake µs':>8}  notes")
    for r in report:
        fake_us = f"{r.fake_cpu / r.count * 1e6:8.0f}" if r.fake_cpu else f"{'-':>8}"
        print(
            f"{r.name:42} {r.count:>8,} {r.wall:>8.1f} {r.count / r.wall:>7,.0f} "
            f"{r.client_cpu / r.count * 1e6:>10.0f} {fake_us}  {r.notes}"
        )
    print("client µs / fake µs: CPU time per notification of this process / of the fake FCM process")


if __name__ == "__main__":
    main()
