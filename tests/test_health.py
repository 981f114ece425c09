"""GET /healthz (the process is up) and GET /readyz (the database answers)."""

from __future__ import annotations

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import _config_dict

UNREACHABLE = [
    # Nothing listens on port 1: the connection is refused at once.
    "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2",
    # A directory that does not exist: SQLite cannot open the file.
    "sqlite:////nonexistent-dir/for-readyz/db.sqlite",
]


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert resp.headers["X-Request-ID"]


def test_readyz(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_probes_need_no_token_and_ignore_a_bad_one(client):
    for path in ("/healthz", "/readyz"):
        assert client.get(path, headers={"Authorization": "Bearer junk"}).status_code == 200


@pytest.mark.parametrize("url", UNREACHABLE)
def test_readyz_is_503_when_the_database_does_not_answer(url, caplog):
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url})
    client = app.test_client()
    resp = client.get("/readyz", headers={"Accept-Language": "en"})
    body = resp.get_json()
    assert resp.status_code == 503
    assert body == {
        "code": 503,
        "status": "Service Unavailable",
        "error": "service_unavailable",
        "message": "The service is unavailable.",
    }
    assert resp.headers["X-Request-ID"]
    assert "readiness check failed" in caplog.text
    # The process itself is still up.
    assert client.get("/healthz").status_code == 200
    # And the probe recovers nothing it should not: a second call answers the same.
    assert client.get("/readyz").status_code == 503
    with app.app_context():
        db.engine.dispose()


def test_readyz_recovers_after_a_failure(app, client, monkeypatch):
    """A failed probe rolls its session back, so the next one can succeed."""
    import sqlalchemy.orm

    calls = {"n": 0}
    original = sqlalchemy.orm.Session.execute

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection reset"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.orm.Session, "execute", flaky)
    failed = client.get("/readyz")
    assert (failed.status_code, failed.get_json()["error"]) == (503, "service_unavailable")
    recovered = client.get("/readyz")
    assert (recovered.status_code, recovered.get_json()) == (200, {"status": "ok"})
