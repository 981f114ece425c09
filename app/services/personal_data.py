"""A person's data: the copy they may take (个人信息副本), and its erasure (注销).

Both are one list each, table by table, so what is exported and what is erased
are read in one place and a new table adds one line to each:

- :data:`EXPORT` — section name → what ``GET /me/export`` gives of it. Masked
  where the contract masks (phone, ID number, a beneficiary's name); never a
  password hash, a token (device, refresh, calendar feed) or a secret.
- :data:`ERASURE` — step name → what the erase does to it, in order. The
  person goes; the organisations' records stay, under the volunteer number
  (谁组织谁记录): service records, certificates (their names read 已注销 and
  they keep verifying), energy entries, claims that ended, an org's own postings.

The erase keeps the ``users`` and ``volunteers`` rows as tombstones the records
point at: the phone becomes ``erased:<id>`` (the number may register again),
the ID-number hash ``erased:<id>`` (the ID number may register again), every
name 已注销, everything else that described the person null or empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import (
    CalendarFeed,
    Certificate,
    Claim,
    CommunityReport,
    Consent,
    Device,
    EnergyEntry,
    IdempotencyKey,
    JoinRequest,
    Notification,
    Org,
    OrgMember,
    Photo,
    Posting,
    PushWindow,
    RefreshToken,
    ServiceRecord,
    User,
    VolunteerSkill,
)
from app.policy import ERASED_NAME, LIVE_POSTING_STATUSES, POLICIES, PROVIDER
from app.services import photos
from app.services.permissions import Actor

# --- the copy -------------------------------------------------------------------------------------------------------


def _all(stmt) -> list:
    return list(db.session.scalars(stmt))


def _memberships(user: User) -> list[dict]:
    rows = db.session.execute(
        sa.select(Org.id, Org.name, OrgMember.role, OrgMember.created_at)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.user_id == user.id)
        .order_by(OrgMember.id)
    )
    return [
        {"org": {"id": org_id, "name": name}, "role": role, "joined_at": joined} for org_id, name, role, joined in rows
    ]


def _join_requests(user: User) -> list[dict]:
    rows = db.session.execute(
        sa.select(JoinRequest, Org.name)
        .join(Org, Org.id == JoinRequest.org_id)
        .where(JoinRequest.user_id == user.id)
        .order_by(JoinRequest.id)
    )
    return [
        {
            "org": {"id": request.org_id, "name": name},
            "status": request.status,
            "message": request.message,
            "requested_at": request.requested_at,
            "decided_at": request.decided_at,
            "reject_reason": request.reject_reason,
        }
        for request, name in rows
    ]


def _claims(user: User) -> list[Claim]:
    claims = _all(sa.select(Claim).where(Claim.user_id == user.id).order_by(Claim.id))
    titles = dict(
        db.session.execute(sa.select(Posting.id, Posting.title).where(Posting.id.in_({c.posting_id for c in claims})))
        .tuples()
        .all()
    )
    for claim in claims:
        claim.posting_title = titles.get(claim.posting_id)
    return claims


def _calendar(user: User) -> dict | None:
    created = db.session.scalar(sa.select(CalendarFeed.created_at).where(CalendarFeed.user_id == user.id))
    return None if created is None else {"created_at": created}


# Section → the rows of it held on ``user`` (mobile_api/schemas/export.py dumps each).
EXPORT: tuple[tuple[str, Callable[[User], Any]], ...] = (
    ("profile", lambda user: user),
    ("consents", lambda user: _all(sa.select(Consent).where(Consent.user_id == user.id).order_by(Consent.id))),
    ("volunteer", lambda user: user.volunteer),
    ("org_memberships", _memberships),
    ("join_requests", _join_requests),
    ("postings", lambda user: _all(sa.select(Posting).where(Posting.author_id == user.id).order_by(Posting.id))),
    ("claims", _claims),
    (
        "service_records",
        lambda user: _all(
            sa.select(ServiceRecord).where(ServiceRecord.volunteer_id == user.id).order_by(ServiceRecord.id)
        ),
    ),
    (
        "energy_ledger",
        lambda user: _all(sa.select(EnergyEntry).where(EnergyEntry.user_id == user.id).order_by(EnergyEntry.id)),
    ),
    (
        "certificates",
        lambda user: _all(sa.select(Certificate).where(Certificate.volunteer_id == user.id).order_by(Certificate.id)),
    ),
    (
        "notifications",
        lambda user: _all(sa.select(Notification).where(Notification.user_id == user.id).order_by(Notification.id)),
    ),
    ("photos", lambda user: _all(sa.select(Photo).where(Photo.owner_id == user.id).order_by(Photo.id))),
    ("devices", lambda user: _all(sa.select(Device).where(Device.user_id == user.id).order_by(Device.id))),
    (
        "sessions",
        lambda user: _all(sa.select(RefreshToken).where(RefreshToken.user_id == user.id).order_by(RefreshToken.id)),
    ),
    ("calendar_feed", _calendar),
)


def export(user: User) -> dict[str, Any]:
    """Everything held on ``user``, section by section (:data:`EXPORT`)."""
    copy = {"generated_at": utcnow()}
    copy.update((name, read(user)) for name, read in EXPORT)
    db.session.rollback()  # a read: nothing to keep, and no row left locked
    return copy


# --- the erasure ----------------------------------------------------------------------------------------------------


def _profile(user: User) -> int:
    """The person's own columns; first, so every notice the next steps queue names 已注销."""
    user.phone = f"erased:{user.id}"
    user.email = None
    user.password_hash = "!"  # no password verifies against it
    user.display_name = ERASED_NAME
    user.is_admin = False
    user.timezone = user.quiet_start = user.quiet_end = None
    user.muted_kinds = []
    user.nearby_alerts = False
    user.privacy_version = None
    user.deletion_scheduled_at = None
    user.erased_at = utcnow()
    return 1


def _volunteer(user: User) -> int:
    """The volunteer record keeps its number and figures (the orgs' records), nothing personal."""
    volunteer = user.volunteer
    if volunteer is None:
        return 0
    volunteer.real_name = ERASED_NAME
    volunteer.id_hash = f"erased:{user.id}"
    volunteer.id_masked = ""
    volunteer.gender = volunteer.birth_date = None
    volunteer.home_lat = volunteer.home_lng = None
    volunteer.skills = []
    volunteer.verified, volunteer.verified_at, volunteer.verified_by = False, None, None
    volunteer.guardian_name = volunteer.guardian_phone = volunteer.guardian_relation = None
    volunteer.guardian_consented_at = None
    return 1


def _withdraw_live_claims(user: User) -> int:
    """Live claims go through the volunteer's own withdraw (places freed, waitlists
    promoted, energy refunded, posters told). Claims that service refuses stay to
    end as they would have: a checked-in or finished event's claim is settled, a
    fulfilled claim is confirmed — each an org's record under the volunteer number."""
    from app.services.claims.giving_up import withdraw_claim, withdrawable

    actor = Actor(user)
    ids = list(db.session.scalars(withdrawable(user.id, utcnow())))
    for claim_id in ids:
        withdraw_claim(actor, claim_id, commit=False)
    return len(ids)


def _end_own_postings(user: User) -> int:
    """The person's own live postings are cancelled through the posting service
    (claims cancelled and told): those without an org, and services the person
    provides. An org's project, activity or reward stays with the org. The
    person's own postings keep no beneficiary contact and no exact place."""
    from app.services.postings.editing import cancel_posting

    actor = Actor(user)
    provided = [kind for kind, policy in POLICIES.items() if policy.credited == PROVIDER]
    own = sa.or_(Posting.org_id.is_(None), Posting.kind.in_(provided))
    ids = list(
        db.session.scalars(
            sa.select(Posting.id)
            .where(Posting.author_id == user.id, own, Posting.status.in_(LIVE_POSTING_STATUSES))
            .order_by(Posting.id)
        )
    )
    for posting_id in ids:
        cancel_posting(actor, posting_id, commit=False)
    db.session.execute(
        sa.update(Posting)
        .where(Posting.author_id == user.id, Posting.org_id.is_(None))
        .values(beneficiary_name=None, beneficiary_phone=None, beneficiary_address=None)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


def _leave_orgs(user: User) -> int:
    rows = db.session.execute(
        sa.delete(OrgMember).where(OrgMember.user_id == user.id).returning(OrgMember.org_id)
    ).all()
    for (org_id,) in rows:
        db.session.execute(sa.update(Org).where(Org.id == org_id).values(member_count=Org.member_count - 1))
    return len(rows)


def _certificates(user: User) -> int:
    from app.services.certificates import erase_names

    return erase_names(user.id, ERASED_NAME)


def _delete(model, column) -> Callable[[User], int]:
    def step(user: User) -> int:
        return db.session.execute(
            sa.delete(model).where(column == user.id).execution_options(synchronize_session=False)
        ).rowcount

    return step


# Step → what it does to ``user``, in this order, in the erase's transaction;
# each answers how many rows it touched (the audit entry keeps the counts).
ERASURE: tuple[tuple[str, Callable[[User], int]], ...] = (
    ("profile", _profile),
    ("claims_withdrawn", _withdraw_live_claims),
    ("postings_cancelled", _end_own_postings),
    # Their uploads, avatar included, leave what they belong to; purge_photos deletes the files.
    ("photos", lambda user: photos.delete_user_photos(user.id)),
    ("org_memberships", _leave_orgs),
    ("join_requests", _delete(JoinRequest, JoinRequest.user_id)),
    ("community_report", _delete(CommunityReport, CommunityReport.user_id)),
    ("volunteer", _volunteer),
    ("volunteer_skills", _delete(VolunteerSkill, VolunteerSkill.user_id)),
    ("certificates_renamed", _certificates),
    ("consents", _delete(Consent, Consent.user_id)),
    ("devices", _delete(Device, Device.user_id)),
    ("refresh_tokens", _delete(RefreshToken, RefreshToken.user_id)),
    ("notifications", _delete(Notification, Notification.user_id)),
    ("push_windows", _delete(PushWindow, PushWindow.user_id)),
    ("calendar_feeds", _delete(CalendarFeed, CalendarFeed.user_id)),
    ("idempotency_keys", _delete(IdempotencyKey, IdempotencyKey.user_id)),
)


def erase(user: User) -> dict[str, int]:
    """Erase ``user`` (:data:`ERASURE`), in the caller's transaction; the counts of each step."""
    return {name: step(user) for name, step in ERASURE}
