"""Devices (an FCM registration token or a JPush registration ID, with its provider) and a
user's notification settings."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.errors import NotFound
from app.extensions import db
from app.models import Device, User
from notifications.senders import default_device_provider

MAX_DEVICES_PER_USER = 10  # the least recently seen go first; a phone re-registers on every start


def register_device(
    user: User, token: str, platform: str, provider: str | None = None, app_version: str | None = None
) -> Device:
    """Register ``token`` of ``provider`` (the default provider when None) for ``user``; a
    token known under another user moves to this one (a phone changed hands or
    accounts), and takes the provider it is registered with now. One INSERT … ON
    CONFLICT (token) DO UPDATE."""
    provider = provider or default_device_provider()
    now = utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(Device).values(
        user_id=user.id,
        token=token,
        platform=platform,
        provider=provider,
        app_version=app_version,
        created_at=now,
        last_seen_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["token"],
        set_={
            "user_id": stmt.excluded.user_id,
            "platform": stmt.excluded.platform,
            "provider": stmt.excluded.provider,
            "app_version": stmt.excluded.app_version,
            "last_seen_at": stmt.excluded.last_seen_at,
        },
    ).returning(Device.id)
    device_id = db.session.execute(stmt).scalar_one()
    keep = (
        sa.select(Device.id)
        .where(Device.user_id == user.id)
        .order_by(Device.last_seen_at.desc(), Device.id.desc())
        .limit(MAX_DEVICES_PER_USER)
    )
    db.session.execute(
        sa.delete(Device)
        .where(Device.user_id == user.id, Device.id.not_in(keep))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return db.session.get(Device, device_id, populate_existing=True)


def unregister_device(user: User, token: str) -> None:
    """Forget the user's ``token`` (sign-out on that phone); 404 when it is not theirs."""
    result = db.session.execute(
        sa.delete(Device)
        .where(Device.user_id == user.id, Device.token == token)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        db.session.rollback()
        raise NotFound()
    db.session.commit()


def notification_settings(user: User) -> dict[str, Any]:
    return {
        "muted_kinds": list(user.muted_kinds or []),
        "quiet_hours": {"start": user.quiet_start, "end": user.quiet_end} if user.quiet_start else None,
        "nearby_alerts": bool(user.nearby_alerts),
    }


def update_notification_settings(user: User, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply the given settings (absent fields stay). Pending pushes follow at once:
    the dispatcher checks mutes and quiet hours when it sends."""
    if "muted_kinds" in changes:
        user.muted_kinds = list(dict.fromkeys(changes["muted_kinds"]))
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        user.quiet_start, user.quiet_end = (quiet["start"], quiet["end"]) if quiet else (None, None)
    if "nearby_alerts" in changes:
        user.nearby_alerts = changes["nearby_alerts"]
    db.session.commit()
    return notification_settings(user)
