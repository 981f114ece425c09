"""Accounts and volunteers: who the user is, registering, signing in."""

from __future__ import annotations

from flask_babel import gettext
from marshmallow import ValidationError, fields, validate, validates, validates_schema

from app.clock import zone
from app.i18n import API_LOCALES
from app.models.orgs import MEMBER_ROLES
from app.security import actor_for
from app.services.permissions import memberships
from app.services.photos import avatar_of
from mobile_api.fields import (
    BaseSchema,
    District,
    Id,
    ListFrom,
    Location,
    NestedFrom,
    Phone,
    QuietHours,
    UTCDateTime,
    known_timezone,
    quiet_hours_span_time,
)
from mobile_api.schemas.claims import RatingSchema
from mobile_api.schemas.photos import PhotoSchema

LOCALES = tuple(API_LOCALES)


class VolunteerSchema(BaseSchema):
    volunteer_no = fields.String()
    real_name = fields.String()
    id_number_masked = fields.String(attribute="id_masked")
    gender = fields.String(allow_none=True)
    skills = fields.List(fields.String(), metadata={"description": "Codes of GET /api/v1/skills."})
    district = District()
    home = NestedFrom(
        Location,
        allow_none=True,
        source=lambda v: None if v.home_lat is None else {"lat": v.home_lat, "lng": v.home_lng},
    )
    push_radius_km = fields.Float()
    verified = fields.Boolean()
    credit_hours = fields.Float()
    honor_hours = fields.Float()
    star_level = fields.Integer()
    energy_balance = fields.Integer()
    active_claims = fields.Integer(attribute="active_wish_claims")
    rating = fields.Nested(RatingSchema)
    registered_at = UTCDateTime()


class UserOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String(metadata={"enum": list(MEMBER_ROLES)})


class UserSchema(BaseSchema):
    id = fields.Integer()
    phone_masked = fields.String()
    display_name = fields.String()
    email = fields.String(allow_none=True)
    roles = fields.Method("dump_roles", metadata={"type": "array", "items": {"type": "string"}})
    locale = fields.String()
    timezone = fields.Function(
        lambda user: zone(user.timezone).key,
        metadata={"type": "string", "description": "The user's zone, or the deployment's default when unset."},
    )
    quiet_hours = NestedFrom(
        QuietHours,
        allow_none=True,
        source=lambda u: {"start": u.quiet_start, "end": u.quiet_end} if u.quiet_start else None,
    )
    volunteer = fields.Nested(VolunteerSchema, allow_none=True)
    avatar = NestedFrom(PhotoSchema, allow_none=True, source=avatar_of)
    orgs = ListFrom(
        fields.Nested(UserOrgSchema),
        source=lambda u: [{"id": org.id, "name": org.name, "role": role} for org, role in memberships(u)],
    )
    created_at = UTCDateTime()

    def dump_roles(self, user):
        return actor_for(user).roles()


class RegisterSchema(BaseSchema):
    phone = Phone(required=True)
    password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    email = fields.Email(load_default=None, validate=validate.Length(max=254))


class LoginSchema(BaseSchema):
    phone = Phone()
    email = fields.Email()
    password = fields.String(required=True, validate=validate.Length(max=128), load_only=True)

    @validates_schema
    def one_identifier(self, data, **_kwargs):
        if ("phone" in data) == ("email" in data):
            raise ValidationError(gettext("Give either phone or email."), "_schema")


class TokenPairSchema(BaseSchema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)


class AuthResultSchema(TokenPairSchema):
    user = fields.Nested(UserSchema, required=True)


class UserUpdateSchema(BaseSchema):
    display_name = fields.String(validate=validate.Length(min=1, max=40))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    locale = fields.String(validate=validate.OneOf(LOCALES))
    timezone = fields.String(allow_none=True, validate=known_timezone, metadata={"description": "null: the default."})
    quiet_hours = fields.Nested(QuietHours, allow_none=True, validate=quiet_hours_span_time)
    avatar_photo_id = Id(
        allow_none=True,
        metadata={"description": "An upload of yours for purpose avatar; null removes the avatar."},
    )


class PasswordChangeSchema(BaseSchema):
    old_password = fields.String(required=True, validate=validate.Length(max=128))
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=128))


class VolunteerRegisterSchema(BaseSchema):
    real_name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    id_number = fields.String(required=True, validate=validate.Length(min=1, max=18))
    gender = fields.String(validate=validate.OneOf(("male", "female", "other")), allow_none=True)
    birth_date = fields.Date(allow_none=True)
    skills = fields.List(
        fields.String(validate=validate.Length(min=1, max=20)), load_default=list, validate=validate.Length(max=20)
    )
    district = District(required=True)
    home = fields.Nested(Location, allow_none=True)
    push_radius_km = fields.Float(validate=validate.Range(0.5, 50), allow_nan=False)

    @validates("skills")
    def unique_skills(self, value, **_kwargs):
        if len(set(value)) != len(value):
            raise ValidationError(gettext("Skills must be unique."))
