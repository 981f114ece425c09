"""Service records (志愿服务记录): credit hours, honor hours and their summary.

A credit record is written by the claim that earned it (a confirmed wish, a
checked-out project or charity, a completed service) in that claim's
transaction; ``service_records.claim_id`` is unique, so no retry writes two.
Honor records come only from an organisation's coordinators and move only
``honor_minutes``. The volunteer's counters move by atomic UPDATE, never by
read-modify-write.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_babel import format_decimal, gettext

from app.clock import as_utc, utcnow, zone
from app.errors import Forbidden, Invalid
from app.extensions import db
from app.models import Claim, OrgMember, Posting, ServiceRecord, User, Volunteer
from app.policy import DONE_CLAIM_STATUSES, MAX_HONOR_MINUTES, hours, points_for_minutes
from app.services import energy
from app.services.audit import audit
from app.services.orgs import get_org
from app.services.pagination import paginate
from app.services.permissions import Actor

RECORD_KINDS = ("credit", "honor")
# The record's evaluation when the confirmer wrote no feedback (服务评价).
RATING_WORDS = {5: "优秀", 4: "良好", 3: "合格", 2: "基本合格", 1: "不合格"}


def served_at() -> sa.ColumnElement[datetime]:
    """When a record's service took place, as SQL, for every period (months of a
    summary, an export's from/to, an org's figures, a certificate's period): its
    end, else its start, else when it was recorded (an honor record may carry neither)."""
    return sa.func.coalesce(ServiceRecord.ended_at, ServiceRecord.started_at, ServiceRecord.created_at)


def evaluation_for(rating: int | None, feedback: str | None) -> str | None:
    if feedback:
        return feedback
    return RATING_WORDS.get(rating) if rating is not None else None


def write_credit_record(
    *,
    user_id: int,
    posting: Posting,
    claim_id: int,
    minutes: int,
    started_at: datetime | None,
    ended_at: datetime | None,
    recorded_by: int | None,
    content: str | None = None,
    evaluation: str | None = None,
    rating: int | None = None,
    bonus_points: int = 0,
) -> ServiceRecord:
    """Write the one credit record of a claim, add its minutes to the volunteer's
    credit hours, pay its energy and count its rating (the confirmer's, 1-5;
    none when the scheduler confirmed) towards the volunteer's reputation, all
    in the caller's transaction.

    Energy is 10 points per credited hour, whole half hours only (ledger reason
    ``service_hours``), plus ``bonus_points`` (reason ``wish_confirmed``). A
    user without a volunteer profile (a coordinator providing a service) gets
    the record but no counters. A claim that already has its record (a service
    fulfilled before confirmations were required) only gets the evaluation and rating.
    """
    existing = db.session.scalar(sa.select(ServiceRecord).where(ServiceRecord.claim_id == claim_id))
    if existing is not None:
        existing.evaluation = evaluation[:1000] if evaluation else existing.evaluation
        if rating is not None:
            _count_rating(existing.volunteer_id, rating, replacing=existing.rating)
            existing.rating = rating
        return existing
    record = ServiceRecord(
        volunteer_id=user_id,
        posting_id=posting.id,
        claim_id=claim_id,
        org_id=posting.org_id,
        kind="credit",
        posting_kind=posting.kind,
        activity=posting.title[:80],
        minutes=minutes,
        started_at=started_at,
        ended_at=ended_at,
        place=_place_of(posting),
        content=(content or posting.description or "")[:2000] or None,
        evaluation=evaluation[:1000] if evaluation else None,
        rating=rating,
        recorded_by=recorded_by,
        created_at=utcnow(),
    )
    db.session.add(record)
    db.session.flush()
    if minutes:
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == user_id)
            .values(credit_minutes=Volunteer.credit_minutes + minutes)
            .execution_options(synchronize_session=False)
        )
        energy.credit(
            user_id, points_for_minutes(minutes), reason="service_hours", claim_id=claim_id, posting_id=posting.id
        )
    if bonus_points:
        energy.credit(user_id, bonus_points, reason="wish_confirmed", claim_id=claim_id, posting_id=posting.id)
    if rating is not None:
        _count_rating(user_id, rating)
    return record


def _count_rating(user_id: int, rating: int, replacing: int | None = None) -> None:
    """The volunteer's reputation takes in one more rating of their work (or one
    rating in place of the record's earlier one); an atomic UPDATE, like the hours."""
    values = {"rating_total": Volunteer.rating_total + rating - (replacing or 0)}
    if replacing is None:
        values["rating_count"] = Volunteer.rating_count + 1
    db.session.execute(
        sa.update(Volunteer)
        .where(Volunteer.user_id == user_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _place_of(posting: Posting) -> str | None:
    if posting.address:
        return posting.address[:200]
    return posting.district


def add_honor_record(actor: Actor, org_id: int, data: dict) -> ServiceRecord:
    """Honor hours (荣誉时长) given by a coordinator of ``org_id`` to one of its
    volunteers, with a reason: at most 24 hours a record, never to themself,
    each one in the audit log. They add to ``honor_minutes`` only."""
    org = get_org(org_id)
    user_id = data["volunteer_id"]
    actor.require_may_award(org.id, user_id)
    if not 0 < data["minutes"] <= MAX_HONOR_MINUTES:
        raise Invalid(
            "minutes",
            gettext("From 1 to %(most)s minutes (24 hours) a record.", most=format_decimal(MAX_HONOR_MINUTES)),
        )
    if db.session.scalar(sa.select(Volunteer.id).where(Volunteer.user_id == user_id)) is None:
        raise Invalid("volunteer_id", gettext("This user is not a registered volunteer."), slug="volunteer_required")
    if not _serves_org(user_id, org.id):
        raise Invalid(
            "volunteer_id", gettext("This user is not a volunteer of the organisation."), slug="not_org_volunteer"
        )
    now = utcnow()
    started_at, ended_at = data.get("started_at"), data.get("ended_at")
    if started_at and ended_at and ended_at < started_at:
        raise Invalid("ended_at", gettext("Must not be before started_at."))
    if (ended_at or started_at or now) > now:
        raise Invalid("ended_at" if ended_at else "started_at", gettext("Must not be in the future."))
    record = ServiceRecord(
        volunteer_id=user_id,
        org_id=org.id,
        kind="honor",
        activity=(data.get("activity") or "荣誉时长")[:80],
        minutes=data["minutes"],
        started_at=started_at,
        ended_at=ended_at,
        place=data.get("place") or org.district,
        content=data["reason"],
        recorded_by=actor.id,
        created_at=now,
    )
    db.session.add(record)
    db.session.flush()
    db.session.execute(
        sa.update(Volunteer)
        .where(Volunteer.user_id == user_id)
        .values(honor_minutes=Volunteer.honor_minutes + data["minutes"])
        .execution_options(synchronize_session=False)
    )
    audit(
        actor.id,
        "record.honor",
        "service_record",
        record.id,
        volunteer_id=user_id,
        org_id=org.id,
        minutes=data["minutes"],
        reason=data["reason"],
    )
    db.session.commit()
    return record


def _serves_org(user_id: int, org_id: int) -> bool:
    """A member of the org, or someone who has served on one of its postings."""
    member = db.session.scalar(
        sa.select(OrgMember.id).where(OrgMember.org_id == org_id, OrgMember.user_id == user_id).limit(1)
    )
    if member is not None:
        return True
    served = db.session.scalar(
        sa.select(Claim.id)
        .join(Posting, Posting.id == Claim.posting_id)
        .where(Claim.user_id == user_id, Posting.org_id == org_id, Claim.status.in_(DONE_CLAIM_STATUSES))
        .limit(1)
    )
    return served is not None


def list_records(user: User, *, kind: str | None, cursor: str | None, limit: int) -> tuple[list, str | None]:
    """The user's records, newest first."""
    stmt = sa.select(ServiceRecord).where(ServiceRecord.volunteer_id == user.id)
    if kind:
        stmt = stmt.where(ServiceRecord.kind == kind)
    return paginate(db.session, stmt, [(ServiceRecord.id, True)], cursor, limit, lambda r: [r.id])


def records_summary(user: User) -> dict:
    """Hours by record kind (credit/honor), by posting kind and by month.

    Months are calendar months in the user's time zone (``DEFAULT_TIMEZONE``
    when unset), by when the service ended. Figures come from the records; the
    star level from the volunteer's counters, which the records fill.
    """
    tz = zone(user.timezone)
    rows = db.session.execute(
        sa.select(
            ServiceRecord.kind,
            ServiceRecord.posting_kind,
            ServiceRecord.minutes,
            served_at(),
        ).where(ServiceRecord.volunteer_id == user.id)
    ).all()
    by_kind = dict.fromkeys(RECORD_KINDS, 0)
    by_posting_kind: dict[str, int] = {}
    by_month: dict[str, dict[str, int]] = {}
    for kind, posting_kind, minutes, when in rows:
        by_kind[kind] = by_kind.get(kind, 0) + minutes
        if kind == "credit" and posting_kind:
            by_posting_kind[posting_kind] = by_posting_kind.get(posting_kind, 0) + minutes
        month = as_utc(when).astimezone(tz).strftime("%Y-%m")
        bucket = by_month.setdefault(month, dict.fromkeys(RECORD_KINDS, 0) | {"records": 0})
        bucket[kind] = bucket.get(kind, 0) + minutes
        bucket["records"] += 1
    volunteer = user.volunteer
    return {
        "credit_hours": hours(by_kind["credit"]),
        "honor_hours": hours(by_kind["honor"]),
        "total_hours": hours(by_kind["credit"] + by_kind["honor"]),
        "credit_minutes": by_kind["credit"],
        "honor_minutes": by_kind["honor"],
        "records": len(rows),
        "star_level": volunteer.star_level if volunteer is not None else 0,
        "by_kind": {kind: hours(minutes) for kind, minutes in by_kind.items()},
        "by_posting_kind": {kind: hours(minutes) for kind, minutes in sorted(by_posting_kind.items())},
        "by_month": [
            {
                "month": month,
                "credit_hours": hours(bucket["credit"]),
                "honor_hours": hours(bucket["honor"]),
                "credit_minutes": bucket["credit"],
                "honor_minutes": bucket["honor"],
                "records": bucket["records"],
            }
            for month, bucket in sorted(by_month.items())
        ],
    }


def list_org_records(
    actor: Actor, org_id: int, *, kind: str | None, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """An org's records (its postings' credit records and the honor records it
    gave), newest first, for its coordinators and admins."""
    org = get_org(org_id)
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")
    stmt = sa.select(ServiceRecord).where(ServiceRecord.org_id == org.id)
    if kind:
        stmt = stmt.where(ServiceRecord.kind == kind)
    return paginate(db.session, stmt, [(ServiceRecord.id, True)], cursor, limit, lambda r: [r.id])
