"""Configuration from the environment and the embedded SQLite default."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from app import create_app
from app.config import DEVELOPMENT_DEFAULTS, database_url, env_bool, env_int
from app.extensions import db
from tests.conftest import _config_dict
from tests.helpers import register


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/yz", "postgresql+psycopg://u:p@db:5432/yz"),
        ("postgres://u@db/yz", "postgresql+psycopg://u@db/yz"),
        ("postgresql+psycopg://u@db/yz", "postgresql+psycopg://u@db/yz"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
        (None, None),
    ],
)
def test_database_url_uses_psycopg3(url, expected):
    assert database_url(url) == expected


def test_sqlite_under_instance_when_database_url_is_unset():
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": None})
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    assert uri == "sqlite:///" + os.path.join(app.instance_path, "yongzhiyuan.sqlite")
    assert os.path.isdir(app.instance_path)


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(tmp_path):
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'wal.sqlite'}"})
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 10000
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        db.engine.dispose()


def test_postgresql_gets_a_pool_checked_on_checkout_without_a_pre_ping():
    """Connections are checked as they leave the pool (app.database._check_out;
    tests/test_round_trips.py), not by SQLAlchemy's SELECT before every use."""
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@127.0.0.1:1/x"})
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert not options.get("pool_pre_ping") and options["pool_size"] >= 5


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("no", False)],
)
def test_env_bool(monkeypatch, value, expected):
    monkeypatch.setenv("SOME_FLAG", value)
    assert env_bool("SOME_FLAG", not expected) is expected


def test_env_defaults(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    monkeypatch.setenv("SOME_EMPTY", "")
    assert env_bool("SOME_FLAG", True) is True
    assert env_bool("SOME_EMPTY", False) is False
    assert env_int("SOME_FLAG", 7) == 7
    monkeypatch.setenv("SOME_FLAG", "42")
    assert env_int("SOME_FLAG", 7) == 42


def test_token_lifetimes_follow_the_contract():
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": None})
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 15 * 60
    assert app.config["JWT_REFRESH_TOKEN_EXPIRES"].days == 30
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


_LIMITS = (
    "import json; from app.config import Config; "
    "print(json.dumps({k: getattr(Config, k) for k in dir(Config) if k.startswith('RATELIMIT_') and k[10:11].isupper()"
    " and isinstance(getattr(Config, k), str)}))"
)


def _limits(**env) -> dict:
    import json
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "APP_ENV"))}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _LIMITS], env={**clean, "PYTHONPATH": root, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_development_rate_limits_let_journeys_be_replayed():
    """Two sign-up-and-login journeys a minute from one laptop never meet a 429 in
    development; production keeps its budgets; the environment overrides both."""
    production = _limits()
    assert production["RATELIMIT_AUTH_IP"] == "30/minute"
    assert production["RATELIMIT_AUTH_PHONE"] == "10/minute"
    assert production["RATELIMIT_USER_WRITES"] == "60/minute;1000/day"
    assert _limits(APP_ENV="production") == production
    development = _limits(APP_ENV="development")
    for name, value in DEVELOPMENT_DEFAULTS.items():
        assert development[name] == value
        assert production[name] != value
    assert _limits(APP_ENV="development", RATELIMIT_AUTH_IP="5/minute")["RATELIMIT_AUTH_IP"] == "5/minute"
    # what stays the same in both
    assert development["RATELIMIT_VERIFY_IP"] == production["RATELIMIT_VERIFY_IP"]


def test_two_journeys_a_minute_pass_the_development_limits(app, make_app):
    """Register and sign in again and again from one address (the limiter on,
    development budgets): no 429 within two journeys' worth of calls."""
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
        **{k: v for k, v in DEVELOPMENT_DEFAULTS.items()},
    )
    client = app.test_client()
    codes = []
    for journey in range(2):
        for person in range(4):
            phone = f"1391234{journey}{person:03d}"
            codes.append(register(app, client, phone, "journey-pass-1", "x").status_code)
            for _ in range(3):
                login = {"phone": phone, "password": "journey-pass-1"}
                codes.append(client.post("/api/v1/auth/login", json=login).status_code)
    assert set(codes) <= {200, 201}, codes
