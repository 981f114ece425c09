"""Helpers the push tests share (dispatcher, FCM, JPush): what a claim queues, and
the outbox rows and devices as they stand."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Device, Notification
from app.outbox import notify


def claim_wish(app, poster_id: int, posting_id: int = 42, claim_id: int = 7) -> None:
    """What the claim flow writes in its transaction when a volunteer claims a wish."""
    with app.app_context():
        notify(
            [poster_id],
            "wish_claimed",
            dedupe=f"claim:{claim_id}",
            title="帮王奶奶买菜",
            volunteer="小陈",
            posting_id=posting_id,
            claim_id=claim_id,
        )
        db.session.commit()


def outbox_rows(app) -> list[Notification]:
    """Every notification row, oldest first, detached."""
    with app.app_context():
        result = list(db.session.scalars(sa.select(Notification).order_by(Notification.id)))
        db.session.expunge_all()
        return result


def device_tokens(app) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(sa.select(Device.token)))
