"""Inbox rows that double as the push outbox, and device tokens."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base

# pending -> sending (leased by a dispatcher) -> sent | failed; skipped when muted
PUSH_STATUSES = ("pending", "sending", "sent", "failed", "skipped")
# The rows still on their way (the outbox's depth).
UNSETTLED_PUSH_STATUSES = ("pending", "sending")


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_user_id_id", "user_id", "id"),
        sa.Index("ix_notifications_push_status_next_attempt_at", "push_status", "next_attempt_at"),
        sa.Index("ix_notifications_created_at", "created_at"),
        # The app's badge: a user's unread rows, counted from the index alone.
        sa.Index(
            "ix_notifications_user_id_unread",
            "user_id",
            sqlite_where=sa.text("read_at IS NULL"),
            postgresql_where=sa.text("read_at IS NULL"),
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(32))
    title: so.Mapped[str] = so.mapped_column(sa.String(120))
    body: so.Mapped[str] = so.mapped_column(sa.String(500))
    data: so.Mapped[dict] = so.mapped_column(sa.JSON, default=dict)
    # The template values (title, volunteer, when, ...) so the inbox can be
    # shown again in the language a client asks for (Accept-Language).
    params: so.Mapped[dict | None] = so.mapped_column(sa.JSON)
    dedupe_key: so.Mapped[str] = so.mapped_column(sa.String(160), unique=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    read_at: so.Mapped[datetime | None]
    push_status: so.Mapped[str] = so.mapped_column(sa.String(10), default="pending")
    push_attempts: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    lease_expires_at: so.Mapped[datetime | None]
    sent_at: so.Mapped[datetime | None]
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(500))


class PushWindow(Base):
    """The last push of a coalesced kind (``app.outbox.templates.PUSH_INTERVALS``)
    a user was sent, and when the next may go: one row per (user, kind).

    Claimed with one ``INSERT … ON CONFLICT DO UPDATE … WHERE next_push_at <=
    :now`` per batch, so two transactions that both want to push the same user
    queue on this row and only the first pushes.
    """

    __tablename__ = "push_windows"

    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    # When the last push of the kind was due (now, or the end of quiet hours) ...
    last_push_at: so.Mapped[datetime]
    # ... and the earliest moment another may go.
    next_push_at: so.Mapped[datetime]


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (sa.Index("ix_devices_user_id", "user_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    # FCM registration token, or JPush registration ID: whatever ``provider`` reads
    token: so.Mapped[str] = so.mapped_column(sa.String(4096), unique=True)
    platform: so.Mapped[str] = so.mapped_column(sa.String(10))
    # The push provider the phone registered with (a name in notifications.senders' registry)
    provider: so.Mapped[str] = so.mapped_column(sa.String(16))
    app_version: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    last_seen_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class PushDelivery(Base):
    """One device's settled answer to a notification that is not settled for all its
    devices yet: written as answers arrive, so a retry (another provider was down,
    or the dispatcher died) sends only to the devices still without one. Deleted
    when the notification is settled."""

    __tablename__ = "push_deliveries"

    notification_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    provider: so.Mapped[str] = so.mapped_column(sa.String(16))
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16))  # sent | failed
    error: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    answered_at: so.Mapped[datetime]


class NearbyAlertRequest(Base):
    """A posting that opened (or reopened) and whose nearby alerts (微呼百应) are
    still to go out. Written in the transaction that opened it (a plain INSERT,
    which never waits on anyone); the fan-out reads it later in its own
    transaction and deletes it (app/services/nearby_alerts.py)."""

    __tablename__ = "nearby_alert_requests"
    __table_args__ = (sa.Index("ix_nearby_alert_requests_posting_id", "posting_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    posting_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="CASCADE"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # A wish's first wave goes to party members only (app.services.nearby_alerts);
    # the follow-up to everyone waits until ``due_at`` (null: due at once).
    party_first: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    due_at: so.Mapped[datetime | None]


class NearbyAlertAllowance(Base):
    """How many nearby alerts a volunteer has had on their local ``day``: one row per
    volunteer, taken with one conditional upsert per alert, so two fan-outs at once
    can never pass the daily cap."""

    __tablename__ = "nearby_alert_allowances"

    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    day: so.Mapped[date] = so.mapped_column(sa.Date)
    alerts: so.Mapped[int]
