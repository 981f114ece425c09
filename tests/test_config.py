"""Configuration from the environment and the embedded SQLite default."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from app import create_app
from app.config import database_url, env_bool, env_int
from app.extensions import db
from tests.conftest import _config_dict


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


def test_postgresql_gets_a_checked_pool():
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@127.0.0.1:1/x"})
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["pool_pre_ping"] is True and options["pool_size"] >= 5


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
