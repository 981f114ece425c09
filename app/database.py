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

**Views that only read** (marked :func:`read_only`: the feed, ``for_me``, a
posting's page; the signed-in user, their inbox and its badge, which the app
polls) cost fewer round trips:

- on PostgreSQL their plain SELECTs run outside any transaction (the
  connection in autocommit): no ``BEGIN`` before them and no ``ROLLBACK``
  after. What a page shows does not change: PostgreSQL's default isolation,
  READ COMMITTED, already gave each statement of a transaction its own
  snapshot, so statements that ran in one transaction never agreed with each
  other more than they do apart (a page built from several — ``for_me``'s
  rings, then its rows — shows each posting as the statement that read its
  row saw it). Anything else such a view sends (a write, ``FOR UPDATE``, raw
  SQL) goes to a transaction as in every other view;
- the token's check reads the viewer's coordinator roles with the user
  (``Actor.coordinated``). A view that writes reads them itself, when it asks:
  after the locks it took, so a right lost a moment ago counts
  (``orgs.remove_member``).

**A pooled connection is checked without a round trip.** Instead of
SQLAlchemy's pre-ping (a ``SELECT 1`` before every checkout), a connection
taken from the pool is checked on its socket: a server that restarted, or a
backend that was killed, has hung up, which the socket shows at once; such a
connection is replaced before the request uses it. Only one that sat idle
longer than :data:`PING_IDLE_SECONDS` (a quiet process, where the round trip
costs nothing felt) is pinged as before, so a peer that vanished silently is
found before a request, not by it.

Jobs get their own, longer limits (``JOB_STATEMENT_TIMEOUT_MS``, and the
client deadline follows it): :func:`job_limits` sets both for the batch's
transaction. While the database cannot be reached, requests answer 503
``service_unavailable`` with ``Retry-After`` (``app.errors``), one log line per
kind of failure at most every few seconds, never a traceback per request.
"""

from __future__ import annotations

import contextlib
import select
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import psycopg
import sqlalchemy as sa
from flask import Flask, g, has_app_context, request
from flask_sqlalchemy.session import Session

# The connect argument that carries an engine's client deadline to its connections.
DEADLINE_ARG = "yz_client_timeout"
# The client-side deadline of the current context (seconds); None: the connection's own.
_deadline: ContextVar[float | None] = ContextVar("db_deadline", default=None)
# A pooled connection idle longer than this is pinged before use (see the module's docstring).
PING_IDLE_SECONDS = 10.0
# The mark of a view that only reads (read_only).
_READ_ONLY_MARK = "read_only"


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

    def hung_up(self) -> bool:
        """Whether the server has (or may have) closed this idle connection, read
        from its socket without a round trip. An idle connection of ours has
        nothing to read unless the server hung up (a restart, the backend killed:
        its last message, then the end of the stream); anything else the server
        could send unasked (a notice, a changed setting, a NOTIFY: none of them
        used here) costs no more than opening a new connection."""
        pgconn = self.pgconn
        if pgconn.status != psycopg.pq.ConnStatus.OK:
            return True
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))

    def ping(self) -> None:
        """One round trip outside any transaction (as SQLAlchemy's pre-ping); raises if it fails."""
        autocommit = self.autocommit
        self.autocommit = True
        try:
            self.execute("SELECT 1").close()
        finally:
            if not self.closed:
                self.autocommit = autocommit


def engine_options(app: Flask) -> dict:
    """SQLALCHEMY_ENGINE_OPTIONS for the configured database (the app's own override last)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url.startswith("postgresql"):
        return dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}))
    statement_ms = int(app.config["DB_STATEMENT_TIMEOUT_MS"])
    return {
        # no pool_pre_ping: connections are checked on checkout (_check_out)
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
    """Set the engine options (before db.init_app), and note whether a request's
    view only reads (the first before-request hook, so every statement of the
    request, its hooks' too, is routed alike)."""
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app)

    @app.before_request
    def note_read_only() -> None:
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        g._read_only = getattr(view, _READ_ONLY_MARK, False)


def read_only(view: Callable) -> Callable:
    """Mark a view that only reads (see the module's docstring): nothing it shows
    needs two statements to agree beyond what READ COMMITTED gives, it streams
    no results (a server-side cursor needs a transaction) and writes nothing."""
    setattr(view, _READ_ONLY_MARK, True)
    return view


def in_read_only_view() -> bool:
    """Whether the current request's view is marked :func:`read_only`."""
    return has_app_context() and bool(g.get("_read_only"))


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


@sa.event.listens_for(sa.pool.Pool, "checkout")
def _check_out(dbapi_connection, _record, _proxy) -> None:
    """A PostgreSQL connection leaving the pool: replaced if the server hung up on
    it, pinged first if it sat idle longer than PING_IDLE_SECONDS. (Raising
    DisconnectionError makes the pool open a new connection in its place.)"""
    if not isinstance(dbapi_connection, DeadlineConnection):
        return
    if dbapi_connection.hung_up():
        raise sa.exc.DisconnectionError("the server closed the connection")
    idle_since = dbapi_connection.__dict__.get("_yz_idle_since")
    if idle_since is not None and time.monotonic() - idle_since > PING_IDLE_SECONDS:
        try:
            dbapi_connection.ping()
        except psycopg.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc


@sa.event.listens_for(sa.pool.Pool, "checkin")
def _checked_in(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, DeadlineConnection):
        dbapi_connection._yz_idle_since = time.monotonic()


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
    """The app's session class. A plain SELECT — not FOR UPDATE, not during a
    flush — goes to the replica while a view reads from it (``app.replica`` sets
    ``g._replica_engine``), and on PostgreSQL outside a transaction (the engine's
    autocommit twin) in a view marked :func:`read_only`; everything else,
    and every other request, to the primary in the session's transaction."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if (
            bind is None
            and isinstance(clause, sa.Select)
            and clause._for_update_arg is None
            and not self._flushing
            and has_app_context()
        ):
            engine = g.get("_replica_engine")
            if engine is not None:
                g._replica_used = True
            if g.get("_read_only"):
                engine = engine or super().get_bind(mapper=mapper, clause=clause, **kwargs)
                return _autocommit(engine) if engine.dialect.name == "postgresql" else engine
            if engine is not None:
                return engine
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


def _autocommit(engine: sa.Engine) -> sa.Engine:
    """The engine's twin whose connections are in autocommit (same pool; the pool
    puts a connection back in its usual mode when it returns), made once: the
    session keeps one connection per engine object."""
    twin = engine.__dict__.get("_yz_autocommit")
    if twin is None:
        twin = engine._yz_autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    return twin
