"""Prometheus metrics: served on their own address (METRICS_ADDRESS), never on
the API's port; the jobs' and the dispatcher's counters, and two gunicorn
workers whose counts one scrape sums."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import clock, create_app, jobs
from app.config import TestConfig
from app.extensions import db
from app.outbox import notify
from notifications.dispatch import current_router, dispatch_pending
from tests.factories import make_device, make_posting, make_user, make_volunteer
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
CLAIMS_ROUTE = "/api/v1/postings/<int:posting_id>/claims"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


def scrape(client) -> dict:
    """A scrape of the app's own metrics address (started on a free port, once per app)."""
    from app import metrics

    app = client.application
    server = app.extensions.get("test_metrics_server")
    if server is None:
        server = app.extensions["test_metrics_server"] = metrics.serve_app(app, "127.0.0.1:0")
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("GET", "/metrics")
    resp = connection.getresponse()
    body = resp.read().decode()
    connection.close()
    assert resp.status == 200
    assert resp.getheader("Content-Type").startswith("text/plain")
    return samples(body)


def test_the_api_port_has_no_metrics(app, client):
    resp = client.get("/metrics")
    assert (resp.status_code, resp.get_json()["error"]) == (404, "not_found")


def test_a_metrics_address_must_be_host_and_port():
    from app.metrics import address_problems

    assert address_problems({"METRICS_ADDRESS": "127.0.0.1:9100"}) == []
    assert address_problems({"METRICS_ADDRESS": ""}) == []
    assert address_problems({"METRICS_ADDRESS": "9100"}) != []
    assert address_problems({"METRICS_ADDRESS": "localhost:http"}) != []


def test_the_gunicorn_config_refuses_metrics_on_the_api_port(monkeypatch):
    """The check gunicorn's start runs (the slow test below starts gunicorn itself)."""
    import runpy
    from types import SimpleNamespace

    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    server = SimpleNamespace(cfg=SimpleNamespace(bind=["127.0.0.1:8000"]))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("METRICS_ADDRESS", "127.0.0.1:8000")
    with pytest.raises(SystemExit, match="is the API's own port"):
        conf["on_starting"](server)
    monkeypatch.setenv("METRICS_ADDRESS", "127.0.0.1:9100")
    conf["on_starting"](server)


@pytest.mark.slow
def test_gunicorn_refuses_metrics_on_the_api_port(tmp_path):
    port = free_port()
    env = {**os.environ, "METRICS_ADDRESS": f"127.0.0.1:{port}", "INSTANCE_PATH": str(tmp_path)}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    done = subprocess.run(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "is the API's own port" in done.stderr + done.stdout


def test_metrics_count_claims_by_outcome_and_requests_by_route(app, client):
    poster = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, poster)
    before = scrape(client)

    assert client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers).status_code == 201
    assert client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers).status_code == 409
    assert client.get("/healthz").status_code == 200
    after = scrape(client)

    assert value(after, "yz_claims_total", outcome="active") - value(before, "yz_claims_total", outcome="active") == 1
    duplicate = {"outcome": "duplicate_claim"}
    assert value(after, "yz_claims_total", **duplicate) - value(before, "yz_claims_total", **duplicate) == 1
    created = {"method": "POST", "route": CLAIMS_ROUTE, "status": "201"}
    count = "yz_http_request_duration_seconds_count"
    assert value(after, count, **created) - value(before, count, **created) == 1
    assert value(after, count, method="POST", route=CLAIMS_ROUTE, status="409") >= 1
    assert value(after, count, method="GET", route="/healthz", status="200") >= 1
    # the claim told the wish's author: one pending push in the outbox, due now
    assert value(after, "yz_outbox_notifications", push_status="pending") == 1
    assert value(after, "yz_outbox_oldest_due_age_seconds") >= 0


def test_metrics_leave_the_probes_alone(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_a_job_run_counts_its_rows_duration_and_lease(app, client):
    poster = make_user(app)
    make_posting(app, poster, expires_at=clock.utcnow() + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    before = scrape(client)
    with app.app_context():
        jobs.expire_postings()
    after = scrape(client)
    job = {"job": "expire_postings"}
    runs = value(after, "yz_job_runs_total", outcome="ok", **job) - value(
        before, "yz_job_runs_total", outcome="ok", **job
    )
    assert runs == 1
    expired = {"counter": "expired", **job}
    assert value(after, "yz_job_rows_total", **expired) - value(before, "yz_job_rows_total", **expired) == 1
    assert value(after, "yz_job_duration_seconds_count", **job) - value(before, "yz_job_duration_seconds_count", **job)
    assert value(after, "yz_scheduler_leader", **job) == 1
    assert value(after, "yz_job_last_success_timestamp_seconds", **job) > 0


def test_push_results_are_counted_by_class(app, client):
    poster = make_user(app)
    volunteer = make_volunteer(app)
    wish = make_posting(app, poster)
    assert client.post(f"/api/v1/postings/{wish}/claims", json={}, headers=volunteer.headers).status_code == 201
    before = scrape(client)
    with app.app_context():
        counts = dispatch_pending(500)
    after = scrape(client)
    assert counts["claimed"] == 1
    # the author has no device: the row is settled as skipped, and nothing was pushed
    skipped = {"result": "skipped"}
    assert (
        value(after, "yz_push_notifications_total", **skipped) - value(before, "yz_push_notifications_total", **skipped)
        == 1
    )
    assert value(after, "yz_outbox_notifications", push_status="pending") == 0


def test_push_answers_are_counted_by_provider(app, client):
    user = make_user(app)
    make_device(app, user.id, "android-phone", provider="fcm")
    make_device(app, user.id, "china-phone", provider="jpush")
    with app.app_context():
        notify([user.id], "claim_confirmed", dedupe="metrics", title="t", posting_id=1)
        db.session.commit()
        router = current_router()
        router["memory"].fail("china-phone", "retry", "JPush 503")
    before = scrape(client)
    with app.app_context():
        counts = dispatch_pending(500)
    after = scrape(client)
    assert (counts["pushes"], counts["retried"]) == (2, 1)
    # the memory provider stands in for both here; in production the label is fcm or jpush
    for outcome in ("sent", "retry"):
        labels = {"provider": "memory", "outcome": outcome}
        assert value(after, "yz_push_results_total", **labels) - value(before, "yz_push_results_total", **labels) == 1


@pytest.mark.slow
def test_the_scheduler_serves_its_own_metrics(tmp_path, sqlite_file):
    url = sqlite_file
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "PROMETHEUS_"))}
    env.update(DATABASE_URL=url, PUSH_BACKEND="log", LOG_LEVEL="WARNING", INSTANCE_PATH=str(tmp_path / "instance"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "run", "--metrics-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # every job fires once at start-up, each on its own thread: wait for the two this test reads
        text = _wait_for(
            port,
            "/metrics",
            lambda t: (
                'yz_job_runs_total{job="purge",outcome="ok"}' in t
                and 'yz_job_runs_total{job="expire_postings",outcome="ok"}' in t
            ),
        )
        parsed = samples(text)
        assert value(parsed, "yz_scheduler_leader", job="expire_postings") == 1
    finally:
        _stop(proc)


@pytest.mark.slow
def test_two_gunicorn_workers_are_summed_in_one_scrape(tmp_path, sqlite_file):
    """A claim and some requests go to a two-worker gunicorn; whichever worker
    answers /metrics reports all of them (PROMETHEUS_MULTIPROC_DIR)."""
    url = sqlite_file
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    setup = create_app({**config, "SQLALCHEMY_DATABASE_URI": url})
    poster = make_user(setup)
    volunteer = make_volunteer(setup)
    wish = make_posting(setup, poster)
    with setup.app_context():
        db.engine.dispose()

    port = free_port()
    metrics_port = free_port()
    metrics_dir = tmp_path / "prometheus"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "GUNICORN_"))}
    env.update(
        APP_ENV="development",
        INSTANCE_PATH=str(tmp_path / "instance"),
        DATABASE_URL=url,
        SECRET_KEY=TestConfig.SECRET_KEY,
        JWT_SECRET_KEY=TestConfig.JWT_SECRET_KEY,
        ID_HASH_KEY=TestConfig.ID_HASH_KEY,
        RATELIMIT_ENABLED="0",
        PUSH_BACKEND="log",
        LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
        GUNICORN_MAX_REQUESTS="0",
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "-w", "2", "--threads", "2", "--bind", f"127.0.0.1:{port}",
         "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(port, "/readyz", lambda _text: True)
        status, _ = _request(port, "POST", f"/api/v1/postings/{wish}/claims", {}, volunteer.headers)
        assert status == 201
        # Probes from a few threads at once, a new connection each, until both
        # workers have served some (each keeps its own files): the second may
        # still be loading the app when the first answers, so allow it a minute.
        probes = 0
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            while len(_worker_files(metrics_dir)) < 2 and time.monotonic() < deadline:
                statuses = list(pool.map(lambda _: _request(port, "GET", "/healthz")[0], range(16)))
                assert statuses == [200] * 16
                probes += 16
                time.sleep(0.1)
        assert len(_worker_files(metrics_dir)) == 2, "one worker served every request"
        assert _request(port, "GET", "/metrics")[0] == 404  # never on the API's port
        parsed = samples(_request(metrics_port, "GET", "/metrics")[1])
    finally:
        _stop(proc)
    assert value(parsed, "yz_claims_total", outcome="active") == 1
    created = {"method": "POST", "route": CLAIMS_ROUTE, "status": "201"}
    assert value(parsed, "yz_http_request_duration_seconds_count", **created) == 1
    assert value(parsed, "yz_http_request_duration_seconds_bucket", le="+Inf", **created) == 1
    assert value(parsed, "yz_http_request_duration_seconds_count", method="GET", route="/healthz", status="200") == (
        probes
    )


@pytest.mark.slow
def test_the_development_server_serves_its_metrics_on_their_own_address(tmp_path, sqlite_file):
    """`make run`'s `flask run` serves the metrics where gunicorn does (METRICS_ADDRESS),
    never on the API's port."""
    port = free_port()
    metrics_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "PROMETHEUS_"))}
    env.update(
        APP_ENV="development",
        INSTANCE_PATH=str(tmp_path / "instance"),
        DATABASE_URL=sqlite_file,
        PUSH_BACKEND="log",
        LOG_LEVEL="WARNING",
        SCHEDULER_EMBEDDED="0",
        METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(port, "/healthz", lambda _text: True)
        assert _request(port, "GET", "/metrics")[0] == 404
        text = _wait_for(metrics_port, "/metrics", lambda t: 'route="/healthz"' in t)
    finally:
        _stop(proc)
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(samples(text), "yz_http_request_duration_seconds_count", **healthz) >= 1


def _worker_files(path: Path) -> set[str]:
    """The pids that wrote metric files (``counter_1234.db``, ``histogram_1234.db``)."""
    return {p.stem.rsplit("_", 1)[-1] for p in path.glob("*.db")}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (a clean stop), then SIGKILL after 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _request(port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _wait_for(port: int, path: str, ready, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, text = _request(port, "GET", path)
            if status == 200 and ready(text):
                return text
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{path} on port {port} not ready: {last}")
