"""Organisations (志愿组织) and their members."""

from __future__ import annotations

from marshmallow import fields, validate

from app.models.orgs import MEMBER_ROLES, ORG_KINDS, ORG_STATUSES
from app.services.org_stats import INTERVALS, MAX_PERIODS
from mobile_api.fields import BaseSchema, District, Id, PageQuery, UTCDateTime
from mobile_api.schemas.claims import PersonSchema
from mobile_api.schemas.party import PartySchema
from mobile_api.schemas.records import PeriodQuerySchema


class OrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String(metadata={"enum": list(ORG_KINDS)})
    district = District()
    status = fields.String(metadata={"enum": list(ORG_STATUSES)})
    member_count = fields.Integer()
    reject_reason = fields.String(allow_none=True, metadata={"description": "Why an admin rejected the application."})
    reviewed_at = UTCDateTime(allow_none=True)
    role = fields.String(
        allow_none=True,
        metadata={
            "enum": list(MEMBER_ROLES),
            "optional": True,
            "description": "The caller's role in the org (coordinator, member) in lists with mine=true.",
        },
    )
    created_at = UTCDateTime()


class OrgQuerySchema(PageQuery):
    status = fields.String(
        load_default=None,
        validate=validate.OneOf(ORG_STATUSES),
        metadata={"description": "Others than approved: admins (status=pending is the queue of applications)."},
    )
    district = District(load_default=None)
    mine = fields.Boolean(
        load_default=False, metadata={"description": "Only the caller's own orgs (any status), with their role."}
    )


class OrgCreateSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=2, max=80))
    kind = fields.String(required=True, validate=validate.OneOf(ORG_KINDS))
    district = District(required=True)


class OrgMemberCreateSchema(BaseSchema):
    user_id = Id(required=True)
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))


class VolunteerVerificationSchema(BaseSchema):
    user_id = fields.Integer(required=True)
    volunteer_no = fields.String(required=True)
    verified = fields.Boolean(required=True)
    verified_at = UTCDateTime(required=True, allow_none=True)


class OrgMemberSchema(BaseSchema):
    org_id = fields.Integer()
    user_id = fields.Integer()
    role = fields.String(metadata={"enum": list(MEMBER_ROLES)})
    created_at = UTCDateTime()


class OrgMemberItemSchema(BaseSchema):
    user = fields.Nested(PersonSchema, required=True)
    role = fields.String(required=True, metadata={"enum": list(MEMBER_ROLES)})
    joined_at = UTCDateTime(required=True)
    party = fields.Nested(
        PartySchema,
        metadata={
            "optional": True,
            "description": "A party member's branch and community: shown to the coordinators of that branch and "
            "community only (else absent).",
        },
    )


class OrgStatsQuerySchema(PeriodQuerySchema):
    interval = fields.String(
        load_default="month",
        validate=validate.OneOf(INTERVALS),
        metadata={"description": f"Default month; `from` to `to` spans at most {MAX_PERIODS} of them."},
    )


class OrgPeriodSchema(BaseSchema):
    period_start = fields.Date(
        required=True, metadata={"description": "First day of the week (Monday) or month, Asia/Shanghai."}
    )
    postings_opened = fields.Integer(
        required=True, metadata={"description": "Postings of the org created in the period and (still) public."}
    )
    claims = fields.Integer(required=True, metadata={"description": "Claims made on the org's postings."})
    wishes_fulfilled = fields.Integer(
        required=True, metadata={"description": "The org's wishes whose claim was marked done in the period."}
    )
    credit_hours = fields.Float(
        required=True, metadata={"description": "Credit hours of the org's records served in the period."}
    )
    volunteers_active = fields.Integer(
        required=True, metadata={"description": "Distinct volunteers with a record of the org in the period."}
    )


class OrgStatsSchema(BaseSchema):
    series = fields.List(fields.Nested(OrgPeriodSchema), required=True)
