"""Push throughput of both providers against a bare client of each, and what a kill -9 resends.

    .venv/bin/python bench/push.py                          # 10,000 per provider, PostgreSQL yz_bench_push
    .venv/bin/python bench/push.py -n 2000 --db sqlite:////tmp/push-bench.sqlite
    .venv/bin/python bench/push.py --kill                   # a dispatcher killed with kill -9 mid-dispatch

The fake FCM (tests/fake_fcm.py) and the fake JPush (tests/fake_jpush.py) each
run in a process of their own on loopback. For each provider, in the same run
and side by side:

1. ``dispatcher``: N users each with one device of that provider and N pending
   notifications (written by notify_each); ``dispatch_until_empty()`` claims,
   routes, sends through the provider and records every answer as it arrives;
2. ``bare client``: the same N messages through the same official client with
   no database — firebase-admin's ``messaging.send``, the jpush client's
   ``Push.send`` — from a pool of the same number of threads (``--concurrency``).

Each phase's count is checked against the fake's own count of accepted sends.

``--kill``: a dispatcher process (this script, ``--child``) sends N pending
notifications (half FCM, half JPush devices) and is killed with SIGKILL once
the fakes have accepted ``--kill-after`` messages. At that moment the bench
reads what the fakes had accepted and what the database had recorded (rows
sent, plus per-device answers); the difference is what was on the wire, its
answer unrecorded. After the lease runs out a new dispatcher drains the rest;
every token is distinct, so the fakes' accepted count beyond N is the number
of messages sent twice. The database named by --db is dropped and recreated:
never point it at data you want to keep.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from firebase_admin import messaging  # noqa: E402

from app import create_app  # noqa: E402
from app.extensions import db  # noqa: E402
from app.models import Device, Notification, PushDelivery, User  # noqa: E402
from app.outbox import notify_each  # noqa: E402
from bench.dbsetup import LOADER_CONFIG, ensure_database  # noqa: E402
from notifications.dispatch import close_router, current_router, dispatch_until_empty  # noqa: E402
from notifications.senders import PushMessage  # noqa: E402
from notifications.senders.fcm import build_message  # noqa: E402

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/yz_bench_push"
PROVIDERS = ("fcm", "jpush")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="notifications (and devices) per provider")
    parser.add_argument("--db", default=DEFAULT_DB, help="database URL (dropped and recreated)")
    parser.add_argument("--batch", type=int, default=500, help="dispatcher batch size")
    parser.add_argument("--concurrency", type=int, default=64, help="sending threads, dispatcher and bare client alike")
    parser.add_argument("--kill", action="store_true", help="measure what a dispatcher killed with kill -9 resends")
    parser.add_argument("--kill-after", type=int, default=3000, help="accepted messages before the kill")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.child:
        child(args)
        return
    fakes = start_fakes()
    try:
        if args.kill:
            kill_bench(args, fakes)
        else:
            throughput(args, fakes)
    finally:
        for proc, _ in fakes.values():
            proc.stdin.close()
            proc.wait(timeout=10)


# --- setup -----------------------------------------------------------------------------------


def start_fakes() -> dict[str, tuple[subprocess.Popen, dict]]:
    fakes = {}
    for name, module, extra in (
        ("fcm", "tests.fake_fcm", ["--project", "yz-bench"]),
        ("jpush", "tests.fake_jpush", []),
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *extra], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        fakes[name] = (proc, json.loads(proc.stdout.readline()))
    return fakes


def config(args, fakes: dict, **overrides) -> dict:
    fcm, jpush = fakes["fcm"][1], fakes["jpush"][1]
    return {
        "SQLALCHEMY_DATABASE_URI": ensure_database(args.db),
        "APP_ENV": "development",
        "RATELIMIT_ENABLED": False,
        "PUSH_BACKEND": "fcm,jpush",
        "FCM_ENDPOINT": fcm["url"],
        "FIREBASE_CREDENTIALS": json.dumps(fcm["service_account"]),
        "FCM_TIMEOUT_SECONDS": 30,
        "FCM_CONCURRENCY": args.concurrency,
        "JPUSH_ENDPOINT": jpush["url"],
        "JPUSH_APP_KEY": jpush["app_key"],
        "JPUSH_MASTER_SECRET": jpush["master_secret"],
        "JPUSH_TIMEOUT_SECONDS": 30,
        "JPUSH_CONCURRENCY": args.concurrency,
        "PUSH_LEASE_SECONDS": 3600,
        **LOADER_CONFIG,
        **overrides,
    }


def accepted(fakes: dict, name: str) -> int:
    with urllib.request.urlopen(fakes[name][1]["url"] + "/_fake/stats", timeout=10) as resp:
        return json.loads(resp.read())["accepted"]


def seed(users: list[tuple[int, str]]) -> None:
    """``users`` (id, provider): one user and one device each, then one pending notification each."""
    db.session.remove()  # no snapshot of the previous phase may hold the tables
    db.drop_all()
    db.create_all()
    for start in range(0, len(users), 10_000):
        chunk = users[start : start + 10_000]
        db.session.execute(
            sa.insert(User.__table__),
            [{"id": i, "phone": f"+86130{i:08d}", "password_hash": "x", "display_name": f"用户{i}"} for i, _ in chunk],
        )
        db.session.execute(
            sa.insert(Device.__table__),
            [{"user_id": i, "token": f"{p}-token-{i:07d}", "platform": "android", "provider": p} for i, p in chunk],
        )
    db.session.commit()
    for start in range(0, len(users), 1000):
        contexts = {i: {"posting_id": i, "claim_id": i} for i, _ in users[start : start + 1000]}
        notify_each("wish_claimed", contexts, dedupe="bench", title="帮王奶奶买菜", volunteer="小陈")
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))


# --- throughput ------------------------------------------------------------------------------


@dataclass
class Phase:
    provider: str
    name: str
    count: int
    seconds: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def throughput(args, fakes: dict) -> None:
    app = create_app(config(args, fakes))
    phases: list[Phase] = []
    with app.app_context():
        for provider in PROVIDERS:
            seed([(i, provider) for i in range(1, args.n + 1)])
            warm_up(current_router()[provider])
            before, cpu, t0 = accepted(fakes, provider), time.process_time(), time.perf_counter()
            counts = dispatch_until_empty(args.batch)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
            got = accepted(fakes, provider) - before
            sent = db.session.scalar(sa.select(sa.func.count()).where(Notification.push_status == "sent"))
            if not got == sent == counts["sent"] == args.n:
                raise SystemExit(f"{provider}: the fake accepted {got}, {sent} rows sent, counted {counts['sent']}")
            phases.append(Phase(provider, "dispatcher (claim, send, record)", args.n, wall, cpu))
            messages = [bare_message(i, provider) for i in range(args.n)]
            before, cpu, t0 = accepted(fakes, provider), time.process_time(), time.perf_counter()
            ok = bare_client(current_router()[provider], provider, messages, args.concurrency)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
            got = accepted(fakes, provider) - before
            if not got == ok == args.n:
                raise SystemExit(f"bare {provider}: the fake accepted {got}, the client saw {ok}")
            phases.append(Phase(provider, f"bare client, {args.concurrency} threads", args.n, wall, cpu))
        close_router(app)
    load = os.getloadavg()
    print()
    print(
        f"push bench: n={args.n:,} per provider, batch={args.batch}, concurrency={args.concurrency}, "
        f"db={args.db.split('@')[-1]}, cpus={os.cpu_count()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'provider':8} {'phase':36} {'count':>8} {'seconds':>8} {'per s':>7} {'client µs':>10}  of bare")
    for i, phase in enumerate(phases):
        bare = phases[i + 1] if i % 2 == 0 else phase
        share = f"{phase.rate / bare.rate:6.0%}" if i % 2 == 0 else ""
        print(
            f"{phase.provider:8} {phase.name:36} {phase.count:>8,} {phase.seconds:>8.1f} {phase.rate:>7,.0f} "
            f"{phase.cpu / phase.count * 1e6:>10.0f}  {share}"
        )


def bare_message(i: int, provider: str) -> PushMessage:
    """What the dispatcher sends for notification ``i``, to a token of its own."""
    data = {"kind": "wish_claimed", "posting_id": str(i), "claim_id": str(i), "notification_id": str(i)}
    title, body = "心愿被认领啦", "小陈认领了您的「帮王奶奶买菜」。"
    return PushMessage(
        i, f"{provider}-bare-{i:07d}", "android", title, body, data, f"posting-{i}", True, None, None, provider
    )


def warm_up(provider) -> None:
    """Both phases start with the provider built and, for FCM, its access token in hand."""
    if hasattr(provider, "_ensure_access_token"):
        provider._ensure_access_token()


def bare_client(provider, name: str, messages: list[PushMessage], workers: int) -> int:
    """The official client alone: one call per message from a pool of ``workers`` threads."""
    if name == "fcm":

        def send(message: PushMessage) -> bool:
            return bool(messaging.send(build_message(message), app=provider.app))
    else:

        def send(message: PushMessage) -> bool:
            return provider.build_push(message).send().status_code == 200

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(send, messages, chunksize=16))


# --- kill -9 ---------------------------------------------------------------------------------


def child(args) -> None:
    """The dispatcher to be killed: drain the outbox, nothing else."""
    fakes = json.loads(os.environ["BENCH_FAKES"])
    app = create_app(config(args, {k: (None, v) for k, v in fakes.items()}, PUSH_LEASE_SECONDS=30,
                            FCM_TIMEOUT_SECONDS=0.5, FCM_SDK_RETRIES=0, JPUSH_TIMEOUT_SECONDS=0.5))  # fmt: skip
    with app.app_context():
        dispatch_until_empty(args.batch)


def kill_bench(args, fakes: dict) -> None:
    n = 2 * args.n
    overrides = {
        "PUSH_LEASE_SECONDS": 30,
        "FCM_TIMEOUT_SECONDS": 0.5,
        "FCM_SDK_RETRIES": 0,
        "JPUSH_TIMEOUT_SECONDS": 0.5,
    }
    app = create_app(config(args, fakes, **overrides))
    with app.app_context():
        seed([(i, PROVIDERS[i % 2]) for i in range(1, n + 1)])
        before = sum(accepted(fakes, p) for p in PROVIDERS)
        env = {**os.environ, "BENCH_FAKES": json.dumps({k: v for k, (_, v) in fakes.items()})}
        cmd = [sys.executable, __file__, "--child", "--db", args.db, "-n", str(args.n), "--batch", str(args.batch),
               "--concurrency", str(args.concurrency)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env)
        while sum(accepted(fakes, p) for p in PROVIDERS) - before < args.kill_after:
            if proc.poll() is not None:
                raise SystemExit("the dispatcher finished before the kill: raise -n or lower --kill-after")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        time.sleep(0.5)  # requests already on their way reach the fakes and are counted
        on_fakes = sum(accepted(fakes, p) for p in PROVIDERS) - before
        db.session.remove()
        recorded = db.session.scalar(sa.select(sa.func.count()).where(Notification.push_status == "sent"))
        partial = db.session.scalar(
            sa.select(sa.func.count()).select_from(PushDelivery).where(PushDelivery.outcome == "sent")
        )
        leased = db.session.scalar(sa.select(sa.func.count()).where(Notification.push_status == "sending"))
        db.session.commit()
        time.sleep(max(0.0, killed_at + overrides["PUSH_LEASE_SECONDS"] + 1 - time.monotonic()))
        counts = dispatch_until_empty(args.batch)
        close_router(app)
        total = sum(accepted(fakes, p) for p in PROVIDERS) - before
        sent = db.session.scalar(sa.select(sa.func.count()).where(Notification.push_status == "sent"))
    unrecorded = on_fakes - recorded - partial
    load = os.getloadavg()
    print()
    print(
        f"kill -9 bench: {n:,} notifications (half FCM, half JPush), batch={args.batch}, "
        f"concurrency={args.concurrency} per provider, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"  accepted by the fakes when killed          {on_fakes:>8,}")
    print(f"  answers recorded by then                   {recorded + partial:>8,}")
    print(f"  on the wire, answer not recorded           {unrecorded:>8,}")
    print(f"  rows still leased (claimed, not settled)   {leased:>8,}")
    print(f"  after the restart: rows sent {sent:,} of {n:,}; the restarted dispatcher claimed {counts['claimed']:,}")
    print(f"  sent twice                                 {total - n:>8,}   (bound: {unrecorded:,})")
    if sent != n or total - n > unrecorded:
        raise SystemExit("FAILED: a message was lost or resent beyond what was on the wire")


if __name__ == "__main__":
    main()
