"""Schemas by role: ``XSchema`` (out), ``XCreateSchema``, ``XUpdateSchema``, ``XQuerySchema``."""

from __future__ import annotations

from flask import current_app
from marshmallow import ValidationError, fields, post_load, validate, validates, validates_schema

from app.models.claims import CLAIM_STATUSES
from app.models.orgs import MEMBER_ROLES, ORG_KINDS
from app.models.postings import POSTING_KINDS, POSTING_STATUSES
from app.services.permissions import memberships
from app.services.records import RECORD_KINDS
from mobile_api.fields import (
    BaseSchema,
    HttpsUrl,
    ListFrom,
    Location,
    NestedFrom,
    PageQuery,
    Phone,
    QuietHours,
    UTCDateTime,
)
from notifications.templates import NOTIFICATION_KINDS

LOCALES = ("zh-CN", "en")


def _known_timezone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("Unknown time zone.") from None


def _known_district(value: str) -> None:
    if value not in current_app.config["DISTRICTS"]:
        raise ValidationError("Unknown district. One of: " + ", ".join(current_app.config["DISTRICTS"]))


# --- accounts ---------------------------------------------------------------


class VolunteerSchema(BaseSchema):
    volunteer_no = fields.String()
    real_name = fields.String()
    id_number_masked = fields.String(attribute="id_masked")
    gender = fields.String(allow_none=True)
    birth_date = fields.Date(allow_none=True)
    skills = fields.List(fields.String())
    district = fields.String()
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
    registered_at = UTCDateTime()


class UserOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()
    role = fields.String()


class UserSchema(BaseSchema):
    id = fields.Integer()
    phone_masked = fields.String()
    display_name = fields.String()
    email = fields.String(allow_none=True)
    roles = fields.Method("dump_roles", metadata={"type": "array", "items": {"type": "string"}})
    locale = fields.String()
    timezone = fields.String()
    quiet_hours = NestedFrom(
        QuietHours,
        allow_none=True,
        source=lambda u: {"start": u.quiet_start, "end": u.quiet_end} if u.quiet_start else None,
    )
    volunteer = fields.Nested(VolunteerSchema, allow_none=True)
    orgs = ListFrom(
        fields.Nested(UserOrgSchema),
        source=lambda u: [{"id": org.id, "name": org.name, "role": role} for org, role in memberships(u)],
    )
    created_at = UTCDateTime()

    def dump_roles(self, user):
        roles = ["user"]
        if user.volunteer is not None:
            roles.append("volunteer")
        if any(role == "coordinator" and org.status == "approved" for org, role in memberships(user)):
            roles.append("coordinator")
        if user.is_admin:
            roles.append("admin")
        return roles


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
            raise ValidationError("Give either phone or email.", "_schema")


class TokenPairSchema(BaseSchema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)


class AuthResultSchema(TokenPairSchema):
    user = fields.Nested(UserSchema, required=True)


class UserUpdateSchema(BaseSchema):
    display_name = fields.String(validate=validate.Length(min=1, max=40))
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    locale = fields.String(validate=validate.OneOf(LOCALES))
    timezone = fields.String(validate=_known_timezone)
    quiet_hours = fields.Nested(QuietHours, allow_none=True)


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
    district = fields.String(required=True, validate=_known_district)
    home = fields.Nested(Location, allow_none=True)
    push_radius_km = fields.Float(validate=validate.Range(0.5, 50), allow_nan=False)

    @validates("skills")
    def unique_skills(self, value, **_kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("Skills must be unique.")


# --- organisations ------------------------------------------------------------


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
    district = fields.String(required=True, validate=_known_district)


class OrgMemberCreateSchema(BaseSchema):
    user_id = fields.Integer(required=True, strict=True)
    role = fields.String(required=True, validate=validate.OneOf(MEMBER_ROLES))


class OrgMemberSchema(BaseSchema):
    org_id = fields.Integer()
    user_id = fields.Integer()
    role = fields.String()
    created_at = UTCDateTime()


class HealthSchema(BaseSchema):
    status = fields.String()


# --- claims -------------------------------------------------------------------


class PersonSchema(BaseSchema):
    id = fields.Integer()
    display_name = fields.String()


class ClaimSchema(BaseSchema):
    id = fields.Integer()
    posting_id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    message = fields.String(allow_none=True)
    volunteer = fields.Nested(PersonSchema, attribute="user")
    claimed_at = UTCDateTime()
    due_at = UTCDateTime(allow_none=True)
    fulfilled_at = UTCDateTime(allow_none=True)
    confirmed_at = UTCDateTime(allow_none=True)
    check_in_at = UTCDateTime(allow_none=True)
    check_out_at = UTCDateTime(allow_none=True)
    note = fields.String(allow_none=True)
    photo_urls = fields.List(fields.String())
    rating = fields.Integer(allow_none=True)
    feedback = fields.String(allow_none=True)
    minutes = fields.Integer(
        allow_none=True, metadata={"description": "Service time: reported, attested or measured at check-out."}
    )
    ended_at = UTCDateTime(allow_none=True)
    energy_debited = fields.Integer(metadata={"description": "Energy points taken at claim time (微能量)."})


class ClaimPostingSchema(BaseSchema):
    """The posting a claim belongs to, in brief."""

    id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    status = fields.String()
    district = fields.String()
    address = fields.String(allow_none=True)
    location = fields.Method("dump_location", allow_none=True, metadata={"type": "object"})
    org_id = fields.Integer(allow_none=True)
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    energy_cost = fields.Integer(allow_none=True)

    def dump_location(self, posting):
        if posting.lat is None or posting.lng is None:
            return None
        return {"lat": posting.lat, "lng": posting.lng}


class MyClaimSchema(ClaimSchema):
    posting = fields.Nested(ClaimPostingSchema, attribute="posting_brief", allow_none=True)


class ClaimQuerySchema(PageQuery):
    status = fields.List(
        fields.String(),
        load_default=None,
        metadata={"description": "Repeatable or comma-separated: " + ", ".join(CLAIM_STATUSES)},
    )

    @post_load
    def split_statuses(self, data, **_kwargs):
        if data.get("status"):
            statuses = [part.strip() for item in data["status"] for part in item.split(",") if part.strip()]
            unknown = sorted(set(statuses) - set(CLAIM_STATUSES))
            if unknown:
                raise ValidationError(f"Unknown status {', '.join(unknown)}.", "status")
            data["status"] = statuses
        return data


class ClaimCreateSchema(BaseSchema):
    message = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


def _minutes_field(description: str) -> fields.Integer:
    """Optional minutes of service in one day (0-1440)."""
    return fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, 1440),
        metadata={"description": description},
    )


class ClaimFulfilSchema(BaseSchema):
    note = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    photo_urls = fields.List(
        HttpsUrl(validate=validate.Length(max=500)), load_default=list, validate=validate.Length(max=9)
    )
    minutes = _minutes_field("Time spent; credited rounded down to the half hour.")


class ClaimConfirmSchema(BaseSchema):
    rating = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(1, 5),
        metadata={"description": "1-5; required for a wish or a service."},
    )
    feedback = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))
    minutes = _minutes_field("A wish's credited time; defaults to what the volunteer reported.")


class SiteLocationSchema(Location):
    """Where the phone is when checking in or out."""


# --- service records and energy -----------------------------------------------------


class RecordSchema(BaseSchema):
    id = fields.Integer()
    volunteer_id = fields.Integer()
    posting_id = fields.Integer(allow_none=True)
    claim_id = fields.Integer(allow_none=True)
    org_id = fields.Integer(allow_none=True)
    kind = fields.String(metadata={"enum": list(RECORD_KINDS)})
    posting_kind = fields.String(allow_none=True)
    activity = fields.String()
    minutes = fields.Integer()
    hours = fields.Method("dump_hours", metadata={"type": "number"})
    started_at = UTCDateTime(allow_none=True)
    ended_at = UTCDateTime(allow_none=True)
    place = fields.String(allow_none=True)
    content = fields.String(allow_none=True)
    evaluation = fields.String(allow_none=True)
    rating = fields.Integer(allow_none=True)
    recorded_by = fields.Integer(allow_none=True)
    created_at = UTCDateTime()

    def dump_hours(self, record):
        return round(record.minutes / 60, 1)


class RecordQuerySchema(PageQuery):
    kind = fields.String(load_default=None, validate=validate.OneOf(RECORD_KINDS))


class RecordMonthSchema(BaseSchema):
    month = fields.String(metadata={"description": "YYYY-MM in the user's time zone"})
    credit_hours = fields.Float()
    honor_hours = fields.Float()
    credit_minutes = fields.Integer()
    honor_minutes = fields.Integer()
    records = fields.Integer()


class RecordSummarySchema(BaseSchema):
    credit_hours = fields.Float()
    honor_hours = fields.Float()
    total_hours = fields.Float()
    credit_minutes = fields.Integer()
    honor_minutes = fields.Integer()
    records = fields.Integer()
    star_level = fields.Integer()
    by_kind = fields.Dict(keys=fields.String(), values=fields.Float(), metadata={"description": "credit / honor"})
    by_posting_kind = fields.Dict(keys=fields.String(), values=fields.Float())
    by_month = fields.List(fields.Nested(RecordMonthSchema))


class HonorRecordCreateSchema(BaseSchema):
    """Honor hours (荣誉时长) for a volunteer of the org: ``volunteer_id`` (or
    ``user_id``), ``minutes`` (or ``hours``) and the reason."""

    volunteer_id = fields.Integer(strict=True, metadata={"description": "The volunteer's user id."})
    user_id = fields.Integer(strict=True, load_only=True, metadata={"description": "Same as volunteer_id."})
    minutes = fields.Integer(strict=True, validate=validate.Range(1, 6000))
    hours = fields.Float(load_only=True, validate=validate.Range(min=0, max=100, min_inclusive=False), allow_nan=False)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    activity = fields.String(validate=validate.Length(min=1, max=80))
    place = fields.String(validate=validate.Length(max=200))
    started_at = UTCDateTime(load_default=None)
    ended_at = UTCDateTime(load_default=None)

    @validates_schema
    def one_of_each(self, data, **_kwargs):
        if ("volunteer_id" in data) == ("user_id" in data):
            raise ValidationError("Give volunteer_id.", "volunteer_id")
        if ("minutes" in data) == ("hours" in data):
            raise ValidationError("Give minutes (or hours).", "minutes")

    @post_load
    def normalise(self, data, **_kwargs):
        if "user_id" in data:
            data["volunteer_id"] = data.pop("user_id")
        if "hours" in data:
            data["minutes"] = max(1, round(data.pop("hours") * 60))
        return data


class EnergyEntrySchema(BaseSchema):
    id = fields.Integer()
    delta = fields.Integer()
    balance_after = fields.Integer()
    reason = fields.String(
        metadata={"description": "redeem, refund_withdrawn, refund_cancelled, service_hours, wish_confirmed"}
    )
    claim_id = fields.Integer(allow_none=True)
    posting_id = fields.Integer(allow_none=True)
    created_at = UTCDateTime()


class EnergySchema(BaseSchema):
    balance = fields.Integer(required=True)
    items = fields.List(fields.Nested(EnergyEntrySchema), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


# --- stats ---------------------------------------------------------------------------


class StatsQuerySchema(BaseSchema):
    district = fields.String(load_default=None, validate=_known_district)


class StatsSchema(BaseSchema):
    district = fields.String(allow_none=True)
    volunteers = fields.Integer()
    wishes_posted = fields.Integer()
    wishes_claimed = fields.Integer()
    wishes_fulfilled = fields.Integer()
    credit_hours = fields.Float()
    postings_by_kind = fields.Dict(keys=fields.String(), values=fields.Integer())


# --- notifications --------------------------------------------------------------

DEVICE_PLATFORMS = ("android", "ios", "web")


class DeviceCreateSchema(BaseSchema):
    token = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=4096), validate.Regexp(r"^\S+$", error="A token has no spaces.")],
        metadata={"description": "The FCM registration token of this app install."},
    )
    platform = fields.String(required=True, validate=validate.OneOf(DEVICE_PLATFORMS))
    app_version = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=40))


class DeviceSchema(BaseSchema):
    token = fields.String()
    platform = fields.String()
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
        metadata={"description": "Deep-link payload, the same as the push: kind, posting_id, claim_id."},
    )
    created_at = UTCDateTime()
    read_at = UTCDateTime(allow_none=True)


class NotificationQuerySchema(PageQuery):
    unread = fields.Boolean(load_default=False, metadata={"description": "Only unread notifications."})


class MarkReadSchema(BaseSchema):
    ids = fields.List(
        fields.Integer(strict=True),
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
    quiet_hours = fields.Nested(QuietHours, allow_none=True, metadata={"description": "Local times; null = off."})
    nearby_alerts = fields.Boolean()

    @validates("quiet_hours")
    def quiet_hours_span_time(self, value, **_kwargs):
        if value and value.get("start") is not None and value.get("start") == value.get("end"):
            raise ValidationError("start and end must differ.")


# --- postings -------------------------------------------------------------------


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Must not be blank.")


def _unique_tags(value: list[str]) -> None:
    if len({tag.strip() for tag in value}) != len(value):
        raise ValidationError("Tags must be unique.")


class LatLng(fields.String):
    """``near=29.87,121.55``: WGS-84 latitude and longitude, loaded as ``{lat, lng}``."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        parts = text.split(",")
        try:
            lat, lng = (float(part) for part in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            lat = lng = None
        if lat is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise ValidationError("Use lat,lng in decimal degrees, e.g. 29.87,121.55.")
        return {"lat": lat, "lng": lng}


_TITLE = {"validate": [validate.Length(min=1, max=80), _not_blank]}
_DESCRIPTION = {"validate": [validate.Length(min=1, max=2000), _not_blank]}
_ADDRESS = {
    "allow_none": True,
    "validate": validate.Length(max=200),
    "metadata": {"description": "Public meeting place."},
}
_TAG_LIST = {
    "validate": [validate.Length(max=10), _unique_tags],
    "metadata": {"description": "At most 10 tags of at most 20 characters."},
}
_PHOTOS = {"validate": validate.Length(max=9), "metadata": {"description": "At most 9 https URLs."}}


def _tag() -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=20), _not_blank])


class PostingOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()


class BeneficiarySchema(BaseSchema):
    name_masked = fields.String(allow_none=True, metadata={"description": "张* — shown to everyone."})
    phone = fields.String(
        allow_none=True,
        metadata={"description": "Only for the active claimant, the author, the org's coordinators and admins."},
    )
    address = fields.String(
        allow_none=True,
        metadata={"description": "Exact address; only for the viewers who see the phone. Never in lists."},
    )


class BeneficiaryInputSchema(BaseSchema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=40), _not_blank])
    phone = Phone(allow_none=True)
    address = fields.String(allow_none=True, validate=validate.Length(max=200))


class PostingSchema(BaseSchema):
    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(POSTING_KINDS)})
    title = fields.String()
    description = fields.String()
    status = fields.String(metadata={"enum": list(POSTING_STATUSES)})
    district = fields.String()
    address = fields.String(allow_none=True)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(fields.String(), attribute="tag_names")
    photo_urls = fields.List(fields.String())
    org = fields.Nested(PostingOrgSchema, allow_none=True)
    author = fields.Nested(PersonSchema)
    capacity = fields.Integer(allow_none=True, metadata={"description": "null: unlimited."})
    claimed_count = fields.Integer()
    waitlist_count = fields.Integer()
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    claim_ttl_hours = fields.Integer(allow_none=True)
    energy_cost = fields.Integer(allow_none=True)
    beneficiary = fields.Nested(BeneficiarySchema)
    my_claim = fields.Nested(ClaimSchema, allow_none=True, metadata={"description": "The viewer's claim, if any."})
    distance_km = fields.Float(allow_none=True, metadata={"description": "From `near`, when the feed was given one."})
    reject_reason = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    reviewed_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class PostingCreateSchema(BaseSchema):
    kind = fields.String(required=True, validate=validate.OneOf(POSTING_KINDS))
    title = fields.String(required=True, **_TITLE)
    description = fields.String(required=True, **_DESCRIPTION)
    org_id = fields.Integer(strict=True, allow_none=True, metadata={"description": "The org this is posted for."})
    district = fields.String(required=True, validate=_known_district)
    address = fields.String(**_ADDRESS)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(_tag(), **_TAG_LIST)
    photo_urls = fields.List(HttpsUrl(), **_PHOTOS)
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True, metadata={"description": "Wishes: within 90 days, default 30."})
    claim_ttl_hours = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(1, 720), metadata={"description": "Wishes; 168."}
    )
    energy_cost = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    beneficiary = fields.Nested(
        BeneficiaryInputSchema, allow_none=True, metadata={"description": "Wishes posted by a coordinator."}
    )


class PostingUpdateSchema(BaseSchema):
    title = fields.String(**_TITLE)
    description = fields.String(**_DESCRIPTION)
    district = fields.String(validate=_known_district)
    address = fields.String(**_ADDRESS)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(_tag(), **_TAG_LIST)
    photo_urls = fields.List(HttpsUrl(), **_PHOTOS)
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(metadata={"description": "May always be extended (wishes: up to 90 days from now)."})
    claim_ttl_hours = fields.Integer(strict=True, validate=validate.Range(1, 720))
    energy_cost = fields.Integer(strict=True, validate=validate.Range(1, 100_000))
    beneficiary = fields.Nested(BeneficiaryInputSchema)


class PostingQuerySchema(PageQuery):
    kind = fields.List(fields.String(validate=validate.OneOf(POSTING_KINDS)), metadata={"description": "Repeatable."})
    status = fields.List(
        fields.String(validate=validate.OneOf(POSTING_STATUSES)),
        metadata={"description": "Repeatable; default open."},
    )
    district = fields.String(validate=_known_district)
    tag = fields.List(_tag(), validate=validate.Length(max=10), metadata={"description": "Repeatable; any of."})
    org_id = fields.Integer()
    author_id = fields.Integer()
    near = LatLng(metadata={"description": "lat,lng — adds distance_km to each item.", "example": "29.87,121.55"})
    radius_km = fields.Float(
        load_default=3.0,
        allow_nan=False,
        validate=validate.Range(0, 50, min_inclusive=False),
        metadata={"description": "With near; default 3, at most 50."},
    )
    sort = fields.String(load_default="newest", validate=validate.OneOf(("newest", "distance", "ending_soon")))

    @validates_schema
    def distance_needs_near(self, data, **_kwargs):
        if data.get("sort") == "distance" and data.get("near") is None:
            raise ValidationError("sort=distance needs near=lat,lng.", "sort")


class RejectSchema(BaseSchema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank])


class CancelSchema(BaseSchema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=500))
