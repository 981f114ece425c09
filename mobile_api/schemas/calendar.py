"""Calendar feeds (日历订阅)."""

from __future__ import annotations

from marshmallow import fields

from mobile_api.fields import BaseSchema


class CalendarFeedSchema(BaseSchema):
    url = fields.String(
        required=True,
        metadata={"format": "uri", "description": "The secret feed URL; anyone holding it reads the calendar."},
    )
