"""One HTTP load driver for the benchmarks that compare servers side by side.

Every server under test is started the same way (``start_gunicorn``) and
driven the same way (``run``): client processes, threads inside them, one
keep-alive ``http.client`` connection per thread, each request timed on the
client. The server's CPU time (its master and workers, user + system, from
``/proc``) is read before and after a phase, so a figure per request can be
given that a shared machine disturbs less than a rate.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class Figures:
    label: str
    count: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float
    outcomes: Counter
    results: list[tuple[int, object]]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_seconds / self.count if self.count else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0

    def line(self) -> str:
        outcomes = ", ".join(f"{n}×{status}" for status, n in sorted(self.outcomes.items()))
        return (
            f"{self.label:<16} {self.rate:8.0f}/s  p50 {self.percentile(50):6.1f}  p95 {self.percentile(95):6.1f}"
            f"  p99 {self.percentile(99):6.1f} ms  cpu {self.cpu_ms:5.2f} ms/req  [{outcomes}]"
        )


def app_env(database_url: str, secret: str) -> dict[str, str]:
    """The environment our app runs under in a benchmark: development keys, the
    given database, rate limits off, push to the log, no embedded scheduler."""
    return {
        "DATABASE_URL": database_url,
        "APP_ENV": "development",
        "SECRET_KEY": secret,
        "JWT_SECRET_KEY": secret,
        "RATELIMIT_ENABLED": "0",
        "SCHEDULER_EMBEDDED": "0",
        "PUSH_BACKEND": "log",
        "LOG_LEVEL": "WARNING",
    }


def start_gunicorn(
    target: str,
    port: int,
    *,
    workers: int = 2,
    threads: int = 4,
    env: dict | None = None,
    cwd: Path = ROOT,
    gunicorn: Path = ROOT / ".venv" / "bin" / "gunicorn",
    ready_path: str = "/readyz",
):
    """gunicorn ``-k gthread -w W --threads T`` on 127.0.0.1:port, importing ``target``
    from ``cwd`` (another checkout of the app, for a before/after; another project
    with its own ``gunicorn``); returns once ``ready_path`` answers below 500."""
    command = [
        str(gunicorn),
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        target,
    ]
    server = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{target} exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", ready_path)
            if conn.getresponse().status < 500:
                conn.close()
                return server
        except OSError:
            pass
        time.sleep(0.3)
    stop(server)
    raise RuntimeError(f"{target} did not answer on :{port}")


def stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """User + system CPU of the server's process group (master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[2] is the process group; utime/stime are fields 11 and 12 after the name.
        if int(fields[2]) == server.pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _client(args) -> list[tuple[int, int, float, object]]:
    """One client process: a thread per connection, each sending its own list in order."""
    port, chunks = args

    def one_connection(chunk: list[tuple[int, Request]]) -> list[tuple[int, int, float, object]]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out = []
        for index, request in chunk:
            started = time.perf_counter()
            conn.request(request.method, request.path, body=request.body, headers=request.headers)
            response = conn.getresponse()
            raw = response.read()
            elapsed = time.perf_counter() - started
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw[:200]
            out.append((index, response.status, elapsed, body))
        conn.close()
        return out

    with ThreadPoolExecutor(len(chunks)) as pool:
        return [row for part in pool.map(one_connection, chunks) for row in part]


def run(label: str, port: int, server, requests: list[Request], *, clients: int = 8, procs: int = 2) -> Figures:
    """Send every request from ``clients`` keep-alive connections spread over
    ``procs`` processes; request i goes to connection i % clients, in order."""
    indexed = list(enumerate(requests))
    per_connection = [indexed[c::clients] for c in range(clients)]
    jobs = [(port, per_connection[p::procs]) for p in range(procs) if per_connection[p::procs]]
    cpu_before = server_cpu_seconds(server)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        parts = pool.map(_client, jobs)
    seconds = time.perf_counter() - started
    cpu = server_cpu_seconds(server) - cpu_before
    rows = sorted(row for part in parts for row in part)
    return Figures(
        label=label,
        count=len(rows),
        seconds=seconds,
        latencies_ms=[1000 * row[2] for row in rows],
        cpu_seconds=cpu,
        outcomes=Counter(row[1] for row in rows),
        results=[(row[1], row[3]) for row in rows],
    )


def summary(label: str, values: list[float], unit: str = "") -> str:
    if not values:
        return f"{label}: -"
    return f"{label}: {min(values):,.1f}–{max(values):,.1f}{unit} (mean {statistics.mean(values):,.1f})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit("bench/driver.py is a library: see bench/sidebyside.py")
