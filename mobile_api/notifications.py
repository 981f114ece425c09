"""Notifications — 消息: device tokens, the inbox and notification settings."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

import notifications
from app.database import read_only
from app.i18n import current_locale
from app.security import current_user
from mobile_api.fields import page_of
from mobile_api.schemas import (
    DeviceCreateSchema,
    DeviceSchema,
    MarkReadSchema,
    NotificationQuerySchema,
    NotificationSchema,
    NotificationSettingsSchema,
    UnreadSchema,
)
from notifications import devices, inbox

blp = Blueprint(
    "notifications", __name__, url_prefix="/api/v1/me", description="Push devices, the inbox and notification settings"
)
# The delivery layer comes with its API: registering this blueprint registers the
# push dispatcher and its checks on the app (app/ never imports notifications/).
blp.record_once(lambda state: notifications.init_app(state.app))
AUTH = {"security": [{"bearerAuth": []}]}


@blp.route("/devices", methods=["POST"])
@jwt_required()
@blp.arguments(DeviceCreateSchema)
@blp.response(201, DeviceSchema)
@blp.doc(**AUTH)
def register_device(body):
    """Register this phone's push token; a token known under another account moves here."""
    return devices.register_device(
        current_user(), body["token"], body["platform"], body["provider"], body.get("app_version")
    )


@blp.route("/devices/<path:token>", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.alt_response(404, description="not_found: the token is not registered to you")
@blp.doc(**AUTH)
def unregister_device(token: str):
    """Stop pushes to this phone (sign-out)."""
    devices.unregister_device(current_user(), token)


@blp.route("/notifications", methods=["GET"])
@jwt_required()
@blp.arguments(NotificationQuerySchema, location="query")
@blp.response(200, page_of(NotificationSchema, "NotificationPage"))
@blp.doc(**AUTH)
@read_only
def list_notifications(query):
    """The inbox, newest first; `unread=true` for unread only."""
    items, next_cursor = inbox.list_inbox(
        current_user(),
        unread_only=query["unread"],
        cursor=query["cursor"],
        limit=query["limit"],
        language=current_locale(),
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/notifications/unread-count", methods=["GET"])
@jwt_required()
@blp.response(200, UnreadSchema)
@blp.doc(**AUTH)
@read_only
def unread_count():
    """How many notifications are unread (the app's badge)."""
    return {"unread": inbox.unread_count(current_user().id)}


@blp.route("/notifications/read", methods=["POST"])
@jwt_required()
@blp.arguments(MarkReadSchema, required=False)  # an empty body marks all read
@blp.response(200, UnreadSchema)
@blp.doc(**AUTH)
def mark_read(body):
    """Mark notifications read (the given ids, or all); returns the unread count left."""
    return {"unread": inbox.mark_read(current_user(), body.get("ids"))}


@blp.route("/notification-settings", methods=["GET"])
@jwt_required()
@blp.response(200, NotificationSettingsSchema)
@blp.doc(**AUTH)
def get_settings():
    """Muted kinds, quiet hours and nearby alerts (微呼百应)."""
    return devices.notification_settings(current_user())


@blp.route("/notification-settings", methods=["PUT"])
@jwt_required()
@blp.arguments(NotificationSettingsSchema, required=False)  # an empty body keeps the settings
@blp.response(200, NotificationSettingsSchema)
@blp.doc(**AUTH)
def put_settings(body):
    """Change the notification settings; fields left out stay as they are."""
    return devices.update_notification_settings(current_user(), body)
