"""Checks of a running install: what ``/readyz`` reports and ``flask doctor`` prints.

Each check returns None when all is well, or one sentence saying what is not.
``/readyz`` asks the quick ones (the database, Redis when configured) within
two seconds; ``flask doctor`` asks everything an operator needs before opening
the doors (keys, migrations, push credentials, the photo storage, the
scheduler's heartbeat) and
exits non-zero on any problem.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, current_app

from app.clock import utcnow
from app.database import DEADLINE_ARG, client_deadline
from app.extensions import db

PROBE_SECONDS = 1.5
# A job is overdue when it has not run for this many of its intervals (at least 2 minutes).
HEARTBEAT_INTERVALS = 3


def _probe_engine(app: Flask) -> sa.Engine:
    """A separate, pool-less engine with short timeouts: a probe never queues
    behind requests for a pooled connection, nor waits on a hung server."""
    engine = app.extensions.get("yz_probe_engine")
    if engine is None:
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        args = {"connect_timeout": 2, DEADLINE_ARG: PROBE_SECONDS} if url.startswith("postgresql") else {}
        engine = app.extensions["yz_probe_engine"] = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args=args
        )
    return engine


def check_clock(app: Flask) -> str | None:
    """A shifted clock (CLOCK_SHIFT_DAYS) is a problem in any mode: every time the
    app writes would be off by that many days."""
    from app.secrets import clock_problems

    return "; ".join(clock_problems(app.config)) or None


def check_database(app: Flask) -> str | None:
    try:
        with _probe_engine(app).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return f"the database does not answer ({type(exc).__name__})"
    return None


def check_redis(app: Flask) -> str | None:
    uri = app.config.get("RATELIMIT_STORAGE_URI") or ""
    if not uri.startswith(("redis://", "rediss://", "redis+")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(uri.replace("redis+", "", 1), socket_timeout=1, socket_connect_timeout=1)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"Redis ({uri.split('@')[-1]}) does not answer ({type(exc).__name__}); rate limits count in memory"
    return None


def readiness(app: Flask) -> dict[str, str]:
    """``{"database": "ok" | problem, "redis": "ok" | problem | "not used"}``, in
    at most PROBE_SECONDS: the checks run side by side, and one that has not
    answered by then is reported as not answering (its thread ends by itself)."""
    uses_redis = (app.config.get("RATELIMIT_STORAGE_URI") or "").startswith(("redis", "rediss"))
    checks = {"database": check_database, **({"redis": check_redis} if uses_redis else {})}
    results: dict[str, str | None] = {}

    def run(name, check):
        results[name] = check(app)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in checks.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PROBE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    report = {
        name: (results[name] or "ok") if name in results else f"no answer within {PROBE_SECONDS:g} s" for name in checks
    }
    report.setdefault("redis", "not used")
    return report


def check_keys(app: Flask) -> str | None:
    from app.config import is_development
    from app.secrets import production_problems

    if is_development(app):
        return "development mode (APP_ENV=development): keys are generated, not for production"
    return "; ".join(production_problems(app)) or None


def check_migrations(app: Flask) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    directory = app.extensions["migrate"].directory
    script = ScriptDirectory(directory)
    heads = set(script.get_heads())
    try:
        with client_deadline(5), db.engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    except Exception as exc:  # noqa: BLE001
        return f"cannot read the schema version ({type(exc).__name__})"
    if current != heads:
        return (
            f"the schema is at {sorted(current) or 'nothing'}, the code needs {sorted(heads)}: run `flask db upgrade`"
        )
    return None


def check_push(app: Flask) -> str | None:
    from app.delivery import push_delivery

    try:
        return push_delivery(app).problems()
    except RuntimeError as exc:
        return str(exc)


def check_sms(app: Flask) -> str | None:
    """The SMS provider's settings (``aliyun``: keys, signature, template, endpoint);
    in production a development provider (``log``) is a problem too."""
    from app.config import is_development
    from app.sms import configuration_problems

    problems = configuration_problems(app.config, production=not is_development(app))
    return "; ".join(problems) or None


def check_storage(app: Flask) -> str | None:
    """The photo storage: its settings (production refuses local files), then
    whether it answers (S3: the bucket exists and these credentials may use it)."""
    from app import storage
    from app.config import is_development

    problems = storage.config_problems(app.config, production=not is_development(app))
    if problems:
        return "; ".join(problems)
    return app.extensions["storage"].check()


def check_scheduler(app: Flask) -> str | None:
    from app.models import JobRun
    from app.scheduler import JOBS, interval_of

    try:
        with client_deadline(5):
            runs = {row.job: row for row in db.session.scalars(sa.select(JobRun))}
    except Exception as exc:  # noqa: BLE001
        return f"cannot read the scheduler's heartbeat ({type(exc).__name__})"
    now = utcnow()
    late = []
    for spec in JOBS:
        allowed = timedelta(seconds=max(120, HEARTBEAT_INTERVALS * interval_of(app, spec)))
        run = runs.get(spec.name)
        if run is None:
            late.append(f"{spec.name} never ran")
        elif run.last_finished_at < now - allowed:
            late.append(f"{spec.name} last ran {int((now - run.last_finished_at).total_seconds())} s ago")
        elif run.last_error:
            late.append(f"{spec.name} failed last time: {run.last_error[:120]}")
    if late:
        return "is `flask scheduler run` running? " + "; ".join(late)
    return None


def check_certificate_font(app: Flask) -> str | None:
    """The font certificates are set in and embed (``CERTIFICATE_FONT``) is there and embeddable."""
    from app.services.certificate_pdf import check_font, font_path

    return check_font(font_path(app))


CHECKS: tuple[tuple[str, Callable[[Flask], str | None]], ...] = (
    ("keys", check_keys),
    ("clock", check_clock),
    ("database", check_database),
    ("migrations", check_migrations),
    ("redis", check_redis),
    ("push", check_push),
    ("sms", check_sms),
    ("storage", check_storage),
    ("scheduler", check_scheduler),
    ("font", check_certificate_font),
)


def run_checks() -> list[tuple[str, str | None]]:
    app = current_app._get_current_object()
    return [(name, check(app)) for name, check in CHECKS]
