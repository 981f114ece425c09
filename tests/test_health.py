"""Probes, and what the app does while its database or Redis is out.

GET /healthz (the process is up), GET /readyz (the database answers, within
2 s; Redis when the rate limits use it); requests during an outage answer 503
``service_unavailable`` with ``Retry-After``, one log line per kind of failure.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import _config_dict
from tests.factories import make_user

UNREACHABLE = [
    # Nothing listens on port 1: the connection is refused at once.
    "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
    # A directory that does not exist: SQLite cannot open the file.
    "sqlite:////nonexistent-dir/for-readyz/db.sqlite",
]


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never says a word: a database
    that hangs (stopped, overloaded, a network that swallows packets)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def outage_app(url: str, **config):
    return create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url, **config})


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert resp.headers["X-Request-ID"]


def test_readyz_reports_each_dependency(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "checks": {"database": "ok", "redis": "not used"}}


def test_probes_need_no_token_and_ignore_a_bad_one(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path, headers={"Authorization": "Bearer junk"}).status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("url", UNREACHABLE)
def test_readyz_is_503_when_the_database_does_not_answer(url, caplog):
    app = outage_app(url)
    client = app.test_client()
    resp = client.get("/readyz", headers={"Accept-Language": "en"})
    body = resp.get_json()
    assert resp.status_code == 503
    assert body["error"] == "service_unavailable" and body["message"] == "The service is unavailable."
    assert body["checks"]["database"].startswith("the database does not answer")
    assert resp.headers["Retry-After"] == "5"
    assert "readiness check failed" in caplog.text
    # The process itself is still up, and the probe answers the same again.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    with app.app_context():
        db.engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("url", UNREACHABLE)
def test_requests_during_an_outage_are_503_with_retry_after_and_one_log_line(url, caplog, monkeypatch):
    from app import errors

    monkeypatch.setattr(errors, "_outages", {})  # a fresh outage: its first line is logged
    app = outage_app(url)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="app.errors"):
        answers = [client.get("/api/v1/postings") for _ in range(5)]
        answers.append(client.post("/api/v1/auth/login", json={"phone": "13812345678", "password": "whatever-1"}))
    for resp in answers:
        assert (resp.status_code, resp.get_json()["error"]) == (503, "service_unavailable")
        assert resp.headers["Retry-After"] == "5"
    lines = [r for r in caplog.records if r.name == "app.errors"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "database unavailable" in lines[0].getMessage() and not lines[0].exc_info
    with app.app_context():
        db.engine.dispose()


@pytest.mark.slow
def test_a_database_that_hangs_costs_a_request_seconds_not_minutes(silent_server):
    app = outage_app(
        f"postgresql+psycopg://postgres@127.0.0.1:{silent_server}/hung",
        DB_CONNECT_TIMEOUT_SECONDS=1,
        DB_POOL_TIMEOUT_SECONDS=1,
    )
    client = app.test_client()
    started = time.monotonic()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    resp = client.get("/api/v1/postings")
    assert (resp.status_code, resp.get_json()["error"]) == (503, "service_unavailable")
    assert time.monotonic() - started < 4.0
    with app.app_context():
        db.engine.dispose()


def test_readyz_recovers_after_a_failure(app, client, monkeypatch):
    """A failed probe leaves nothing behind: the next one can succeed."""
    import sqlalchemy as sa

    from app import doctor

    calls = {"n": 0}
    original = doctor._probe_engine

    def flaky(flask_app):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection reset"))
        return original(flask_app)

    monkeypatch.setattr(doctor, "_probe_engine", flaky)
    failed = client.get("/readyz")
    assert (failed.status_code, failed.get_json()["error"]) == (503, "service_unavailable")
    recovered = client.get("/readyz")
    assert recovered.status_code == 200 and recovered.get_json()["status"] == "ok"


@pytest.mark.slow
def test_readyz_reports_a_redis_that_does_not_answer(db_url):
    app = outage_app(db_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    resp = app.test_client().get("/readyz")
    assert resp.status_code == 200  # the limits count in memory meanwhile
    assert resp.get_json()["checks"]["redis"].startswith("Redis")
    assert resp.get_json()["checks"]["database"] == "ok"
    with app.app_context():
        db.engine.dispose()


# --- PostgreSQL's own limits ---------------------------------------------------------


@pytest.mark.slow
def test_a_slow_statement_is_cut_by_the_server_and_answered_503(postgres_only, app, db_url, monkeypatch):
    _assert_cut(db_url, monkeypatch, sleep=3, DB_STATEMENT_TIMEOUT_MS=300)


@pytest.mark.slow
def test_a_server_that_stops_answering_is_cut_by_the_client_deadline(postgres_only, app, db_url, monkeypatch):
    """The server-side timeout is far away; the client's deadline ends the wait."""
    _assert_cut(db_url, monkeypatch, sleep=5, DB_STATEMENT_TIMEOUT_MS=60_000, DB_CLIENT_TIMEOUT_SECONDS=0.5)


def _assert_cut(db_url, monkeypatch, *, sleep: float, **limits) -> None:
    """A feed request whose query sleeps ``sleep`` s in the database is answered 503
    within 2 s under ``limits``. (The ``app`` fixture of the callers empties the
    tables afterwards: the user made here must not outlive the test.)"""
    outage = outage_app(db_url, **limits)
    user = make_user(outage)
    _slow_feed(monkeypatch, seconds=sleep)
    started = time.monotonic()
    resp = outage.test_client().get("/api/v1/postings", headers=user.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (503, "service_unavailable")
    assert time.monotonic() - started < 2.0
    # a connection that missed its deadline was thrown away: the pool is disposed of cleanly
    with outage.app_context():
        db.engine.dispose()


def _slow_feed(monkeypatch, seconds: float) -> None:
    """Make the feed's query sleep in the database first."""
    import sqlalchemy as sa

    from app.services import feed

    original = feed.list_postings

    def slow(*args, **kwargs):
        db.session.execute(sa.text(f"SELECT pg_sleep({seconds})"))
        return original(*args, **kwargs)

    monkeypatch.setattr(feed, "list_postings", slow)


def test_a_session_that_fails_to_close_is_answered_503_and_logged_once(app, client, caplog, monkeypatch):
    """The database goes away while the request's session closes (after the view
    answered): the client still gets the envelope, not the server's HTML 500."""
    import psycopg
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from app import errors
    from tests.factories import make_user

    user = make_user(app)
    monkeypatch.setattr(errors, "_outages", {})
    real_close = Session.close

    def dying_close(self):
        real_close(self)
        raise sa.exc.OperationalError("ROLLBACK", {}, psycopg.OperationalError("server closed the connection"))

    monkeypatch.setattr(Session, "close", dying_close)
    with caplog.at_level(logging.WARNING, logger="app.errors"):
        answers = [client.get("/api/v1/me", headers=user.headers) for _ in range(3)]
    monkeypatch.setattr(Session, "close", real_close)
    for resp in answers:
        assert (resp.status_code, resp.get_json()["error"]) == (503, "service_unavailable")
        assert resp.headers["Retry-After"] == "5" and resp.headers["X-Request-ID"]
    lines = [r for r in caplog.records if r.name == "app.errors"]
    assert len(lines) == 1 and not lines[0].exc_info, [r.getMessage() for r in lines]
    assert len(lines[0].getMessage()) < 300
    assert client.get("/api/v1/me", headers=user.headers).status_code == 200
