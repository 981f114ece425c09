"""The reference servers of ``bench/sidebyside.py``.

``ceiling``: the raw-SQL ceiling of a claim. A bare WSGI callable that does
what ``POST /api/v1/postings/{id}/claims`` does for a wish, with the same
statements the app sent before any tuning (the token family's revocation
count, the user, the volunteer, the posting, the claim INSERT … RETURNING,
the posting's guarded UPDATE, the volunteer's guarded UPDATE, the poster's
notification settings, the notification INSERT, COMMIT), through PyJWT and a
small pool of psycopg connections: no framework, no ORM, no schema. What the
app spends beyond it is the price of Flask, SQLAlchemy, marshmallow and our
own code.

``one_statement``: the same claim as ONE data-modifying ``WITH`` on an
autocommit connection — the token family, the volunteer, the posting's lock
and room, the allowance, the claim, both counters and the poster's
notification — so one round trip a claim, nothing else: the ceiling a claim
on this stack can reach (what the goal "≥ 2/3 of one statement" measures
against).

``hello``: Flask answering ``{"hello": "world"}`` — the floor of a Flask
request under the same gunicorn, against which the feed is compared.

    gunicorn -k gthread -w 2 --threads 4 bench.ceiling_app:ceiling   # BENCH_DATABASE_URL, JWT_SECRET_KEY
    gunicorn -k gthread -w 2 --threads 4 bench.ceiling_app:one_statement
    gunicorn -k gthread -w 2 --threads 4 bench.ceiling_app:hello
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
from datetime import UTC, datetime, timedelta

import jwt
import psycopg
from flask import Flask

CLAIM_PATH = re.compile(r"^/api/v1/postings/(\d+)/claims$")
ACTIVE_WISH_CLAIM_LIMIT = 5


class Pool:
    """A fixed set of connections handed out per request (created after fork)."""

    def __init__(self, url: str, size: int) -> None:
        self.url, self.size, self.made = url, size, 0
        self.free: queue.LifoQueue = queue.LifoQueue()
        self.lock = threading.Lock()

    def get(self) -> psycopg.Connection:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            with self.lock:
                make = self.made < self.size
                self.made += make
            return self.connect() if make else self.free.get()

    def put(self, conn: psycopg.Connection) -> None:
        self.free.put(conn)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url)


class AutocommitPool(Pool):
    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)


_pools: dict[type, Pool] = {}


def _connections(kind: type[Pool] = Pool) -> Pool:
    if kind not in _pools:
        url = os.environ["BENCH_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        _pools[kind] = kind(url, int(os.environ.get("CEILING_POOL", "5")))
    return _pools[kind]


def _answer(start_response, status: str, body: dict) -> list[bytes]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
    return [raw]


def ceiling(environ, start_response):
    return _serve(environ, start_response, Pool, _claim)


def one_statement(environ, start_response):
    return _serve(environ, start_response, AutocommitPool, _claim_in_one)


def _serve(environ, start_response, pool_kind, claim):
    path = environ.get("PATH_INFO", "")
    if path == "/readyz":
        return _answer(start_response, "200 OK", {"status": "ok"})
    match = CLAIM_PATH.match(path)
    if environ["REQUEST_METHOD"] != "POST" or match is None:
        return _answer(start_response, "404 Not Found", {"error": "not_found"})
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    message = (json.loads(body) if body else {}).get("message")
    header = environ.get("HTTP_AUTHORIZATION", "")
    try:
        payload = jwt.decode(header[7:], os.environ["JWT_SECRET_KEY"], algorithms=["HS256"])
    except jwt.PyJWTError:
        return _answer(start_response, "401 Unauthorized", {"error": "invalid_token"})
    pool = _connections(pool_kind)
    conn = pool.get()
    try:
        status, answer = claim(conn, int(payload["sub"]), payload.get("fam"), int(match.group(1)), message)
    except Exception:
        conn.rollback()
        raise
    finally:
        pool.put(conn)
    return _answer(start_response, status, answer)


def _claim(conn: psycopg.Connection, user_id: int, family: str | None, posting_id: int, message):
    cur = conn.cursor()
    issued, revoked = cur.execute(
        "SELECT count(id), count(revoked_at) FROM refresh_tokens WHERE family_id = %s", (family,)
    ).fetchone()
    if issued == 0 or revoked:
        conn.rollback()
        return "401 Unauthorized", {"error": "token_revoked"}
    user = cur.execute("SELECT id, display_name, locale FROM users WHERE id = %s", (user_id,)).fetchone()
    volunteer = cur.execute("SELECT id, verified FROM volunteers WHERE user_id = %s", (user_id,)).fetchone()
    if user is None or volunteer is None:
        conn.rollback()
        return "403 Forbidden", {"error": "volunteer_required"}
    posting = cur.execute(
        "SELECT kind, title, author_id, energy_cost, claim_ttl_hours FROM postings WHERE id = %s", (posting_id,)
    ).fetchone()
    if posting is None:
        conn.rollback()
        return "404 Not Found", {"error": "not_found"}
    now = datetime.now(UTC)
    due = now + timedelta(hours=posting[4] or 168)
    claim_id = cur.execute(
        "INSERT INTO claims (posting_id, user_id, kind, status, message, claimed_at, due_at, photo_urls,"
        " energy_debited, reminder_stage, auto_confirmed, created_at, updated_at)"
        " VALUES (%s, %s, %s, 'active', %s, %s, %s, '[]', 0, 0, false, %s, %s) RETURNING id",
        (posting_id, user_id, posting[0], message, now, due, now, now),
    ).fetchone()[0]
    taken = cur.execute(
        "UPDATE postings SET claimed_count = claimed_count + 1, status = 'claimed', updated_at = %s"
        " WHERE id = %s AND (expires_at IS NULL OR expires_at > %s) AND status = 'open'"
        " AND (capacity IS NULL OR claimed_count < capacity)",
        (now, posting_id, now),
    ).rowcount
    if not taken:
        conn.rollback()
        return "409 Conflict", {"error": "already_claimed"}
    allowed = cur.execute(
        "UPDATE volunteers SET active_wish_claims = active_wish_claims + 1, updated_at = %s"
        " WHERE user_id = %s AND active_wish_claims < %s",
        (now, user_id, ACTIVE_WISH_CLAIM_LIMIT),
    ).rowcount
    if not allowed:
        conn.rollback()
        return "409 Conflict", {"error": "active_claim_limit"}
    cur.execute(
        "SELECT id, locale, timezone, quiet_start, quiet_end, muted_kinds FROM users WHERE id = %s", (posting[2],)
    ).fetchone()
    data = json.dumps({"kind": "wish_claimed", "posting_id": str(posting_id), "claim_id": str(claim_id)})
    params = json.dumps({"title": posting[1], "volunteer": user[1]})
    cur.execute(
        "INSERT INTO notifications (user_id, kind, title, body, data, params, dedupe_key, created_at, push_status,"
        " push_attempts, next_attempt_at) VALUES (%s, 'wish_claimed', %s, %s, %s, %s, %s, %s, 'pending', 0, %s)"
        " ON CONFLICT DO NOTHING",
        (
            posting[2],
            "心愿被认领啦",
            f"{user[1]}认领了您的「{posting[1]}」。",
            data,
            params,
            f"wish_claimed:claim:{claim_id}:{posting[2]}",
            now,
            now,
        ),
    )
    conn.commit()
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return "201 Created", {
        "id": claim_id,
        "posting_id": posting_id,
        "kind": posting[0],
        "status": "active",
        "message": message,
        "volunteer": {"id": user_id, "display_name": user[1]},
        "claimed_at": stamp,
        "due_at": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "photo_urls": [],
        "energy_debited": 0,
    }


ONE_CLAIM = """
WITH family AS (
    SELECT count(id) AS issued, count(revoked_at) AS revoked FROM refresh_tokens WHERE family_id = %(family)s
), me AS (
    SELECT users.id, users.display_name FROM users JOIN volunteers ON volunteers.user_id = users.id, family
    WHERE users.id = %(user)s AND family.issued > 0 AND family.revoked = 0
), target AS MATERIALIZED (
    SELECT postings.id, postings.kind, postings.title, postings.author_id, postings.claim_ttl_hours FROM postings
    WHERE postings.id = %(posting)s AND postings.status = 'open' AND postings.author_id <> %(user)s
      AND (postings.expires_at IS NULL OR postings.expires_at > %(now)s)
      AND (postings.capacity IS NULL OR postings.claimed_count < postings.capacity)
      AND EXISTS (SELECT FROM me)
    FOR UPDATE
), allowance AS (
    UPDATE volunteers SET active_wish_claims = active_wish_claims + 1, updated_at = %(now)s
    WHERE user_id = %(user)s AND active_wish_claims < %(limit)s AND EXISTS (SELECT FROM target)
    RETURNING user_id
), taken AS (
    UPDATE postings SET claimed_count = claimed_count + 1, status = 'claimed', updated_at = %(now)s
    FROM target, allowance WHERE postings.id = target.id
), claim AS (
    INSERT INTO claims (posting_id, user_id, kind, status, message, claimed_at, due_at, photo_urls,
                        energy_debited, reminder_stage, auto_confirmed, created_at, updated_at)
    SELECT target.id, %(user)s, target.kind, 'active', %(message)s, %(now)s,
           %(now)s + make_interval(hours => coalesce(target.claim_ttl_hours, 168)), '[]', 0, 0, false, %(now)s, %(now)s
    FROM target, allowance
    RETURNING id, due_at
), told AS (
    INSERT INTO notifications (user_id, kind, title, body, data, params, dedupe_key, created_at, push_status,
                               push_attempts, next_attempt_at)
    SELECT target.author_id, 'wish_claimed', '心愿被认领啦',
           me.display_name || '认领了您的「' || target.title || '」。',
           json_build_object('kind', 'wish_claimed', 'posting_id', target.id::text, 'claim_id', claim.id::text),
           json_build_object('title', target.title, 'volunteer', me.display_name),
           'wish_claimed:claim:' || claim.id || ':' || target.author_id, %(now)s, 'pending', 0, %(now)s
    FROM target, claim, me
    ON CONFLICT DO NOTHING
)
SELECT claim.id, claim.due_at, target.kind, me.display_name FROM claim, target, me
"""


def _claim_in_one(conn: psycopg.Connection, user_id: int, family: str | None, posting_id: int, message):
    now = datetime.now(UTC)
    row = conn.execute(
        ONE_CLAIM,
        {
            "family": family,
            "user": user_id,
            "posting": posting_id,
            "now": now,
            "limit": ACTIVE_WISH_CLAIM_LIMIT,
            "message": message,
        },
    ).fetchone()
    if row is None:  # the ceiling does not say which rule refused
        return "409 Conflict", {"error": "conflict"}
    claim_id, due, kind, name = row
    return "201 Created", {
        "id": claim_id,
        "posting_id": posting_id,
        "kind": kind,
        "status": "active",
        "message": message,
        "volunteer": {"id": user_id, "display_name": name},
        "claimed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "due_at": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "photo_urls": [],
        "energy_debited": 0,
    }


hello = Flask("hello")


@hello.get("/api/v1/hello")
def _hello():
    return {"hello": "world"}


@hello.get("/readyz")
def _ready():
    return {"status": "ok"}
