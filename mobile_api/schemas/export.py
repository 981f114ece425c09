"""The copy of a user's data (GET /me/export): one schema per section of
``app.services.personal_data.EXPORT`` — the API's own where one exists (a
record, an energy entry, an inbox row, the volunteer as they see it). Masked
where the contract masks; no password hash, token or secret is a field of any."""

from __future__ import annotations

from marshmallow import fields

from app.clock import zone
from app.policy import CHECKED_PHOTO_STATUSES, hours
from app.services.photos import avatar_of
from app.validators import mask_name
from mobile_api.fields import BaseSchema, District, Location, NestedFrom, UTCDateTime
from mobile_api.schemas.accounts import VolunteerSchema
from mobile_api.schemas.notifications import NotificationSchema
from mobile_api.schemas.photos import PhotoSchema
from mobile_api.schemas.records import EnergyEntrySchema, RecordSchema


class ExportProfileSchema(BaseSchema):
    id = fields.Integer()
    phone_masked = fields.String()
    display_name = fields.String()
    email = fields.String(allow_none=True)
    locale = fields.String()
    timezone = fields.Function(lambda user: zone(user.timezone).key, metadata={"type": "string"})
    quiet_hours_start = fields.String(attribute="quiet_start", allow_none=True)
    quiet_hours_end = fields.String(attribute="quiet_end", allow_none=True)
    muted_kinds = fields.List(fields.String())
    nearby_alerts = fields.Boolean()
    privacy_version = fields.String(allow_none=True)
    deletion_scheduled_at = UTCDateTime(allow_none=True)
    avatar = NestedFrom(PhotoSchema, allow_none=True, source=avatar_of)
    created_at = UTCDateTime()


class ExportConsentSchema(BaseSchema):
    document = fields.String(metadata={"enum": ["privacy", "terms"]})
    version = fields.String()
    accepted_at = UTCDateTime()


class ExportOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()


class ExportMembershipSchema(BaseSchema):
    org = fields.Nested(ExportOrgSchema)
    role = fields.String()
    joined_at = UTCDateTime()


class ExportJoinRequestSchema(BaseSchema):
    org = fields.Nested(ExportOrgSchema)
    status = fields.String()
    message = fields.String(allow_none=True)
    requested_at = UTCDateTime()
    decided_at = UTCDateTime(allow_none=True)
    reject_reason = fields.String(allow_none=True)


class ExportBeneficiarySchema(BaseSchema):
    name_masked = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    address = fields.String(allow_none=True)


class ExportPostingSchema(BaseSchema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String()
    description = fields.String()
    status = fields.String()
    district = District()
    address = fields.String(allow_none=True)
    location = NestedFrom(
        Location, allow_none=True, source=lambda p: None if p.lat is None else {"lat": p.lat, "lng": p.lng}
    )
    org_id = fields.Integer(allow_none=True)
    beneficiary = NestedFrom(
        ExportBeneficiarySchema,
        allow_none=True,
        source=lambda p: (
            None
            if p.beneficiary_name is None
            else {
                "name_masked": mask_name(p.beneficiary_name),
                "phone": p.beneficiary_phone,
                "address": p.beneficiary_address,
            }
        ),
    )
    capacity = fields.Integer(allow_none=True)
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()


class ExportClaimSchema(BaseSchema):
    id = fields.Integer()
    posting_id = fields.Integer()
    posting_title = fields.String(allow_none=True)
    kind = fields.String()
    status = fields.String()
    message = fields.String(allow_none=True)
    claimed_at = UTCDateTime()
    due_at = UTCDateTime(allow_none=True)
    fulfilled_at = UTCDateTime(allow_none=True)
    confirmed_at = UTCDateTime(allow_none=True)
    check_in_at = UTCDateTime(allow_none=True)
    check_out_at = UTCDateTime(allow_none=True)
    note = fields.String(allow_none=True)
    minutes = fields.Integer(allow_none=True)
    rating = fields.Integer(allow_none=True)
    feedback = fields.String(allow_none=True)


class ExportCertificateSchema(BaseSchema):
    id = fields.Integer()
    number = fields.String()
    org_id = fields.Integer()
    org_name = fields.String()
    period_from = fields.Date()
    period_to = fields.Date()
    credit_hours = fields.Function(lambda c: hours(c.credit_minutes), metadata={"type": "number"})
    honor_hours = fields.Function(lambda c: hours(c.honor_minutes), metadata={"type": "number"})
    records_count = fields.Integer()
    status = fields.String()
    issued_at = UTCDateTime()


class ExportDeviceSchema(BaseSchema):
    """A registered phone; its push token is a credential and is not shown."""

    platform = fields.String()
    provider = fields.String()
    app_version = fields.String(allow_none=True)
    created_at = UTCDateTime()
    last_seen_at = UTCDateTime()


class ExportSessionSchema(BaseSchema):
    """One refresh token issued to the user (the token itself is not shown)."""

    issued_at = UTCDateTime()
    expires_at = UTCDateTime()
    used_at = UTCDateTime(allow_none=True)
    revoked_at = UTCDateTime(allow_none=True)


class ExportPhotoSchema(BaseSchema):
    """A photo the user uploaded, what it belongs to, and (once checked) its files."""

    id = fields.Integer()
    purpose = fields.String()
    status = fields.String()
    content_type = fields.String()
    posting_id = fields.Integer(allow_none=True)
    claim_id = fields.Integer(allow_none=True)
    avatar = fields.Function(lambda photo: photo.avatar_user_id is not None, metadata={"type": "boolean"})
    file = NestedFrom(
        PhotoSchema, allow_none=True, source=lambda photo: photo if photo.status in CHECKED_PHOTO_STATUSES else None
    )
    created_at = UTCDateTime()


class ExportCalendarFeedSchema(BaseSchema):
    """Whether a calendar feed URL exists (the URL is a secret and is not shown)."""

    created_at = UTCDateTime()


class ExportSchema(BaseSchema):
    generated_at = UTCDateTime()
    profile = fields.Nested(ExportProfileSchema)
    consents = fields.List(fields.Nested(ExportConsentSchema))
    volunteer = fields.Nested(VolunteerSchema, allow_none=True)
    org_memberships = fields.List(fields.Nested(ExportMembershipSchema))
    join_requests = fields.List(fields.Nested(ExportJoinRequestSchema))
    postings = fields.List(fields.Nested(ExportPostingSchema))
    claims = fields.List(fields.Nested(ExportClaimSchema))
    service_records = fields.List(fields.Nested(RecordSchema))
    energy_ledger = fields.List(fields.Nested(EnergyEntrySchema))
    certificates = fields.List(fields.Nested(ExportCertificateSchema))
    notifications = fields.List(fields.Nested(NotificationSchema))
    photos = fields.List(fields.Nested(ExportPhotoSchema))
    devices = fields.List(fields.Nested(ExportDeviceSchema))
    sessions = fields.List(fields.Nested(ExportSessionSchema))
    calendar_feed = fields.Nested(ExportCalendarFeedSchema, allow_none=True)
