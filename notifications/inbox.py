"""The in-app inbox (消息中心): list, mark read, unread count.

The inbox is the truth; push is a best-effort copy of it. Texts are stored in
the user's language when written, and shown in the reader's language (see
``app.i18n``), rendered again from the row's params.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Notification, User
from app.outbox import push_payload
from app.outbox.templates import TEMPLATES, render
from app.services.pagination import paginate


def list_inbox(
    user: User, *, unread_only: bool = False, cursor: str | None = None, limit: int = 20, language: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The user's notifications, newest first, as plain dicts (never dirtying the rows).

    ``language`` (``zh-CN``/``en``) re-renders the texts; None keeps the stored ones.
    """
    n = Notification
    stmt = sa.select(n).where(n.user_id == user.id)
    if unread_only:
        stmt = stmt.where(n.read_at.is_(None))
    rows, next_cursor = paginate(db.session, stmt, [(n.id, True)], cursor, limit, key=lambda row: [row.id])
    return [_item(row, language, user.timezone) for row in rows], next_cursor


def _item(row: Notification, language: str | None, tz: str | None) -> dict[str, Any]:
    title, body = row.title, row.body
    if language and row.params is not None and row.kind in TEMPLATES:
        title, body = render(row.kind, language, row.params, tz)
    return {
        "id": row.id,
        "kind": row.kind,
        "title": title,
        "body": body,
        # the same data as the push, notification_id included (the app drops repeats by it)
        "data": push_payload(row.id, row.data),
        "created_at": row.created_at,
        "read_at": row.read_at,
    }


def mark_read(user: User, ids: list[int] | None = None) -> int:
    """Mark the user's notifications read (``ids``, or all when None); returns how many
    stay unread. Ids of other users' rows are ignored."""
    n = Notification
    stmt = sa.update(n).where(n.user_id == user.id, n.read_at.is_(None))
    if ids is not None:
        if not ids:
            return unread_count(user.id)
        stmt = stmt.where(n.id.in_(set(ids)))
    db.session.execute(stmt.values(read_at=utcnow()).execution_options(synchronize_session=False))
    remaining = unread_count(user.id)
    db.session.commit()
    return remaining


def unread_count(user_id: int) -> int:
    """The user's unread notifications: one COUNT over the partial index
    ``ix_notifications_user_id_unread`` (``user_id`` where ``read_at IS NULL``)."""
    n = Notification
    return db.session.scalar(sa.select(sa.func.count()).where(n.user_id == user_id, n.read_at.is_(None))) or 0
