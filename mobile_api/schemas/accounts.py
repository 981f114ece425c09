"""Accounts and volunteers: who the user is, registering, signing in."""

from __future__ import annotations

from flask_babel import gettext, lazy_gettext
from marshmallow import ValidationError, fields, validate, validates, validates_schema

from app.clock import zone
from app.i18n import API_LOCALES
from app.models.orgs import MEMBER_ROLES
from app.policy import SMS_CODE_DIGITS, SMS_PURPOSES
from app.security import actor_for
from app.services.accounts import consent_required
from app.services.party_blocks import party_of
from app.services.permissions import memberships
from app.services.photos import avatar_of
from app.validators import ID_NUMBER_PATTERN, mask_phone
from mobile_api.fields import (
    BaseSchema,
    District,
    Id,
    ListFrom,
    Location,
    NestedFrom,
    Phone,
    PrivacyVersion,
    QuietHours,
    UTCDateTime,
    known_timezone,
    quiet_hours_span_time,
)
from mobile_api.schemas.claims import RatingSchema
from mobile_api.schemas.party import PartySchema
from mobile_api.schemas.photos import PhotoSchema

LOCALES = tuple(API_LOCALES)


def SmsCode(**kwargs) -> fields.String:  # noqa: N802 - a field factory, used like a field class
    """The six digits of an SMS code."""
    return fields.String(
        validate=validate.Regexp(
            rf"^[0-9]{{{SMS_CODE_DIGITS}}}$",
            error=lazy_gettext("Enter the %(digits)d digits of the SMS code.", digits=SMS_CODE_DIGITS),
        ),
        metadata={
            "description": f"The {SMS_CODE_DIGITS} digits sent by POST /api/v1/auth/sms-codes.",
            **kwargs.pop("metadata", {}),
        },
        **kwargs,
    )


class GuardianSchema(BaseSchema):
    """A guardian's consent as kept with a volunteer record (the volunteer's own view)."""

    name = fields.String(attribute="guardian_name")
    phone_masked = fields.Function(lambda v: mask_phone(v.guardian_phone), metadata={"type": "string"})
    relation = fields.String(attribute="guardian_relation")
    consented_at = UTCDateTime(attribute="guardian_consented_at")


class GuardianInputSchema(BaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    phone = Phone(required=True, metadata={"description": "The guardian's own mobile; the code was sent there."})
    relation = fields.String(
        required=True,
        validate=validate.Length(min=1, max=20),
        metadata={"description": "What the guardian is to the volunteer (父亲, 母亲, 祖父母, 监护人…)."},
    )
    sms_code = SmsCode(required=True)


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
    party = NestedFrom(
        PartySchema,
        allow_none=True,
        source=lambda v: party_of(v.user_id),
        metadata={"description": "A party member's branch and community (双报到); null: not a party member."},
    )
    guardian = NestedFrom(
        GuardianSchema,
        allow_none=True,
        source=lambda v: v if v.guardian_consented_at is not None else None,
        metadata={"description": "A guardian's consent, for a volunteer under 14."},
    )


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
    consent_required = fields.Function(
        consent_required,
        metadata={
            "type": "boolean",
            "description": "The privacy policy moved on since the user accepted it: writes answer 428 "
            "`consent_required` until POST /api/v1/me/consents.",
        },
    )
    deletion_scheduled_at = UTCDateTime(
        allow_none=True, metadata={"description": "When the account will be erased (DELETE /me); null: not scheduled."}
    )
    created_at = UTCDateTime()

    def dump_roles(self, user):
        return actor_for(user).roles()


class RegisterSchema(BaseSchema):
    phone = Phone(required=True)
    sms_code = SmsCode(required=True)
    password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    email = fields.Email(load_default=None, validate=validate.Length(max=254))
    privacy_version = PrivacyVersion(
        required=True, metadata={"description": "The version GET /api/v1/legal names, which the user accepted."}
    )


class LoginSchema(BaseSchema):
    phone = Phone()
    email = fields.Email()
    password = fields.String(validate=validate.Length(max=128), load_only=True)
    sms_code = SmsCode(metadata={"description": "Instead of the password: a code sent to `phone` for `login`."})

    @validates_schema
    def one_identifier(self, data, **_kwargs):
        if ("phone" in data) == ("email" in data):
            raise ValidationError(gettext("Give either phone or email."), "_schema")
        if ("password" in data) == ("sms_code" in data):
            raise ValidationError(gettext("Give either the password or an SMS code."), "_schema")
        if "sms_code" in data and "phone" not in data:
            raise ValidationError(gettext("An SMS code signs in with the phone it was sent to."), "_schema")


class SmsCodeRequestSchema(BaseSchema):
    phone = Phone(required=True)
    purpose = fields.String(required=True, validate=validate.OneOf(SMS_PURPOSES))


class SmsCodeSentSchema(BaseSchema):
    resend_after_s = fields.Integer(metadata={"description": "Seconds before another code may be asked for."})
    expires_in_s = fields.Integer(metadata={"description": "Seconds the code is valid."})


class PasswordResetSchema(BaseSchema):
    phone = Phone(required=True)
    sms_code = SmsCode(required=True)
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)


class PhoneChangeSchema(BaseSchema):
    phone = Phone(required=True, metadata={"description": "The new number; the code was sent to it."})
    sms_code = SmsCode(required=True)
    password = fields.String(required=True, validate=validate.Length(max=128), load_only=True)


class ConsentSchema(BaseSchema):
    privacy_version = PrivacyVersion(required=True)


class LegalSchema(BaseSchema):
    privacy_version = fields.String()
    terms_version = fields.String()
    privacy_url = fields.String(allow_none=True)
    terms_url = fields.String(allow_none=True)


class DeletionSchema(BaseSchema):
    password = fields.String(validate=validate.Length(max=128), load_only=True)
    sms_code = SmsCode(metadata={"description": "Instead of the password: a code sent for `delete_account`."})

    @validates_schema
    def one_proof(self, data, **_kwargs):
        if ("password" in data) == ("sms_code" in data):
            raise ValidationError(gettext("Give either the password or an SMS code."), "_schema")


class DeletionScheduledSchema(BaseSchema):
    deletion_scheduled_at = UTCDateTime()


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
    quiet_hours = fields.Nested(
        QuietHours,
        allow_none=True,
        validate=quiet_hours_span_time,
        metadata={"description": "Local times, start and end differ; null = off."},
    )
    avatar_photo_id = Id(
        allow_none=True,
        metadata={"description": "An upload of yours for purpose avatar; null removes the avatar."},
    )


class PasswordChangeSchema(BaseSchema):
    old_password = fields.String(required=True, validate=validate.Length(max=128))
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=128))


class VolunteerRegisterSchema(BaseSchema):
    real_name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    id_number = fields.String(
        required=True,
        validate=validate.Length(min=1, max=18),
        metadata={
            "pattern": ID_NUMBER_PATTERN,
            "description": "The 18-character resident ID number (full-width digits are read as digits); "
            "its birth date must be a real day and its last character the check digit.",
        },
    )
    gender = fields.String(validate=validate.OneOf(("male", "female", "other")), allow_none=True)
    birth_date = fields.Date(allow_none=True)
    skills = fields.List(
        fields.String(validate=validate.Length(min=1, max=20)),
        load_default=list,
        validate=validate.Length(max=20),
        metadata={"uniqueItems": True, "description": "Codes of GET /api/v1/skills, each once."},
    )
    district = District(required=True)
    home = fields.Nested(Location, allow_none=True)
    push_radius_km = fields.Float(validate=validate.Range(0.5, 50), allow_nan=False)
    guardian = fields.Nested(
        GuardianInputSchema,
        metadata={
            "description": "Required when the ID number's holder is under 14: the guardian's consent, "
            "proven by a code sent to the guardian's phone for `guardian_consent`."
        },
    )

    @validates("skills")
    def unique_skills(self, value, **_kwargs):
        if len(set(value)) != len(value):
            raise ValidationError(gettext("Skills must be unique."))
