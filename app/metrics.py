"""Prometheus metrics (prometheus-client).

The web app's metrics are served on their own address, ``METRICS_ADDRESS``
(default ``127.0.0.1:9100``; empty: not served), never on the API's port:
``/metrics`` there is a 404 like any unknown path. Under gunicorn every worker
listens on that address (``SO_REUSEPORT``: the kernel hands each scrape to
one of them; deploy/gunicorn.conf.py starts it once a worker has loaded the
app, and refuses a ``METRICS_ADDRESS`` that is the API's own bind); ``make run``'s
``flask run`` serves them there too. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory the workers can write:
every worker then keeps its values in files there and a scrape, whichever
worker answers it, sums them all (deploy/gunicorn.conf.py empties the
directory at start and retires a dead worker's files). The scheduler
process serves its own on ``flask scheduler run --metrics-port`` (or
``SCHEDULER_METRICS_PORT``); don't give it the web's multiprocess directory.

What is measured, and where:

- ``yz_http_request_duration_seconds{method,route,status}``: every request,
  by URL rule (``/api/v1/postings/<int:posting_id>``, never the raw path;
  ``(unmatched)`` for a path no rule knows) — app/logs.py;
- ``yz_claims_total{outcome}``: claim attempts — ``active`` or ``waitlisted``
  for a claim made, else the refusal's slug (``duplicate_claim``,
  ``posting_full``, …) — app/services/claims/claiming.py;
- ``yz_push_results_total{provider,outcome}``: each push to one device as its
  provider answered it (``sent``, ``retry``, ``dead_token``, ``misconfigured``,
  ``failed``), and
  ``yz_push_notifications_total{result}``: what became of each outbox row
  (``sent``, ``retried``, ``failed``, ``skipped``, ``deferred``) — notifications/dispatch.py;
- ``yz_outbox_notifications{push_status}`` (``pending``, ``sending``) and
  ``yz_outbox_oldest_due_age_seconds`` (how long the oldest due push has
  waited; 0 when none is due): read from the database at scrape time;
- ``yz_job_runs_total{job,outcome}`` (``ok``, ``error``, ``lease_busy``),
  ``yz_job_rows_total{job,counter}``, ``yz_job_duration_seconds{job}``,
  ``yz_job_last_success_timestamp_seconds{job}`` — app/jobs.py;
- ``yz_scheduler_leader{job}``: 1 when this scheduler process held the job's
  lease on its last run, 0 when another process did (a standby) — app/jobs.py.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "(unmatched)"

REQUEST_SECONDS = Histogram(
    "yz_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status.",
    ["method", "route", "status"],
)
CLAIMS = Counter("yz_claims", "Claim attempts by outcome (a claim's status, or the refusal's slug).", ["outcome"])
SMS = Counter(
    "yz_sms_codes",
    "Requests for an SMS code, by purpose and outcome: the provider's answer (sent, rate_limited, "
    "invalid_number, failed, unknown), no_account (nothing sent), or the refusal (address_limit, "
    "resend_interval, phone_day_limit, budget, phone_taken).",
    ["purpose", "outcome"],
)
PUSH_RESULTS = Counter(
    "yz_push_results", "Pushes to one device, by provider and the provider's answer.", ["provider", "outcome"]
)
PUSH_NOTIFICATIONS = Counter(
    "yz_push_notifications", "Outbox rows the dispatcher settled, by what became of them.", ["result"]
)
JOB_RUNS = Counter("yz_job_runs", "Scheduler job runs by outcome (ok, error, lease_busy).", ["job", "outcome"])
JOB_ROWS = Counter("yz_job_rows", "Rows a job moved, by job and counter.", ["job", "counter"])
JOB_SECONDS = Histogram(
    "yz_job_duration_seconds",
    "Duration of one job run.",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
JOB_LAST_SUCCESS = Gauge(
    "yz_job_last_success_timestamp_seconds",
    "When the job last finished without an error (Unix time).",
    ["job"],
    multiprocess_mode="max",
)
SCHEDULER_LEADER = Gauge(
    "yz_scheduler_leader",
    "1 when this process held the job's lease on its last run, 0 when another scheduler did.",
    ["job"],
    multiprocess_mode="liveall",
)


def observe_request(method: str, route: str | None, status: int, started: float | None) -> None:
    if started is None:
        return
    REQUEST_SECONDS.labels(method, route or UNMATCHED_ROUTE, str(status)).observe(time.perf_counter() - started)


def record_job_run(job: str, counts: dict[str, int], seconds: float, *, error: bool, lease_busy: bool) -> None:
    outcome = "error" if error else "lease_busy" if lease_busy else "ok"
    JOB_RUNS.labels(job, outcome).inc()
    JOB_SECONDS.labels(job).observe(seconds)
    for counter, value in counts.items():
        if value:
            JOB_ROWS.labels(job, counter).inc(value)
    if not error:
        JOB_LAST_SUCCESS.labels(job).set(time.time())  # wall clock: alerts compare it with Prometheus's time()


def record_lease(job: str, held: bool) -> None:
    SCHEDULER_LEADER.labels(job).set(1 if held else 0)


class OutboxCollector:
    """The outbox's depth and lag, read when scraped (two index-only queries)."""

    def collect(self):
        import sqlalchemy as sa

        from app.clock import as_utc, utcnow
        from app.extensions import db
        from app.models import Notification
        from app.models.notifications import UNSETTLED_PUSH_STATUSES

        try:
            depth = dict(
                db.session.execute(
                    sa.select(Notification.push_status, sa.func.count())
                    .where(Notification.push_status.in_(UNSETTLED_PUSH_STATUSES))
                    .group_by(Notification.push_status)
                ).all()
            )
            now = utcnow()
            oldest: datetime | None = db.session.execute(
                sa.select(Notification.next_attempt_at)
                .where(Notification.push_status == "pending", Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at)
                .limit(1)
            ).scalar()
            db.session.rollback()
        except Exception:  # noqa: BLE001 - a scrape without these beats a failed scrape
            db.session.rollback()
            log.warning("metrics: could not read the outbox", exc_info=True)
            return
        family = GaugeMetricFamily("yz_outbox_notifications", "Outbox rows not yet settled.", labels=["push_status"])
        for status in UNSETTLED_PUSH_STATUSES:
            family.add_metric([status], depth.get(status, 0))
        yield family
        age = max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "yz_outbox_oldest_due_age_seconds", "How long the oldest due pending push has waited.", value=age
        )
        for gauges in _SCRAPED:
            yield from gauges()


# Gauges read when scraped that belong to a service (registered by it, with on_scrape):
# each a generator of metric families, run inside the app context of the scrape.
_SCRAPED: list[Callable[[], Iterator]] = []


def on_scrape(gauges: Callable[[], Iterator]) -> Callable[[], Iterator]:
    """Register ``gauges`` (a service's generator of metric families) with every scrape."""
    _SCRAPED.append(gauges)
    return gauges


def exposition() -> bytes:
    """Every metric of this process (or of every worker, in multiprocess mode), and the outbox's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    scrape = CollectorRegistry()
    scrape.register(OutboxCollector())
    return text + generate_latest(scrape)


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6; port 0: any free one) as (host, port);
    ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"METRICS_ADDRESS must be host:port, not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def address_problems(config) -> list[str]:
    """What is wrong with ``METRICS_ADDRESS`` (empty: nothing)."""
    address = config.get("METRICS_ADDRESS")
    if not address:
        return []
    try:
        parse_address(address)
    except ValueError as exc:
        return [str(exc)]
    return []


class _SharedPortServer(ThreadingHTTPServer):
    """Each web worker listens on the one metrics address (any of them can answer:
    in multiprocess mode each sums every worker's files)."""

    daemon_threads = True

    def server_bind(self) -> None:
        if hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def serve_app(app: Flask, address: str | None = None) -> ThreadingHTTPServer | None:
    """Serve the web app's metrics on ``address`` (default ``METRICS_ADDRESS``) in a
    thread of this process; None when it is empty. Only ``GET /metrics``."""
    address = app.config.get("METRICS_ADDRESS") if address is None else address
    if not address:
        return None
    host, port = parse_address(address)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, b"not found\n", "text/plain; charset=utf-8")
                return
            with app.app_context():
                body = exposition()
            self._answer(200, body, CONTENT_TYPE_LATEST)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:
            """Silent: a scrape every few seconds is not worth a line."""

    server = _SharedPortServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics served on %s:%d/metrics", host, server.server_port, extra={"port": server.server_port})
    return server


def serve_dev(app: Flask) -> ThreadingHTTPServer | None:
    """``make run``'s development server: the metrics on ``METRICS_ADDRESS`` as under
    gunicorn; an address already taken by another program is a warning, never a
    server that does not start."""
    try:
        return serve_app(app)
    except (OSError, ValueError) as exc:
        log.warning("metrics not served on %s: %s", app.config.get("METRICS_ADDRESS"), exc)
        return None


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve this process's metrics (the scheduler's) on their own port, in a thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
    log.info("metrics served on %s:%d/metrics", addr, port, extra={"port": port})
