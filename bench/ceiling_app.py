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

``hello``: Flask answering ``{"hello": "world"}`` — the floor of a Flask
request under the same gunicorn, against which the feed is compared.

    gunicorn -k gthread -w 2 --threads 4 bench.ceiling_app:ceiling   # BENCH_DATABASE_URL, JWT_SECRET_KEY
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
            return psycopg.connect(self.url) if make else self.free.get()

    def put(self, conn: psycopg.Connection) -> None:
        self.free.put(conn)


_pool: Pool | None = None


def _connections() -> Pool:
    global _pool
    if _pool is None:
        url = os.environ["BENCH_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        _pool = Pool(url, int(os.environ.get("CEILING_POOL", "5")))
    return _pool


def _answer(start_response, status: str, body: dict) -> list[bytes]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
    return [raw]


def ceiling(environ, start_response):
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
    pool = _connections()
    conn = pool.get()
    try:
        status, answer = _claim(conn, int(payload["sub"]), payload.get("fam"), int(match.group(1)), message)
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


hello = Flask("hello")


@hello.get("/api/v1/hello")
def _hello():
    return {"hello": "world"}


@hello.get("/readyz")
def _ready():
    return {"status": "ok"}
