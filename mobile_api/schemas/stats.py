"""Public figures (数据看板) and health checks."""

from __future__ import annotations

from marshmallow import fields

from mobile_api.fields import BaseSchema, District


class StatsQuerySchema(BaseSchema):
    district = District(load_default=None)


class StatsSchema(BaseSchema):
    district = District(allow_none=True)
    volunteers = fields.Integer()
    wishes_posted = fields.Integer()
    wishes_claimed = fields.Integer()
    wishes_fulfilled = fields.Integer()
    credit_hours = fields.Float()
    postings_by_kind = fields.Dict(keys=fields.String(), values=fields.Integer())


class HealthSchema(BaseSchema):
    status = fields.String(required=True)


class ReadinessSchema(HealthSchema):
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "Each dependency: ok, not used, or what is wrong (database, redis)."},
    )
