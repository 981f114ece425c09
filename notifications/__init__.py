"""Notifications: the inbox rows that are also the push outbox.

``notify()`` writes one row per user inside the caller's transaction, so the
message "your wish was claimed" commits or rolls back with the claim itself.
The dispatcher (notifications.dispatch) sends pending rows later.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Notification, User
from notifications.templates import NOTIFICATION_KINDS, render

# ids a push may carry for deep links; values always strings (FCM rule)
DATA_KEYS = ("posting_id", "claim_id", "org_id")


def notify(user_ids: Iterable[int], kind: str, *, dedupe: str, **context) -> int:
    """Queue ``kind`` for each user; returns how many rows were new.

    ``dedupe`` names the event (e.g. ``"claim:42"``); the row's unique
    ``dedupe_key`` is ``kind:dedupe:user``, so the same event twice writes
    one row per user. Muted kinds keep the inbox row but skip the push.
    """
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    ids = sorted({int(u) for u in user_ids if u is not None})
    if not ids:
        return 0
    users = db.session.execute(sa.select(User.id, User.locale, User.muted_kinds).where(User.id.in_(ids))).all()
    data = {"kind": kind, **{k: str(context[k]) for k in DATA_KEYS if context.get(k) is not None}}
    now = utcnow()
    rows = []
    for user_id, locale, muted in users:
        title, body = render(kind, locale, context)
        rows.append(
            {
                "user_id": user_id,
                "kind": kind,
                "title": title[:120],
                "body": body[:500],
                "data": data,
                "dedupe_key": f"{kind}:{dedupe}:{user_id}"[:160],
                "created_at": now,
                "push_status": "skipped" if kind in (muted or []) else "pending",
                "next_attempt_at": now,
            }
        )
    return insert_ignoring_duplicates(rows)


def insert_ignoring_duplicates(rows: list[dict]) -> int:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING on either database."""
    if not rows:
        return 0
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = (
        insert(Notification)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
    )
    return len(db.session.execute(stmt).all())
