"""Faults under load: PostgreSQL killed and restarted; FCM slower than its timeout.

    sudo-less root: .venv/bin/python bench/faults.py            # both
    .venv/bin/python bench/faults.py --only postgres            # or: --only fcm

1. **PostgreSQL killed.** A private PostgreSQL cluster is made in a temporary
   directory (initdb as the ``postgres`` user, its own port), the app is
   migrated and seeded there and served by gunicorn (deploy/gunicorn.conf.py,
   2 workers). Client threads send a mix of reads (the feed) and writes
   (residents posting wishes) for ``--seconds``; meanwhile the cluster is stopped with
   ``pg_ctl stop -m immediate`` (a crash: no shutdown checkpoint) and started
   again. Every answer is kept with its time. The run passes when nothing but
   success came before the kill, nothing but 503 (with ``Retry-After``) while
   the server was down, no 5xx but 503 at any time, and nothing but success
   from ``--recovery`` seconds after it was back; and every posting the
   clients were told was created is in the database afterwards.
2. **FCM slower than its timeout.** The fake FCM (tests/fake_fcm.py) answers
   every send 1.5 s late while the sender's timeout is 1 s; the dispatcher
   sends ``--messages`` notifications, then runs again. Passes when the fake
   received each message exactly once.

Nothing here touches the shared PostgreSQL server; the private cluster and its
files are removed at the end.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(f"{name} not found (Debian's postgresql package)")
    return found[-1]


class Cluster:
    """A throwaway PostgreSQL cluster owned by the postgres user, on its own port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="yz-faults-pg-")
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self._as_postgres([pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    def _as_postgres(self, argv: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-o", options, "-w", "-l", f"{self.dir}/log", "start"])

    def kill(self) -> None:
        self._as_postgres([pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"])

    def remove(self) -> None:
        try:
            self.kill()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def postgres_killed(args) -> bool:
    cluster = Cluster(args.pg_port)
    env = {
        **os.environ,
        "APP_ENV": "development",
        "INSTANCE_PATH": os.path.join(cluster.dir, "instance"),
        "DATABASE_URL": cluster.url,
        "RATELIMIT_ENABLED": "0",
        "PUSH_BACKEND": "log",
        "SCHEDULER_EMBEDDED": "0",
        "LOG_LEVEL": "WARNING",
        "FLASK_APP": "wsgi",
        "DB_CONNECT_TIMEOUT_SECONDS": "2",
        "GUNICORN_MAX_REQUESTS": "0",  # no planned worker restarts in the middle of the measurement
    }
    server = None
    try:
        flask = str(ROOT / ".venv" / "bin" / "flask")
        subprocess.run([flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
        subprocess.run([flask, "seed"], cwd=ROOT, env=env, check=True, capture_output=True)
        tokens = _residents(env, args.clients)
        server = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "--workers", "2",
             "--threads", "4", "--bind", f"127.0.0.1:{args.port}", "--access-logfile", "/dev/null", "wsgi:app"],
            cwd=ROOT, env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_ready(args.port)

        answers: list[tuple[float, str, int, str | None]] = []
        lock, stop = threading.Lock(), threading.Event()
        created: list[int] = []

        def client(n: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            token = tokens[n]
            wish = json.dumps(
                {"kind": "wish", "title": "想要一台收音机", "description": "听新闻", "district": "haishu"}
            )
            while not stop.is_set():
                write = len(answers) % 3 == 0
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                try:
                    if write:
                        conn.request("POST", "/api/v1/postings", body=wish.encode(), headers=headers)
                    else:
                        conn.request("GET", "/api/v1/postings?limit=20", headers=headers)
                    resp = conn.getresponse()
                    body = json.loads(resp.read() or b"{}")
                    status, retry = resp.status, resp.getheader("Retry-After")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                    status, retry, body = 0, None, {}
                with lock:
                    answers.append((time.monotonic(), "write" if write else "read", status, retry))
                    if write and status == 201:
                        created.append(body["id"])
                time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(args.clients)]
        t0 = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(args.seconds / 3)
        killed_at = time.monotonic()
        cluster.kill()
        time.sleep(args.outage)
        starting_at = time.monotonic()  # it may answer before pg_ctl start returns
        cluster.start()
        back_at = time.monotonic()
        time.sleep(args.seconds / 3)
        stop.set()
        for thread in threads:
            thread.join()

        before = [a for a in answers if a[0] < killed_at]
        during = [a for a in answers if killed_at + 0.5 <= a[0] < starting_at]
        after = [a for a in answers if a[0] >= back_at + args.recovery]
        print(f"postgres killed {killed_at - t0:.1f} s into the run, back {back_at - killed_at:.1f} s later")
        for name, part in (("before", before), ("during", during), ("after", after)):
            print(f"  {name:7s} {len(part):6d} answers  {dict(Counter((a[1], a[2]) for a in part))}")
        errors = Counter(a[2] for a in answers if a[2] >= 500 and a[2] != 503 or a[2] == 0)
        no_retry_after = sum(1 for a in answers if a[2] == 503 and a[3] is None)
        ok = (
            not errors
            and not no_retry_after
            and all(a[2] in (200, 201) for a in before)
            and all(a[2] == 503 for a in during)
            and after
            and all(a[2] in (200, 201) for a in after)
        )
        lost = _missing_postings(env, created)
        print(f"  other 5xx or dropped connections: {dict(errors)}; 503 without Retry-After: {no_retry_after}")
        print(f"  postings acknowledged with 201: {len(created)}, missing from the database afterwards: {lost}")
        print("PASS" if ok and not lost else "FAIL", "postgres killed under load")
        return bool(ok and not lost)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        cluster.remove()


def _residents(env: dict, count: int) -> list[str]:
    """Access tokens of ``count`` fresh residents who accepted the privacy policy."""
    script = f"""
import json
from app import create_app
from app.extensions import db
from app.services import accounts, tokens
app = create_app()
with app.app_context():
    out = []
    for n in range({count}):
        user = accounts.create_user(f"+86137{{n:08d}}", "bench-password", f"居民{{n}}")
        accounts.record_consent(user, app.config["PRIVACY_VERSION"])  # else every write is 428
        out.append(tokens.issue_tokens(user)["access_token"])
    db.session.commit()
print(json.dumps(out))
"""
    return json.loads(_run_in_app(env, script))


def _missing_postings(env: dict, created: list[int]) -> int:
    script = f"""
from app import create_app
from app.extensions import db
from app.models import Posting
app = create_app()
with app.app_context():
    ids = {created!r}
    found = {{p for (p,) in db.session.query(Posting.id).filter(Posting.id.in_(ids))}} if ids else set()
    print(len(set(ids) - found))
"""
    return int(_run_in_app(env, script))


def _run_in_app(env: dict, script: str) -> str:
    """Run ``script`` in a fresh interpreter against the bench's database; its last line."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-c", script], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not become ready")


def fcm_slower_than_timeout(args) -> bool:
    from app import create_app
    from app.extensions import db
    from app.models import Device, Notification, User
    from app.outbox import notify
    from notifications.dispatch import dispatch_until_empty
    from tests.fake_fcm import FakeFcm

    with FakeFcm(record=True) as fake, tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "APP_ENV": "development",
                "INSTANCE_PATH": tmp,
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/fcm.sqlite",
                "PUSH_BACKEND": "fcm",
                "FCM_ENDPOINT": fake.url,
                "FIREBASE_CREDENTIALS": json.dumps(fake.service_account()),
                "FCM_TIMEOUT_SECONDS": 1.0,
                "FCM_SDK_BACKOFF_SECONDS": 0,
            }
        )
        with app.app_context():
            db.create_all()
            users = [
                User(phone=f"+86136{n:08d}", password_hash="x", display_name=f"u{n}") for n in range(args.messages)
            ]
            db.session.add_all(users)
            db.session.flush()
            db.session.add_all(
                Device(
                    user_id=u.id, token=f"token-{u.id}", platform="android", provider="fcm", last_seen_at=db.func.now()
                )
                for u in users
            )
            for u in users:
                notify([u.id], "claim_confirmed", dedupe=f"claim:{u.id}", title="t", posting_id=1, claim_id=u.id)
            db.session.commit()
            fake.delay = 1.5
            started = time.monotonic()
            first = dispatch_until_empty(batch_size=500)
            fake.delay = 0
            again = dispatch_until_empty(batch_size=500)
            elapsed = time.monotonic() - started
            statuses = Counter(s for (s,) in db.session.query(Notification.push_status))
        delivered = Counter(m["token"] for m in fake.messages)
        twice = sum(1 for count in delivered.values() if count > 1)
        print(f"fcm {fake.delay or 1.5} s late, timeout 1 s: {args.messages} notifications in {elapsed:.1f} s")
        print(f"  first run {first}, second run {again}")
        print(f"  rows {dict(statuses)}; delivered {len(delivered)}, more than once: {twice}")
        ok = twice == 0 and len(delivered) == args.messages
        print("PASS" if ok else "FAIL", "fcm slower than its timeout")
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("postgres", "fcm"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30, help="the whole load, outage included")
    parser.add_argument("--outage", type=float, default=10, help="seconds PostgreSQL stays down")
    parser.add_argument("--recovery", type=float, default=3, help="seconds allowed to recover after the restart")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8941)
    parser.add_argument("--pg-port", type=int, default=55432)
    args = parser.parse_args()
    results = []
    if args.only in (None, "postgres"):
        results.append(postgres_killed(args))
    if args.only in (None, "fcm"):
        results.append(fcm_slower_than_timeout(args))
    raise SystemExit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
