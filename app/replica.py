"""Reads on a PostgreSQL streaming replica (``DATABASE_REPLICA_URL``, optional).

Which requests: the GET views of :data:`REPLICA_ENDPOINTS` — the feed (and
``for_me``), a posting's page, the public and the org's figures, the records
exports. Nothing else changes: their code is not touched, the session routes
them, in one place:

- while such a view runs, a plain ``SELECT`` (not ``FOR UPDATE``) goes to the
  replica (``app.database.RoutingSession``, the app's session class);
  everything else — writes, flushes, raw SQL, row locks — and every other
  request stays on the primary;
- the bearer token's check (``app.security.bearer_session``) is done on the
  primary before the view starts, so a revocation holds from its commit on;
- **read-your-writes**: a signed-in user's write request (POST, PUT, PATCH,
  DELETE) stamps ``users.last_write_at`` before its answer leaves; for
  :meth:`Replica.sticky_seconds` after it — ``REPLICA_MAX_LAG_S`` plus the age a
  lag reading may have — that user's reads go to the primary. Any replica used
  lags less than ``REPLICA_MAX_LAG_S``, so it has their write by then;
- **health**: the replica's lag is read at most once a second per process —
  ``pg_last_wal_replay_lsn()`` against the primary's ``pg_current_wal_lsn()``
  (caught up: 0 s, whatever the age of the last transaction), else the age of
  the last transaction replayed. A replica lagging more than
  ``REPLICA_MAX_LAG_S``, or that cannot be reached, is skipped; an unreachable
  one is asked again after :data:`RETRY_SECONDS`. A view that fails on the
  replica because it went away is run again on the primary (a streamed export
  that already started cannot be: it ends there).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from datetime import timedelta

import sqlalchemy as sa
from flask import Flask, current_app, g, request

from app.clock import utcnow
from app.extensions import db

log = logging.getLogger(__name__)

REPLICA_ENDPOINTS = frozenset(
    {
        "postings.list_postings",
        "postings.get_posting",
        "stats.city_stats",
        "orgs.org_figures",
        "orgs.export_records_csv",
        "orgs.export_records_xlsx",
    }
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CHECK_SECONDS = 1.0  # a lag reading is used this long
RETRY_SECONDS = 5.0  # an unreachable replica is left alone this long
CONNECT_TIMEOUT_SECONDS = 1  # a replica that does not answer costs one request this long, then RETRY_SECONDS of none

_LAG = sa.text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn),"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)


class Replica:
    """The replica's engine and what this process last learnt of it."""

    def __init__(self, app: Flask, url: str) -> None:
        from app.database import engine_options

        options = engine_options(app)
        options["connect_args"] = {**options["connect_args"], "connect_timeout": CONNECT_TIMEOUT_SECONDS}
        options["connect_args"]["application_name"] = "yongzhiyuan-replica-reads"
        self.engine = sa.create_engine(url, **options)
        self.max_lag = float(app.config["REPLICA_MAX_LAG_S"])
        self.lag: float | None = None  # seconds; None: unknown or unreachable
        self.checked_at = -math.inf  # time.monotonic() of the last reading
        self.down_until = -math.inf
        self._lock = threading.Lock()

    @property
    def sticky_seconds(self) -> float:
        """How long after a user's write their reads stay on the primary."""
        return self.max_lag + CHECK_SECONDS + 1.0

    def usable(self) -> bool:
        """Whether reads may go to the replica now (reads its lag when the last
        reading is older than CHECK_SECONDS; one thread reads, the others use
        the last reading meanwhile)."""
        now = time.monotonic()
        if now < self.down_until:
            return False
        if now - self.checked_at >= CHECK_SECONDS and self._lock.acquire(blocking=False):
            try:
                self._read_lag()
            finally:
                self._lock.release()
        return self.lag is not None and self.lag <= self.max_lag

    def _read_lag(self) -> None:
        try:
            with db.engine.connect() as primary:
                position = primary.scalar(sa.text("SELECT pg_current_wal_lsn()::text"))
            with self.engine.connect() as replica:
                recovering, caught_up, age = replica.execute(_LAG, {"lsn": position}).one()
        except sa.exc.SQLAlchemyError as exc:
            self.went_away(exc)
            return
        self.checked_at = time.monotonic()
        was = self.lag
        if not recovering:
            self.lag = None  # promoted, or not a standby at all: not ours to read
        elif caught_up:
            self.lag = 0.0
        else:
            self.lag = math.inf if age is None else max(0.0, float(age))
        if (was is not None and was <= self.max_lag) != (self.lag is not None and self.lag <= self.max_lag):
            log.warning("read replica %s (lag %s s)", "in use" if self.usable_lag() else "skipped", self.lag)

    def usable_lag(self) -> bool:
        return self.lag is not None and self.lag <= self.max_lag

    def went_away(self, exc: BaseException) -> None:
        """The replica could not be used: skip it for RETRY_SECONDS."""
        if self.lag is not None or time.monotonic() >= self.down_until:
            log.warning("read replica unreachable, reads go to the primary: %s", str(exc).splitlines()[0][:200])
        self.lag = None
        self.checked_at = time.monotonic()
        self.down_until = time.monotonic() + RETRY_SECONDS
        self.engine.dispose()

    def forget(self) -> None:
        """Read the lag again at the next request (tests; after maintenance)."""
        self.checked_at = self.down_until = -math.inf


def init_app(app: Flask) -> None:
    """After the blueprints: route REPLICA_ENDPOINTS when DATABASE_REPLICA_URL is set."""
    url = app.config.get("DATABASE_REPLICA_URL")
    if not url:
        return
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        raise RuntimeError("DATABASE_REPLICA_URL needs a PostgreSQL primary (DATABASE_URL)")
    app.extensions["replica"] = Replica(app, url)
    for endpoint in REPLICA_ENDPOINTS:
        app.view_functions[endpoint] = _reading(app.view_functions[endpoint])
    app.after_request(_stamp_write)


def replica_of(app: Flask) -> Replica | None:
    return app.extensions.get("replica")


def _choose() -> sa.Engine | None:
    """The replica's engine for this request, or None for the primary."""
    replica = replica_of(current_app)
    if replica is None or request.method != "GET":
        return None
    from app.security import bearer_payload, bearer_session

    payload = bearer_payload()
    if payload is not None and payload.get("type") != "refresh":
        user, revoked = bearer_session(payload)  # on the primary, once per request
        if user is not None and not revoked and _wrote_lately(user.last_write_at, replica):
            return None
    return replica.engine if replica.usable() else None


def _wrote_lately(last_write_at, replica: Replica) -> bool:
    return last_write_at is not None and utcnow() - last_write_at < timedelta(seconds=replica.sticky_seconds)


def _reading(view):
    @functools.wraps(view)
    def reading(*args, **kwargs):
        from app.database import is_unreachable

        engine = _choose()
        if engine is None:
            return view(*args, **kwargs)
        g._replica_engine, g._replica_used = engine, False
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            if not (g.get("_replica_used") and is_unreachable(exc)):
                raise
            replica_of(current_app).went_away(exc)
            g._replica_engine = None
            db.session.rollback()
            return view(*args, **kwargs)

    return reading


def _stamp_write(response):
    """A signed-in user's write request: their reads stay on the primary for a while."""
    if request.method not in WRITE_METHODS or response.status_code >= 500:
        return response
    from app.models.base import MAX_ID
    from app.security import bearer_payload

    payload = bearer_payload()
    if payload is None or payload.get("type") == "refresh":
        return response
    try:
        user_id = int(payload.get("sub"))
    except (TypeError, ValueError):
        return response
    if not 0 < user_id <= MAX_ID:
        return response
    now = utcnow()
    try:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                sa.text(
                    "UPDATE users SET last_write_at = :now WHERE id = :id"
                    " AND (last_write_at IS NULL OR last_write_at < :now - interval '1 second')"
                ),
                {"now": now, "id": user_id},
            )
    except sa.exc.SQLAlchemyError:  # the primary went away after the write: nothing to stick to
        log.warning("could not stamp the write of user %s", user_id)
    return response
