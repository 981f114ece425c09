"""All models, imported here so Alembic and the app see one metadata."""

from app.models.audit import AuditEntry
from app.models.base import Base
from app.models.certificates import CalendarFeed, Certificate
from app.models.claims import Claim
from app.models.energy import EnergyEntry
from app.models.jobs import JobRun
from app.models.notifications import Device, Notification, PushWindow
from app.models.orgs import Org, OrgMember
from app.models.postings import Posting, PostingTag
from app.models.records import ServiceRecord
from app.models.sms import SmsCode, SmsCounter
from app.models.tokens import IdempotencyKey, RefreshToken
from app.models.users import Consent, User, Volunteer, VolunteerSkill

__all__ = [
    "AuditEntry",
    "Base",
    "CalendarFeed",
    "Certificate",
    "Claim",
    "Consent",
    "Device",
    "EnergyEntry",
    "IdempotencyKey",
    "JobRun",
    "Notification",
    "Org",
    "OrgMember",
    "Posting",
    "PostingTag",
    "PushWindow",
    "RefreshToken",
    "ServiceRecord",
    "SmsCode",
    "SmsCounter",
    "User",
    "Volunteer",
    "VolunteerSkill",
]
