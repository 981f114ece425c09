"""All models, imported here so Alembic and the app see one metadata."""

from app.models.audit import AuditEntry
from app.models.base import Base
from app.models.certificates import CalendarFeed, Certificate
from app.models.claims import Claim
from app.models.energy import EnergyEntry
from app.models.jobs import JobRun
from app.models.notifications import (
    Device,
    NearbyAlertAllowance,
    NearbyAlertRequest,
    Notification,
    PushDelivery,
    PushWindow,
)
from app.models.orgs import CommunityReport, JoinRequest, Org, OrgMember
from app.models.photos import Photo
from app.models.postings import Posting, PostingTag
from app.models.records import ServiceRecord, VolunteerRating
from app.models.sms import SmsCode, SmsCounter
from app.models.tokens import IdempotencyKey, RefreshToken
from app.models.users import Consent, User, Volunteer, VolunteerSkill

__all__ = [
    "AuditEntry",
    "Base",
    "CalendarFeed",
    "Certificate",
    "Claim",
    "CommunityReport",
    "Consent",
    "Device",
    "EnergyEntry",
    "IdempotencyKey",
    "JobRun",
    "JoinRequest",
    "NearbyAlertAllowance",
    "NearbyAlertRequest",
    "Notification",
    "Org",
    "OrgMember",
    "Photo",
    "Posting",
    "PostingTag",
    "PushDelivery",
    "PushWindow",
    "RefreshToken",
    "ServiceRecord",
    "SmsCode",
    "SmsCounter",
    "User",
    "Volunteer",
    "VolunteerRating",
    "VolunteerSkill",
]
