"""Service records (志愿服务记录): written, held apart in time, approved, counted.

**An organisation's record** (谁组织谁记录, 谁记录谁证明). Every record names the
org that records it (:func:`recording_org_id`): the posting's org, or for an
org-less wish the org whose coordinator approved it; a service posted without
an org records nothing. A record is ``recorded`` at once only when a
coordinator of that org stands behind it — a check-out at the org's project or
charity activity (the server's clock and the geofence), or a confirmation by
one of its coordinators (or an admin). Everything else (a resident's
confirmation, honor hours, the scheduler's auto-confirmation and settlement)
is ``pending`` until a second person approves it (``Actor.require_may_approve``)
or rejects it with a reason. The org's coordinators are told of pending
records (``record_pending``), the volunteer of the outcome.

**What counts.** A record moves the volunteer's counters (credit and honor
minutes: hours, star level) and mints its energy (10 points per recorded
credit hour, whole half hours, and a confirmed wish's bonus) only when it
becomes ``recorded`` (:func:`_count_recorded`); a rejected one never does.

**Time never overlaps itself.** The windows (``started_at``..``ended_at``) of
one volunteer's non-rejected records never overlap. Every writer first takes
the volunteer's lock (:func:`hold_time`: their ``users`` row, ``FOR NO KEY
UPDATE`` on PostgreSQL; SQLite has one writer), then reads the windows near
the new one and writes — so two overlapping writes racing are serialised and
the second sees the first. A row lock rather than an exclusion constraint:
a check-out credits the part of its time not yet covered, which must be
computed from what is there, not merely refused; and the lock needs no
database extension and works the same on SQLite.

The volunteer's counters move by atomic UPDATE, never by read-modify-write.
``service_records.claim_id`` is unique, so no retry writes a claim's record twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import format_decimal, gettext

from app.clock import as_utc, utcnow, zone
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Claim, OrgMember, Posting, ServiceRecord, User, Volunteer
from app.models.base import MAX_ID
from app.outbox import notify_many
from app.policy import (
    COUNTED_RECORD_STATUSES,
    DONE_CLAIM_STATUSES,
    MAX_HONOR_MINUTES,
    POLICIES,
    RECORD_KINDS,
    TIME_HOLDING_RECORD_STATUSES,
    hours,
    longest_uncovered,
    minutes_between,
    points_for_minutes,
)
from app.services import energy
from app.services.audit import audit
from app.services.orgs import get_org
from app.services.pagination import paginate
from app.services.permissions import Actor, record_reviewers

__all__ = ["RECORD_KINDS"]  # re-exported for the schemas

# The record's evaluation when the confirmer wrote no feedback (服务评价).
RATING_WORDS = {5: "优秀", 4: "良好", 3: "合格", 2: "基本合格", 1: "不合格"}
# What recording a record needs to know of it.
_COUNTED = (
    ServiceRecord.id,
    ServiceRecord.volunteer_id,
    ServiceRecord.kind,
    ServiceRecord.minutes,
    ServiceRecord.claim_id,
    ServiceRecord.posting_id,
    ServiceRecord.posting_kind,
    ServiceRecord.org_id,
    ServiceRecord.activity,
)


def served_at() -> sa.ColumnElement[datetime]:
    """When a record's service took place, as SQL, for every period (months of a
    summary, an export's from/to, an org's figures, a certificate's period): its end."""
    return ServiceRecord.ended_at


def counted() -> sa.ColumnElement[bool]:
    """The records that count (hours, stats, exports, certificates): ``recorded`` ones."""
    return ServiceRecord.status.in_(COUNTED_RECORD_STATUSES)


def evaluation_for(rating: int | None, feedback: str | None) -> str | None:
    if feedback:
        return feedback
    return RATING_WORDS.get(rating) if rating is not None else None


def recording_org_id(posting: Posting) -> int | None:
    """The org that records the service of a claim on ``posting`` (None: nothing is recorded)."""
    return posting.org_id if posting.org_id is not None else posting.recording_org_id


def place_of(posting: Posting) -> str | None:
    """Where the service took place, as a person reads it: the address, else the district's name."""
    from app.districts import district_name

    if posting.address:
        return posting.address[:200]
    return district_name(posting.district, "zh-CN")


# --- time ---------------------------------------------------------------------------------------------------------


def hold_time(user_id: int) -> None:
    """Take the volunteer's lock before reading their windows and writing a record
    (or a rating): until the caller commits, nobody else writes one for them.

    PostgreSQL: the ``users`` row ``FOR NO KEY UPDATE`` (rows referencing the
    user may still be written meanwhile). SQLite: a write opens the one write
    transaction the database allows, so the reads after it see every record
    committed before it."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    else:
        db.session.execute(sa.text("UPDATE users SET id = id WHERE id = :id"), {"id": user_id})


def covered(user_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The windows of the volunteer's non-rejected records that overlap ``start``..``end``."""
    if not start < end:
        return []
    rows = db.session.execute(
        sa.select(ServiceRecord.started_at, ServiceRecord.ended_at).where(
            ServiceRecord.volunteer_id == user_id,
            ServiceRecord.status.in_(TIME_HOLDING_RECORD_STATUSES),
            ServiceRecord.ended_at > start,
            ServiceRecord.started_at < end,
            ServiceRecord.started_at < ServiceRecord.ended_at,
        )
    ).all()
    return [(as_utc(s), as_utc(e)) for s, e in rows]


def require_free_time(user_id: int, start: datetime, end: datetime) -> None:
    """409 ``overlapping_record`` when ``start``..``end`` overlaps one of the
    volunteer's non-rejected records (the caller rolls back)."""
    if covered(user_id, start, end):
        raise Conflict("overlapping_record")


def uncovered_stretch(user_id: int, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The longest part of ``start``..``end`` none of the volunteer's records covers."""
    return longest_uncovered(start, end, covered(user_id, start, end))


# --- writing ------------------------------------------------------------------------------------------------------


def write_credit_record(
    *,
    user_id: int,
    posting: Posting,
    claim_id: int,
    minutes: int,
    started_at: datetime,
    recorded_by: int | None,
    stood_behind_by: int | None,
    content: str | None = None,
    evaluation: str | None = None,
    rating: int | None = None,
) -> ServiceRecord | None:
    """Write the one credit record of a claim (the window ``started_at`` + ``minutes``)
    in the caller's transaction, which holds the volunteer's time and has checked
    the window is free.

    ``stood_behind_by``: the coordinator of the recording org (or admin) whose
    act makes it ``recorded`` at once; None: it is ``pending`` and the org's
    coordinators are told. Nothing is written when the posting has no
    recording org (a service posted without one). A claim that already has
    its record (a service fulfilled before confirmations were required) only
    gets the evaluation."""
    org_id = recording_org_id(posting)
    if org_id is None:
        return None
    existing = db.session.scalar(sa.select(ServiceRecord).where(ServiceRecord.claim_id == claim_id))
    if existing is not None:
        existing.evaluation = evaluation[:1000] if evaluation else existing.evaluation
        return existing
    now = utcnow()
    record = ServiceRecord(
        volunteer_id=user_id,
        posting_id=posting.id,
        claim_id=claim_id,
        org_id=org_id,
        kind="credit",
        status="recorded" if stood_behind_by is not None else "pending",
        posting_kind=posting.kind,
        activity=posting.title[:80],
        minutes=minutes,
        started_at=started_at,
        ended_at=started_at + timedelta(minutes=minutes),
        place=place_of(posting),
        content=(content or posting.description or "")[:2000] or None,
        evaluation=evaluation[:1000] if evaluation else None,
        rating=rating,
        recorded_by=recorded_by,
        approved_by=stood_behind_by,
        decided_at=now if stood_behind_by is not None else None,
        created_at=now,
    )
    db.session.add(record)
    db.session.flush()
    _after_written([record])
    return record


def _after_written(written: Sequence[ServiceRecord]) -> None:
    """Recorded ones count now; pending ones are told to their org's coordinators."""
    recorded = [r for r in written if r.status == "recorded"]
    if recorded:
        _count_recorded([tuple(getattr(r, c.key) for c in _COUNTED) for r in recorded])
    pending = [r for r in written if r.status == "pending"]
    if pending:
        tell_reviewers(pending)


def tell_reviewers(pending: Sequence[ServiceRecord]) -> None:
    """``record_pending`` to the coordinators of each record's org who may approve it
    (not its volunteer, not whoever made it); pushed at most once per
    ``REVIEW_PUSH_INTERVAL`` per coordinator, every one in the inbox."""
    reviewers = record_reviewers({r.org_id for r in pending if r.org_id is not None})
    names = dict(
        db.session.execute(
            sa.select(User.id, User.display_name).where(User.id.in_({r.volunteer_id for r in pending}))
        ).all()
    )
    notify_many(
        "record_pending",
        (
            (
                sorted(reviewers.get(r.org_id, set()) - {r.volunteer_id, r.recorded_by}),
                f"record:{r.id}",
                {
                    "volunteer": names.get(r.volunteer_id),
                    "activity": r.activity,
                    "minutes": r.minutes,
                    "org_id": r.org_id,
                    "record_id": r.id,
                    "posting_id": r.posting_id,
                },
            )
            for r in pending
        ),
    )


def _count_recorded(rows: Iterable[Sequence]) -> None:
    """Records just become ``recorded`` (rows of ``_COUNTED``): each volunteer's
    credit and honor minutes grow by theirs and their energy is minted (10 points
    per credit hour, whole half hours, and a confirmed wish's bonus) — for the
    whole batch, one UPDATE and one INSERT (``energy.credit_many``)."""
    counters: dict[int, dict[str, int]] = defaultdict(lambda: {"credit_minutes": 0, "honor_minutes": 0})
    entries: dict[int, list] = defaultdict(list)
    for _, user_id, kind, minutes, claim_id, posting_id, posting_kind, _, _ in rows:
        counters[user_id][f"{kind}_minutes"] += minutes
        if kind != "credit" or claim_id is None:
            continue
        entries[user_id].append((points_for_minutes(minutes), "service_hours", claim_id, posting_id))
        bonus = POLICIES[posting_kind].confirm_bonus_points if posting_kind in POLICIES else 0
        entries[user_id].append((bonus, "wish_confirmed", claim_id, posting_id))
    energy.credit_many(dict(entries), dict(counters))


# --- honor hours ----------------------------------------------------------------------------------------------------


def add_honor_record(actor: Actor, org_id: int, data: dict) -> ServiceRecord:
    """Honor hours (荣誉时长) given by a coordinator of ``org_id`` to one of its
    volunteers, with a reason: at most 24 hours a record, never to themself, each
    in the audit log. The record is ``pending`` until a second person of the org
    approves it; its window (``started_at``..``ended_at``, or the minutes before
    the award) may not overlap the volunteer's other records (409
    ``overlapping_record``). Recorded, it adds to ``honor_minutes`` only."""
    org = get_org(org_id)
    user_id = data["volunteer_id"]
    actor.require_may_award(org.id, user_id)
    minutes = data["minutes"]
    if not 0 < minutes <= MAX_HONOR_MINUTES:
        raise Invalid(
            "minutes",
            gettext(
                "From 1 to %(most)s minutes (%(hours)s hours) a record.",
                most=format_decimal(MAX_HONOR_MINUTES),
                hours=format_decimal(MAX_HONOR_MINUTES // 60),
            ),
        )
    if db.session.scalar(sa.select(Volunteer.id).where(Volunteer.user_id == user_id)) is None:
        raise Invalid("volunteer_id", gettext("This user is not a registered volunteer."), slug="volunteer_required")
    if not _serves_org(user_id, org.id):
        raise Invalid(
            "volunteer_id", gettext("This user is not a volunteer of the organisation."), slug="not_org_volunteer"
        )
    now = utcnow()
    started_at, ended_at = _honor_window(data.get("started_at"), data.get("ended_at"), minutes, now)
    hold_time(user_id)
    try:
        require_free_time(user_id, started_at, ended_at)
    except Conflict:
        db.session.rollback()
        raise
    record = ServiceRecord(
        volunteer_id=user_id,
        org_id=org.id,
        kind="honor",
        status="pending",
        activity=(data.get("activity") or "荣誉时长")[:80],
        minutes=minutes,
        started_at=started_at,
        ended_at=ended_at,
        place=data.get("place") or _district_place(org.district),
        content=data["reason"],
        recorded_by=actor.id,
        created_at=now,
    )
    db.session.add(record)
    db.session.flush()
    audit(
        actor.id,
        "record.honor",
        "service_record",
        record.id,
        volunteer_id=user_id,
        org_id=org.id,
        minutes=minutes,
        reason=data["reason"],
    )
    _after_written([record])
    db.session.commit()
    return record


def _district_place(code: str) -> str:
    from app.districts import district_name

    return district_name(code, "zh-CN")


def _honor_window(
    started_at: datetime | None, ended_at: datetime | None, minutes: int, now: datetime
) -> tuple[datetime, datetime]:
    """The window an award covers: ``started_at``..``ended_at`` when both are given
    (at least ``minutes`` long), else ``minutes`` from the one given, else the
    ``minutes`` before now; never in the future."""
    span = timedelta(minutes=minutes)
    if started_at and ended_at and ended_at < started_at:
        raise Invalid("ended_at", gettext("Must not be before started_at."))
    if (ended_at or started_at or now) > now:
        raise Invalid("ended_at" if ended_at else "started_at", gettext("Must not be in the future."))
    if started_at and ended_at:
        if minutes_between(started_at, ended_at) < minutes:
            raise Invalid(
                "minutes",
                gettext(
                    "At most the %(minutes)s minutes from started_at to ended_at.",
                    minutes=format_decimal(minutes_between(started_at, ended_at)),
                ),
            )
        return started_at, ended_at
    if started_at:
        if started_at + span > now:
            raise Invalid("minutes", gettext("The time given runs into the future."))
        return started_at, started_at + span
    end = ended_at or now
    return end - span, end


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


# --- review: approve, reject ---------------------------------------------------------------------------------------


def get_record(actor: Actor, record_id: int) -> ServiceRecord:
    """The record as ``actor`` may see it (its volunteer, the org's coordinators, admins); 404 otherwise."""
    record = db.session.get(ServiceRecord, record_id) if 0 < record_id <= MAX_ID else None
    if record is None or not actor.may_see_record(record):
        raise NotFound()
    return record


def approve_record(actor: Actor, record_id: int) -> ServiceRecord:
    """pending → recorded, by a second person of the recording org; it counts from
    now on (hours, energy) and the volunteer is told (``record_approved``)."""
    record = get_record(actor, record_id)
    actor.require_may_approve(record)
    rows = _decide([record.id], actor, "recorded", record.org_id)
    if not rows:
        db.session.rollback()
        raise Conflict("record_not_pending")
    _count_recorded(rows)
    _tell_outcome("record_approved", rows, None)
    audit(actor.id, "record.approve", "service_record", record.id)
    db.session.commit()
    return db.session.get(ServiceRecord, record.id, populate_existing=True)


def reject_record(actor: Actor, record_id: int, reason: str) -> ServiceRecord:
    """pending → rejected with a reason the volunteer is told (``record_rejected``);
    it never counts, and its window is free again."""
    record = get_record(actor, record_id)
    actor.require_may_reject(record)
    reason = reason.strip()
    rows = _decide([record.id], actor, "rejected", record.org_id, reject_reason=reason)
    if not rows:
        db.session.rollback()
        raise Conflict("record_not_pending")
    _tell_outcome("record_rejected", rows, reason)
    audit(actor.id, "record.reject", "service_record", record.id, reason=reason)
    db.session.commit()
    return db.session.get(ServiceRecord, record.id, populate_existing=True)


def approve_records(actor: Actor, org_id: int, ids: Sequence[int]) -> dict[str, list[int]]:
    """Approve many of the org's pending records at once (at most
    ``MAX_BULK_APPROVAL``, the schema's rule): ``{approved, skipped}``, each in
    the order given. Skipped: ids of no record, of another org, not pending,
    or that the caller may not approve (their own, or made by them)."""
    org = get_org(org_id)
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")
    wanted = [i for i in dict.fromkeys(ids) if 0 < i <= MAX_ID]
    rows = _decide(wanted, actor, "recorded", org.id, actor.approvable_records()) if wanted else []
    _count_recorded(rows)
    _tell_outcome("record_approved", rows, None)
    approved = {row[0] for row in rows}
    for record_id in sorted(approved):
        audit(actor.id, "record.approve", "service_record", record_id)
    db.session.commit()
    return {
        "approved": [i for i in dict.fromkeys(ids) if i in approved],
        "skipped": [i for i in dict.fromkeys(ids) if i not in approved],
    }


def _decide(ids: Sequence[int], actor: Actor, status: str, org_id: int | None, *rule, **values) -> list:
    """One conditional UPDATE: the records of ``ids`` still pending in ``org_id``
    (and meeting ``rule``) → ``status``; their ``_COUNTED`` columns. The rows are
    locked in id order first, so two bulk approvals never wait on each other in a circle."""
    where = (
        ServiceRecord.id.in_(sorted(ids)),
        ServiceRecord.status == "pending",
        ServiceRecord.org_id == org_id,
        *rule,
    )
    locked = db.session.scalars(
        sa.select(ServiceRecord.id).where(*where).order_by(ServiceRecord.id).with_for_update()
    ).all()
    if not locked:
        return []
    return db.session.execute(
        sa.update(ServiceRecord)
        .where(ServiceRecord.id.in_(locked), ServiceRecord.status == "pending")
        .values(status=status, approved_by=actor.id, decided_at=utcnow(), **values)
        .returning(*_COUNTED)
        .execution_options(synchronize_session=False)
    ).all()


def _tell_outcome(kind: str, rows: Sequence, reason: str | None) -> None:
    context = {"reason": reason} if reason else {}
    notify_many(
        kind,
        (
            (
                [row[1]],
                f"record:{row[0]}",
                {
                    "activity": row[8],
                    "minutes": row[3],
                    "org_id": row[7],
                    "record_id": row[0],
                    "posting_id": row[5],
                    "claim_id": row[4],
                    **context,
                },
            )
            for row in rows
        ),
    )


# --- reading ----------------------------------------------------------------------------------------------------------


def list_records(
    user: User, *, kind: str | None, status: str | None, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """The user's records of every status (``?status=`` filters), newest first."""
    stmt = sa.select(ServiceRecord).where(ServiceRecord.volunteer_id == user.id)
    if kind:
        stmt = stmt.where(ServiceRecord.kind == kind)
    if status:
        stmt = stmt.where(ServiceRecord.status == status)
    return paginate(db.session, stmt, [(ServiceRecord.id, True)], cursor, limit, lambda r: [r.id])


def records_summary(user: User) -> dict:
    """Hours by record kind (credit/honor), by posting kind and by month, of the
    ``recorded`` records; the minutes still pending approval beside them.

    Months are calendar months in the user's time zone (``DEFAULT_TIMEZONE``
    when unset), by when the service ended. Figures come from the records; the
    star level from the volunteer's counters, which the recorded records fill.
    """
    tz = zone(user.timezone)
    rows = db.session.execute(
        sa.select(
            ServiceRecord.kind,
            ServiceRecord.posting_kind,
            ServiceRecord.minutes,
            ServiceRecord.status,
            served_at(),
        ).where(ServiceRecord.volunteer_id == user.id, ServiceRecord.status.in_(TIME_HOLDING_RECORD_STATUSES))
    ).all()
    by_kind = dict.fromkeys(RECORD_KINDS, 0)
    by_posting_kind: dict[str, int] = {}
    by_month: dict[str, dict[str, int]] = {}
    pending = 0
    records = 0
    for kind, posting_kind, minutes, status, when in rows:
        if status not in COUNTED_RECORD_STATUSES:
            pending += minutes
            continue
        records += 1
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
        "pending_hours": hours(pending),
        "pending_minutes": pending,
        "records": records,
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
    actor: Actor, org_id: int, *, kind: str | None, status: str | None, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """The records the org records, oldest first by ``created_at`` (``status=pending``:
    its review queue), for its coordinators and admins."""
    org = get_org(org_id)
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")
    stmt = sa.select(ServiceRecord).where(ServiceRecord.org_id == org.id)
    if status:
        stmt = stmt.where(ServiceRecord.status == status)
    if kind:
        stmt = stmt.where(ServiceRecord.kind == kind)
    order = [(ServiceRecord.created_at, False), (ServiceRecord.id, False)]
    return paginate(db.session, stmt, order, cursor, limit, lambda r: [r.created_at, r.id])
