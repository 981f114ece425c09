"""How the app talks to its database: engine options, timeouts, and what an outage looks like.

No web request waits on the database for more than a few seconds, whatever
the database does:

- **connect**: ``DB_CONNECT_TIMEOUT_SECONDS`` (3) to open a connection;
- **pool**: ``DB_POOL_TIMEOUT_SECONDS`` (3) to get one from the pool;
- **statement**: PostgreSQL cancels a statement after
  ``DB_STATEMENT_TIMEOUT_MS`` (5,000) — a slow query, a lock held too long;
- **a server that stops answering** (hung, stopped, a network that drops
  packets): the server cannot cancel anything then, so every wait on the
  socket has a client-side deadline, ``DB_CLIENT_TIMEOUT_SECONDS`` (8). A
  connection that misses it is closed and thrown away.

Jobs get their own, longer limits (``JOB_STATEMENT_TIMEOUT_MS``, and the
client deadline follows it): :func:`job_limits` sets both for the batch's
transaction. While the database cannot be reached, requests answer 503
``service_unavailable`` with ``Retry-After`` (``app.errors``), one log line per
kind of failure at most every few seconds, never a traceback per request.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextvars import ContextVar

import psycopg
import sqlalchemy as sa
from flask import Flask, g, has_app_context
from flask_sqlalchemy.session import Session

# The connect argument that carries an engine's client deadline to its connections.
DEADLINE_ARG = "yz_client_timeout"
# The client-side deadline of the current context (seconds); None: the connection's own.
_deadline: ContextVar[float | None] = ContextVar("db_deadline", default=None)


class DeadlineConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server has a deadline."""

    # DB_CLIENT_TIMEOUT_SECONDS of the engine that opened it (see _connect_with_deadline).
    _yz_deadline = 8.0

    def wait(self, gen, interval=0.1, timeout=None):  # noqa: D102 - psycopg's own signature
        limit = timeout if timeout is not None else (_deadline.get() or self._yz_deadline)
        try:
            return super().wait(gen, interval=interval, timeout=limit)
        except psycopg.errors._WaitTimeout:
            # The server may still be working on it, or be gone: this connection's
            # state is unknown, so it is closed and the pool replaces it.
            self.pgconn.finish()
            raise psycopg.OperationalError(f"the database did not answer within {limit:g} s") from None


def engine_options(app: Flask) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS for the configured database (the app's own override last)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        return dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    statement_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    return {
        "pool_pre_ping": True,
        "pool_size": 10,
        "max_overflow": 20,
        "pool_timeout": float(app.config["DB_POOL_TIMEOUT_SECONDS"]),
        "connect_args": {
            "connect_timeout": int(app.config["DB_CONNECT_TIMEOUT_SECONDS"]),
            "options": f"-c statement_timeout={statement_ms}",
            "application_name": "yongzhiyuan",
            DEADLINE_ARG: float(app.config["DB_CLIENT_TIMEOUT_SECONDS"]),
        },
        **app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
    }


def init_app(app: Flask) -> None:
    """Set the engine options and the default client deadline (before db.init_app)."""
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app)


@contextlib.contextmanager
def client_deadline(seconds: float) -> Iterator[None]:
    """Within the block, waits on the database give up after ``seconds``."""
    token = _deadline.set(seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def job_limits(session, statement_ms: int) -> Iterator[None]:
    """A job batch's own limits: the statement timeout of its transaction
    (PostgreSQL ``SET LOCAL``) and a client deadline a little past it."""
    with client_deadline(statement_ms / 1000 + 10):
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text(f"SET LOCAL statement_timeout = {int(statement_ms)}"))
        yield


@sa.event.listens_for(sa.engine.Engine, "do_connect")
def _connect_with_deadline(dialect, _record, cargs, cparams):
    """PostgreSQL connections are DeadlineConnections (psycopg 3), each with its
    engine's deadline (an app's, a probe's)."""
    deadline = cparams.pop(DEADLINE_ARG, None)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        connection = DeadlineConnection.connect(*cargs, **cparams)
        if deadline is not None:
            connection._yz_deadline = float(deadline)
        return connection
    return None


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL, a busy timeout and foreign keys for every SQLite connection."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be used right now (down, hung,
    overloaded, timed out) rather than a fault in the request or the code."""
    if isinstance(exc, sa.exc.TimeoutError):  # no connection free in the pool
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if isinstance(orig, psycopg.OperationalError):
            return True  # connection failures, deadlines, statement timeouts
        if isinstance(orig, sqlite3.OperationalError):
            return True  # locked, or the file cannot be opened
    return False


class RoutingSession(Session):
    """The app's session class: while a view reads from the replica (``app.replica``
    sets ``g._replica_engine``), a plain SELECT — not FOR UPDATE, not during a
    flush — goes there; everything else, and every other request, to the primary."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_app_context() and not self._flushing:
            engine = g.get("_replica_engine")
            if engine is not None and isinstance(clause, sa.Select) and clause._for_update_arg is None:
                g._replica_used = True
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
