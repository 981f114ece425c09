"""Joining an org on request; party members and the community they report to (党员志愿者, 双报到)."""

from __future__ import annotations

from marshmallow import fields, validate

from app.models.orgs import JOIN_REQUEST_STATUSES
from mobile_api.fields import BaseSchema, Id, PageQuery, UTCDateTime
from mobile_api.schemas.records import PeriodQuerySchema


class PersonRefSchema(BaseSchema):
    id = fields.Integer(required=True)
    display_name = fields.String(required=True)


class OrgRefSchema(BaseSchema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)


class PartySchema(BaseSchema):
    """A party member's branch and the community they report to (null: none yet)."""

    branch = fields.Nested(OrgRefSchema, required=True)
    community = fields.Nested(OrgRefSchema, required=True, allow_none=True)


class JoinCreateSchema(BaseSchema):
    message = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class JoinRequestSchema(BaseSchema):
    org_id = fields.Integer(required=True)
    user_id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(JOIN_REQUEST_STATUSES)})
    message = fields.String(required=True, allow_none=True)
    requested_at = UTCDateTime(required=True)
    decided_at = UTCDateTime(required=True, allow_none=True)
    reject_reason = fields.String(required=True, allow_none=True)


class JoinRequestItemSchema(BaseSchema):
    org_id = fields.Integer(required=True)
    user = fields.Nested(PersonRefSchema, required=True)
    volunteer_no = fields.String(required=True, allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(JOIN_REQUEST_STATUSES)})
    message = fields.String(required=True, allow_none=True)
    requested_at = UTCDateTime(required=True)


class CommunityReportCreateSchema(BaseSchema):
    org_id = Id(required=True, metadata={"description": "An approved org of kind `community`."})


class PartyMemberQuerySchema(PeriodQuerySchema, PageQuery):
    """``from``/``to`` default to the current month (Asia/Shanghai) when both are left out."""


class PartyMemberSchema(BaseSchema):
    user = fields.Nested(PersonRefSchema, required=True)
    volunteer_no = fields.String(required=True, allow_none=True)
    branch = fields.Nested(OrgRefSchema, required=True, allow_none=True)
    community = fields.Nested(OrgRefSchema, required=True, allow_none=True)
    recorded_hours = fields.Float(
        required=True, metadata={"description": "Hours of `recorded` records served in the period, any org's."}
    )
    wishes_fulfilled = fields.Integer(
        required=True, metadata={"description": "Wishes the member marked done in the period."}
    )
    claims = fields.Integer(required=True, metadata={"description": "Claims the member made in the period."})
    last_served_at = UTCDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "End of the member's latest recorded service up to the period's end, any org's."},
    )
