"""Devices, the inbox and notification settings."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate

from app.outbox.templates import NOTIFICATION_KINDS
from app.validators import WHITESPACE
from mobile_api.fields import (
    NUL,
    BaseSchema,
    Id,
    PageQuery,
    Pattern,
    QuietHours,
    StrictBoolean,
    UTCDateTime,
    quiet_hours_span_time,
)
from notifications.senders import default_device_provider, device_providers

DEVICE_PLATFORMS = ("android", "ios", "web")


class DeviceCreateSchema(BaseSchema):
    token = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=4096),
            Pattern(f"^[^{WHITESPACE}{NUL}]+$", error=_l("A token has no spaces.")),
        ],
        metadata={
            "description": "This app install's push token: the FCM registration token, or the JPush "
            "registration ID when `provider` is `jpush` (phones in mainland China)."
        },
    )
    platform = fields.String(required=True, validate=validate.OneOf(DEVICE_PLATFORMS))
    provider = fields.String(
        load_default=default_device_provider(),
        validate=validate.OneOf(device_providers()),
        metadata={"description": "Which push service the token belongs to; the default is the first of the enum."},
    )
    app_version = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))


class DeviceSchema(BaseSchema):
    token = fields.String()
    platform = fields.String(metadata={"enum": list(DEVICE_PLATFORMS)})
    provider = fields.String(metadata={"enum": list(device_providers())})
    app_version = fields.String(allow_none=True)
    created_at = UTCDateTime()
    last_seen_at = UTCDateTime()


class NotificationSchema(BaseSchema):
    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(NOTIFICATION_KINDS)})
    title = fields.String()
    body = fields.String()
    data = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Deep-link payload, the same as the push: kind, posting_id, claim_id, org_id."},
    )
    created_at = UTCDateTime()
    read_at = UTCDateTime(allow_none=True)


class NotificationQuerySchema(PageQuery):
    unread = fields.Boolean(load_default=False, metadata={"description": "Only unread notifications."})


class MarkReadSchema(BaseSchema):
    ids = fields.List(
        Id(),
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=1000),
        metadata={"description": "Notifications to mark read; absent or null marks all."},
    )


class UnreadSchema(BaseSchema):
    unread = fields.Integer(required=True)


class NotificationSettingsSchema(BaseSchema):
    muted_kinds = fields.List(
        fields.String(validate=validate.OneOf(NOTIFICATION_KINDS)),
        validate=validate.Length(max=len(NOTIFICATION_KINDS) * 2),
    )
    quiet_hours = fields.Nested(
        QuietHours,
        allow_none=True,
        validate=quiet_hours_span_time,
        metadata={"description": "Local times, start and end differ; null = off."},
    )
    nearby_alerts = StrictBoolean()
