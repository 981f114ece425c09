"""Fixtures in the flaskr style: ``app``, ``client``, ``runner``.

The suite runs on SQLite by default and on PostgreSQL when TEST_DATABASE_URL
is set. The schema is built once per session; every test starts from empty
tables and a reset clock.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

# Subprocesses the tests start (the scheduler, `flask run`, probes) run in
# development mode, with generated keys; production's refusal is tested on purpose.
os.environ.setdefault("APP_ENV", "development")
# Each session (each xdist worker) keeps generated development keys and the default
# SQLite file in a directory of its own, never in the checkout's instance/ (where
# `make run` keeps its own), and shares it with the processes it starts.
if "INSTANCE_PATH" not in os.environ:
    os.environ["INSTANCE_PATH"] = tempfile.mkdtemp(prefix="yz-test-instance-")
    atexit.register(shutil.rmtree, os.environ["INSTANCE_PATH"], True)

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from app import clock, create_app  # noqa: E402
from app.config import TestConfig, database_url  # noqa: E402
from app.extensions import db  # noqa: E402
from tests.response_check import ResponseChecker  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _no_secrets_in_logs():
    """Every record logged during the session, formatted as the app writes it, holds
    no token, phone number, ID number or configured secret; else the session fails."""
    import logging

    from tests.log_leaks import LeakWatcher

    watcher = LeakWatcher([getattr(TestConfig, name) for name in ("SECRET_KEY", "JWT_SECRET_KEY", "ID_HASH_KEY")])
    root = logging.getLogger()
    root.addHandler(watcher)
    yield watcher
    root.removeHandler(watcher)
    assert not watcher.leaks, "secrets reached the log:\n" + "\n".join(watcher.leaks)


@pytest.fixture(scope="session")
def db_url(tmp_path_factory) -> Iterator[str]:
    """The test database: an SQLite file of this session's own, or with
    TEST_DATABASE_URL that PostgreSQL database — and under pytest-xdist
    (``make test`` runs ``-n auto``) a database per worker beside it,
    ``<name>_gw0``, ``<name>_gw1``…, made empty at the start and dropped at the end,
    so no worker sees another's rows, locks or advisory locks."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
        return
    url = database_url(url)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        yield url
        return
    base = sa.make_url(url)
    name = f"{base.database}_{worker}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _schema(db_url):
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": db_url})
    with app.app_context():
        db.drop_all()
        db.create_all()
        db.session.remove()
        db.engine.dispose()
    yield
    with app.app_context():
        db.drop_all()
        db.engine.dispose()


def _share_url_builders() -> None:
    """Werkzeug compiles two small Python functions per route to build its URLs
    (``url_for``), for every app: with ~90 routes that is most of what a test's
    ``create_app()`` still costs once the OpenAPI document is reused. A builder's
    code is a function of the route's text and parsed parts only (the rule itself is
    passed in when it is called: its converters, its query encoding), so each test
    process compiles it once per route and shares it between its apps. A rule with
    defaults is compiled as Werkzeug does (a default can be folded into the code).
    tests/test_fixtures.py checks that every route builds the same URL either way."""
    from werkzeug.routing.rules import Rule

    compile_builder = Rule._compile_builder
    compiled: dict[tuple, object] = {}

    def shared_builder(rule: Rule, append_unknown: bool = True):
        if rule.defaults:
            return compile_builder(rule, append_unknown)
        key = (rule.rule, tuple(rule._trace), append_unknown)
        if key not in compiled:
            compiled[key] = compile_builder(rule, append_unknown)
        return compiled[key]

    shared_builder.compile_builder = compile_builder
    Rule._compile_builder = shared_builder


_share_url_builders()

# The local photo storage of apps built outside the ``app`` fixture (one folder per
# test process, so per xdist worker), never the checkout's instance/.
_PHOTOS_DIR = tempfile.mkdtemp(prefix="yz-test-photos-")
atexit.register(shutil.rmtree, _PHOTOS_DIR, True)


def _config_dict() -> dict:
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    return {**config, "STORAGE_LOCAL_PATH": _PHOTOS_DIR}


def production_config(**overrides) -> dict:
    """The test settings read as production (``APP_ENV=production``, not testing).
    A run under ``CLOCK_SHIFT_DAYS`` shifts the test process's clock, not this app's
    settings: production refuses a shifted clock, and that has its own test."""
    return {
        **_config_dict(),
        "TESTING": False,
        "APP_ENV": "production",
        "CLOCK_SHIFT_DAYS": 0,
        "PUBLIC_BASE_URL": "https://zhiyuan.example.cn",  # required in production
        **overrides,
    }


def _empty_tables() -> None:
    # DELETE, not TRUNCATE: on PostgreSQL a TRUNCATE of every table costs about
    # 0.3 s per test, DELETE of a few rows a few milliseconds. Ids keep growing,
    # so no test may assume an id.
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def photos_dir() -> Iterator[str]:
    """The test's local photo storage (STORAGE_LOCAL_PATH of ``app`` and ``make_app``):
    one path per test process, emptied after every test. The path stays the same so
    every ``app`` has the same settings and reuses the OpenAPI document built for the
    first (app/extensions.py: building it is most of what create_app() costs)."""
    path = os.path.join(_PHOTOS_DIR, "test")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app(_schema, db_url, photos_dir):
    """A fresh app on empty tables. No app context is pushed during the test,
    so every request gets its own session as in production; code that needs
    one uses ``with app.app_context():`` (the factories do)."""
    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": db_url, "STORAGE_LOCAL_PATH": photos_dir})
    checker = ResponseChecker(app)
    yield app
    clock.reset()
    with app.app_context():
        db.session.remove()
        _empty_tables()
        db.engine.dispose()
    assert not checker.problems, "answers that differ from the OpenAPI document:\n" + "\n".join(checker.problems)


@pytest.fixture
def sqlite_file(tmp_path) -> str:
    """A fresh SQLite database file with the schema, for a subprocess (the
    scheduler, gunicorn) to share with the test."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    setup = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url})
    with setup.app_context():
        db.create_all()
        db.engine.dispose()
    return url


@pytest.fixture
def make_app(db_url, photos_dir):
    """Build further apps on the test database with config overrides (the
    limiter on, another key, …); their connections are closed afterwards."""
    made = []

    def build(**config):
        base = {**_config_dict(), "SQLALCHEMY_DATABASE_URI": db_url, "STORAGE_LOCAL_PATH": photos_dir}
        made.append(create_app({**base, **config}))
        return made[-1]

    yield build
    for made_app in made:
        with made_app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def fake_s3():
    """A local S3-compatible server (moto's, in its own process) for the session."""
    from tests.fake_s3 import FakeS3

    server = FakeS3()
    yield server
    server.stop()


@pytest.fixture
def s3_config(fake_s3) -> dict:
    """Settings of an app storing photos in a new, empty bucket of the fake S3 server."""
    return fake_s3.config(fake_s3.new_bucket())


@pytest.fixture
def people(app) -> dict:
    """An approved org (``org_id``) with its ``coordinator``, a ``resident`` (王阿姨),
    a ``volunteer`` (小李) and a ``stranger`` (路人) who has nothing to do with them."""
    from tests.factories import make_org, make_user, make_volunteer

    org_id, coordinator = make_org(app)
    return {
        "org_id": org_id,
        "coordinator": coordinator,
        "resident": make_user(app, name="王阿姨"),
        "volunteer": make_volunteer(app, name="小李"),
        "stranger": make_user(app, name="路人"),
    }


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def is_postgres(db_url) -> bool:
    return db_url.startswith("postgresql")


@pytest.fixture
def postgres_only(is_postgres):
    if not is_postgres:
        pytest.skip("needs PostgreSQL (set TEST_DATABASE_URL)")
