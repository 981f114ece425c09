"""Organisations (志愿组织) and their members."""

from __future__ import annotations

from marshmallow import fields, validate

from app.models.orgs import MEMBER_ROLES, ORG_KINDS
from mobile_api.fields import BaseSchema, Id, UTCDateTime, known_district


class OrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    district = fields.String()
    status = fields.String()
    member_count = fields.Integer()
    created_at = UTCDateTime()


class OrgCreateSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=2, max=80))
    kind = fields.String(required=True, validate=validate.OneOf(ORG_KINDS))
    district = fields.String(required=True, validate=known_district)


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
    role = fields.String()
    created_at = UTCDateTime()
