"""The SMS codes' limits under a concurrent flood, across gunicorn workers.

Starts a gunicorn (``--workers``, gthread) on a fresh database (SQLite file by
default; ``--database-url postgresql://…`` for PostgreSQL, created if missing
and emptied), the request limiter off, ``SMS_BACKEND=log``, and fires three
floods of ``POST /api/v1/auth/sms-codes`` at once from ``--concurrency``
threads:

1. one phone from many client addresses (one code may pass: 60 s per phone);
2. one client address, many phones (20 an hour per address);
3. rotating phones and addresses (only the daily budget is left to stop it).

It prints how many passed against what the limits allow (they must be equal)
and the latency of the answers. Usage::

    .venv/bin/python bench/sms_limits.py
    .venv/bin/python bench/sms_limits.py --database-url postgresql://postgres@127.0.0.1:5432/bench_sms
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.dbsetup import ensure_database  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, phone: str, address: str) -> tuple[int, str | None, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"phone": phone, "purpose": "register"}).encode()
        conn.request(
            "POST",
            "/api/v1/auth/sms-codes",
            body=body,
            headers={"Content-Type": "application/json", "X-Forwarded-For": address},
        )
        resp = conn.getresponse()
        text = resp.read().decode()
    finally:
        conn.close()
    slug = json.loads(text).get("error") if resp.status >= 400 else None
    return resp.status, slug, time.perf_counter() - started


def flood(port: int, items: list[tuple[str, str]], concurrency: int) -> tuple[Counter, list[float], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda item: request(port, *item), items))
    elapsed = time.perf_counter() - started
    return Counter((status, slug) for status, slug, _ in results), [t for _, _, t in results], elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=200, help="requests in each flood")
    parser.add_argument("--budget", type=int, default=150)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    url = args.database_url or f"sqlite:///{work / 'bench.sqlite'}"
    if url.startswith("postgres"):
        url = ensure_database(url, fresh=True).replace("postgresql+psycopg://", "postgresql://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "GUNICORN_", "SMS_"))}
    env.update(
        APP_ENV="development",
        INSTANCE_PATH=str(work / "instance"),
        DATABASE_URL=url,
        RATELIMIT_ENABLED="0",
        TRUSTED_PROXIES="1",
        SMS_BACKEND="log",
        SMS_DAILY_BUDGET=str(args.budget),
        LOG_LEVEL="WARNING",
        GUNICORN_MAX_REQUESTS="0",
    )
    flask = str(Path(sys.executable).parent / "flask")
    subprocess.run([flask, "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "-w", str(args.workers), "--threads", str(args.threads),
         "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        n = args.requests
        floods = (
            ("one phone, many addresses", [("13800010001", f"10.1.{i // 250}.{i % 250}") for i in range(n)], 1),
            ("one address, many phones", [(f"1380002{i:04d}", "10.2.0.1") for i in range(n)], 20),
            (
                "rotating phones and addresses",
                [(f"1380003{i:04d}", f"10.3.{i // 250}.{i % 250}") for i in range(n)],
                args.budget - 21,
            ),
        )
        print(
            f"{'database':<10} {url.split(':')[0]}; gunicorn {args.workers} workers x {args.threads} threads; "
            f"{args.concurrency} concurrent clients; budget {args.budget}"
        )
        print(f"{'flood':<32} {'sent':>5} {'allowed':>7} {'refused':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7}")
        ok = True
        for name, items, allowed in floods:
            counts, times, elapsed = flood(port, items, args.concurrency)
            sent = counts.get((202, None), 0)
            refusals = sorted((key, c) for key, c in counts.items() if key[0] != 202)
            refused = ", ".join(f"{status} {slug}: {c}" for (status, slug), c in refusals)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1] * 1000
            print(
                f"{name:<32} {sent:>5} {allowed:>7} {len(items) - sent:>8} {len(items) / elapsed:>7.0f} "
                f"{statistics.median(times) * 1000:>7.1f} {p95:>7.1f}   ({refused})"
            )
            ok = ok and sent == allowed
        print("limits held exactly" if ok else "A LIMIT WAS PASSED")
        return 0 if ok else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
