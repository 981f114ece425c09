"""``Idempotency-Key`` for every authenticated POST (幂等键).

A phone on a bad network retries; the retry must not claim twice or pay twice.
For a POST that carries the header and a valid token, the key is stored per
user in ``idempotency_keys``:

1. Before the view runs, a row (user, key, request fingerprint) is INSERTed
   and committed. The unique (user_id, key) index makes that INSERT the lock:
   of ten identical requests at once exactly one inserts and runs.
2. After the view, the row keeps the response's status and body for 24 h,
   the body encrypted (AES-GCM, a key derived from ``SECRET_KEY``): a replay
   may carry a beneficiary's contact, which must not rest in a table in clear.
3. A later request with the same key gets, without running anything:
   the stored response again (header ``Idempotent-Replayed: true``) when the
   fingerprint (method, path, query and JSON body) matches; 422
   ``idempotency_key_reused`` when it does not; 409
   ``idempotency_key_in_progress`` while the first is still running.

Responses that did not do anything — 5xx, 401, 429 — are not kept: the row is
deleted so the client's retry runs for real. A first request that died without
answering (a killed worker) leaves its row unfinished; after ``LEASE`` a retry
takes it over. Rows older than ``TTL`` count as absent (the scheduler's purge
job deletes them).

Registration is the one POST without a token that is covered: its caller has
no account yet, so its keys live in a namespace of their own (``user_id``
NULL). A retried registration whose answer was lost replays that 201 (the
account and its first tokens, sealed like every stored answer) instead of
answering 422 ``invalid_sms_code`` (its code is spent); the fingerprint covers
the password and the code, so only
someone who sent the same password gets the replay. Login is not covered: its
answer is a fresh token pair each time, and replaying an old one would hand out
a pair the app may already have rotated; a retried login simply signs in again.
Nor are token refresh, logout and a new calendar URL, whose answers carry live
secrets that must not be stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from datetime import timedelta

import sqlalchemy as sa
from apispec import BasePlugin
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, Response, current_app, g, request
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import IdempotencyKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
TTL = timedelta(hours=24)
# A first request unfinished after this long died; a retry may run instead.
LEASE = timedelta(seconds=60)
MAX_KEY_LENGTH = 255
SEALED_PREFIX = "v1."
# Outcomes that changed nothing; the key is released so a retry runs.
_NOT_KEPT = frozenset({401, 429})
# Token refresh and logout, a new calendar URL: a stored answer would keep live
# secrets in the table (and a retry of these is harmless).
UNCOVERED_PATHS = ("/api/v1/auth/", "/api/v1/me/calendar")
# POSTs whose keys need no token: the caller has no account yet.
ANONYMOUS_PATHS = frozenset({"/api/v1/auth/register"})


def init_app(app: Flask) -> None:
    """Apply the Idempotency-Key rules to every POST of every blueprint (the OpenAPI
    document says so through :class:`IdempotencyKeyDocs`, a plugin of the spec)."""
    app.before_request(_claim_key)
    app.after_request(_store_response)


class IdempotencyKeyDocs(BasePlugin):
    """Document the optional ``Idempotency-Key`` header on every authenticated POST."""

    PARAMETER = {
        "in": "header",
        "name": HEADER,
        "required": False,
        # printable ASCII without the space (_valid_key)
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[!-~]+$"},
        "description": (
            "Makes a retry safe: the first answer for (user, key) — for a registration, for the key "
            "alone — is kept for 24 h and replayed "
            "(with `Idempotent-Replayed: true`) for the same request; the same key with another "
            "body → 422 `idempotency_key_reused`; while the first is still running → 409 "
            "`idempotency_key_in_progress`."
        ),
    }

    def operation_helper(self, path=None, operations=None, **kwargs) -> None:
        operation = (operations or {}).get("post")
        if not isinstance(operation, dict):
            return
        if path not in ANONYMOUS_PATHS and (not operation.get("security") or (path or "").startswith(UNCOVERED_PATHS)):
            return
        parameters = operation.setdefault("parameters", [])
        if not any(isinstance(p, dict) and p.get("name") == HEADER for p in parameters):
            parameters.append(dict(self.PARAMETER))
            if operation.get("description"):
                operation["description"] += (
                    "\n\nWith `Idempotency-Key`: 409 `idempotency_key_in_progress`; 422 `idempotency_key_reused`."
                )


def _claim_key() -> Response | None:
    if request.method != "POST" or request.url_rule is None:
        return None
    anonymous = request.path in ANONYMOUS_PATHS
    if request.path.startswith(UNCOVERED_PATHS) and not anonymous:
        return None
    key = request.headers.get(HEADER)
    if key is None:
        return None
    user_id = None if anonymous else _user_id()
    if user_id is None and not anonymous:
        return None  # the view answers 401, or it is an anonymous POST
    if not _valid_key(key):
        raise Invalid(
            HEADER, gettext("Use 1 to %(most)d printable ASCII characters.", most=MAX_KEY_LENGTH), location="headers"
        )
    fingerprint = request_fingerprint()
    for _ in range(3):
        now = utcnow()
        row_id = _insert_key(user_id, key, fingerprint, now)
        if row_id is not None:
            g.idempotency_key_id, g.idempotency_owner = row_id, (user_id, key)
            return None
        owner = IdempotencyKey.user_id.is_(None) if user_id is None else IdempotencyKey.user_id == user_id
        row = db.session.scalar(sa.select(IdempotencyKey).where(owner, IdempotencyKey.key == key))
        if row is None:
            continue  # purged in between: insert again
        if row.created_at <= now - TTL:
            _delete_key(row.id, created_at=row.created_at)
            continue
        if row.request_hash != fingerprint:
            db.session.rollback()
            raise Invalid(
                HEADER,
                gettext("This key was already used for a different request."),
                slug="idempotency_key_reused",
                location="headers",
            )
        if row.status_code is not None:
            body = _unseal(row.response_body, user_id, key)
            if body is None:
                # Sealed under a SECRET_KEY since rotated: the answer cannot be
                # replayed; the request runs again and its own guards answer.
                _delete_key(row.id, created_at=row.created_at)
                continue
            response = Response(body, status=row.status_code, mimetype="application/json")
            response.headers[REPLAYED_HEADER] = "true"
            db.session.rollback()
            return response
        if row.created_at <= now - LEASE and _take_over(row.id, row.created_at, now):
            g.idempotency_key_id, g.idempotency_owner = row.id, (user_id, key)
            return None
        db.session.rollback()
        raise Conflict("idempotency_key_in_progress")
    # The row could neither be written nor found (e.g. the token's user is
    # gone): the view decides, without a key.
    return None


def _store_response(response: Response) -> Response:
    row_id = g.pop("idempotency_key_id", None)
    if row_id is None:
        return response
    user_id, key = g.pop("idempotency_owner")
    try:
        # Whatever the view left uncommitted is not part of its outcome.
        db.session.rollback()
        _without_flush_wait()
        if response.status_code >= 500 or response.status_code in _NOT_KEPT:
            _delete_key(row_id)
        else:
            db.session.execute(
                sa.update(IdempotencyKey)
                .where(IdempotencyKey.id == row_id)
                .values(
                    status_code=response.status_code,
                    response_body=_seal(response.get_data(as_text=True), user_id, key),
                    completed_at=utcnow(),
                )
            )
            db.session.commit()
    except Exception:  # noqa: BLE001 - the view's answer stands; the key's lease expires
        db.session.rollback()
        log.exception("could not store the idempotent response")
    return response


def _cipher() -> AESGCM:
    """AES-256-GCM under a key derived from SECRET_KEY for this one purpose."""
    secret = current_app.config["SECRET_KEY"].encode()
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"yz.idempotency.v1").derive(secret))


def _seal(body: str, user_id: int | None, key: str) -> str:
    """A stored answer, encrypted: replays may hold a beneficiary's phone and
    address, which must not sit in a table in clear for 24 h. Bound to its
    (user, key), so a row copied to another key does not open."""
    nonce = os.urandom(12)
    sealed = _cipher().encrypt(nonce, body.encode(), f"{user_id}:{key}".encode())
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def _unseal(stored: str | None, user_id: int | None, key: str) -> str | None:
    """The answer stored by :func:`_seal`; None when it no longer opens (SECRET_KEY rotated)."""
    if not stored or not stored.startswith(SEALED_PREFIX):
        return stored or ""  # rows written before answers were sealed
    try:
        raw = base64.urlsafe_b64decode(stored[len(SEALED_PREFIX) :])
        return _cipher().decrypt(raw[:12], raw[12:], f"{user_id}:{key}".encode()).decode()
    except (ValueError, InvalidTag):
        return None


def request_fingerprint() -> str:
    """SHA-256 of method, path, query string and body; a JSON body is hashed in a
    canonical form, so key order and spacing do not matter."""
    body = request.get_data(cache=True)
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.query_string, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _user_id() -> int | None:
    """The user of a valid, unrevoked bearer token: a revoked session gets no
    replay (the view answers it 401), however recent its stored answer."""
    from app.security import bearer_payload, bearer_session

    payload = bearer_payload()
    if payload is None or payload.get("type") == "refresh":
        return None
    user, revoked = bearer_session(payload)
    if revoked or user is None:
        db.session.rollback()
        return None
    return user.id


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(32 < ord(ch) < 127 for ch in key)


def _insert_key(user_id: int | None, key: str, fingerprint: str, now) -> int | None:
    try:
        _without_flush_wait()
        row_id = db.session.execute(
            sa.insert(IdempotencyKey)
            .values(
                user_id=user_id,
                key=key,
                method=request.method,
                path=request.path[:255],
                request_hash=fingerprint,
                created_at=now,
            )
            .returning(IdempotencyKey.id)
        ).scalar_one()
        db.session.commit()
        return row_id
    except IntegrityError:
        db.session.rollback()
        return None


def _without_flush_wait() -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL to reach
    disk (``synchronous_commit`` off, for this transaction only).

    The key rows are bookkeeping around the request's own transaction, which
    commits synchronously and so flushes the WAL written before it — the key
    row included. Only the stored answer can be lost, in a database crash
    within a fraction of a second of the request; the row then stays unfinished
    and a retry after ``LEASE`` runs again, where the claim's unique index and
    state guards answer (409) instead of a replay. Two fsyncs a request saved.
    """
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))


def _delete_key(row_id: int, *, created_at=None) -> None:
    stmt = sa.delete(IdempotencyKey).where(IdempotencyKey.id == row_id)
    if created_at is not None:
        stmt = stmt.where(IdempotencyKey.created_at == created_at)
    db.session.execute(stmt)
    db.session.commit()


def _take_over(row_id: int, created_at, now) -> bool:
    """Restart an abandoned first request; only one retry wins the row."""
    taken = db.session.execute(
        sa.update(IdempotencyKey)
        .where(
            IdempotencyKey.id == row_id,
            IdempotencyKey.status_code.is_(None),
            IdempotencyKey.created_at == created_at,
        )
        .values(created_at=now)
    ).rowcount
    db.session.commit()
    return bool(taken)
