"""Claims (认领): race-free claiming and the claim state machine.

Every transition is a conditional UPDATE whose WHERE clause is the rule
("only an active claim can be withdrawn"), never a read-check-write in Python.
When a guard refuses, the transaction is rolled back first and only then is
the row read again to say which rule it was.

Claim states::

    active ──fulfil──▶ fulfilled ──confirm──▶ confirmed        (wish, service)
    active ──confirm (hand-over)──▶ confirmed                   (energy)
    active ──check-in, check-out──▶ confirmed                   (project, charity)
    waitlisted ──a place frees──▶ active                        (project, charity)
    active | waitlisted ──withdraw──▶ withdrawn
    active ──no-show (after the end, not checked in)──▶ no_show
    active ──overdue (scheduler)──▶ released                    (wish)
    live ──posting cancelled──▶ cancelled

Posting counters: ``claimed_count`` counts the claims that hold or held a
place — ``active``, ``fulfilled``, ``confirmed`` and ``no_show`` — and only
``withdrawn``, ``released`` and ``cancelled`` give a place back;
``waitlist_count`` counts ``waitlisted`` claims. Lock order, everywhere:
the new claim row, then the posting row, then other claim rows, then the
volunteer row — so two transactions never wait on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.geo import haversine_km
from app.models import Claim, Posting, ServiceRecord, User, Volunteer
from app.services import energy, records
from app.services.pagination import paginate
from app.services.permissions import coordinates_in_district, is_coordinator_of
from notifications import notify

LIVE = ("active", "waitlisted", "fulfilled")
# Volunteer.active_wish_claims counts a volunteer's wish claims in status
# "active" (taken, not yet fulfilled); it is the guard of the per-volunteer limit.

# Kinds whose claimant must be a registered volunteer; a service is booked by any resident.
VOLUNTEER_KINDS = ("wish", "project", "charity", "energy")
# Kinds whose claims beyond capacity wait in line rather than being refused.
WAITLIST_KINDS = ("project", "charity")
# Kinds finished by checking in and out on site.
ON_SITE_KINDS = ("project", "charity")
CHECK_IN_RADIUS_KM = 0.5
CHECK_IN_OPENS_BEFORE = timedelta(minutes=30)
DEFAULT_CLAIM_TTL_HOURS = 168


# --- who may see and act -----------------------------------------------------


@dataclass
class ClaimAccess:
    """A claim, its posting, and what the acting user is to them."""

    claim: Claim
    posting: Posting
    is_claimant: bool
    is_poster: bool
    is_coordinator: bool
    is_admin: bool

    @property
    def manages_posting(self) -> bool:
        """The poster, a coordinator responsible for the posting, or an admin."""
        return self.is_poster or self.is_coordinator or self.is_admin


def _coordinates(user: User, posting: Posting) -> bool:
    """A coordinator of the posting's org; for a posting without an org (a
    resident's wish), a coordinator of an org of its district."""
    if posting.org_id is not None:
        return is_coordinator_of(user, posting.org_id)
    return coordinates_in_district(user, posting.district)


def claim_access(user: User, claim_id: int) -> ClaimAccess:
    """The claim as ``user`` may see it: 404 unless they are its claimant, the
    poster, a coordinator of the posting or an admin."""
    claim = db.session.get(Claim, claim_id)
    if claim is None:
        raise NotFound()
    posting = db.session.get(Posting, claim.posting_id)
    if posting is None:
        raise NotFound()
    access = ClaimAccess(
        claim=claim,
        posting=posting,
        is_claimant=claim.user_id == user.id,
        is_poster=posting.author_id == user.id,
        is_coordinator=_coordinates(user, posting),
        is_admin=user.is_admin,
    )
    if not (access.is_claimant or access.manages_posting):
        raise NotFound()
    return access


def get_claim(user: User, claim_id: int) -> Claim:
    return claim_access(user, claim_id).claim


def list_my_claims(
    user: User, *, statuses: Sequence[str] | None, cursor: str | None, limit: int
) -> tuple[list[Claim], str | None]:
    """The user's claims, newest first, each with ``posting_brief`` attached."""
    stmt = sa.select(Claim).where(Claim.user_id == user.id)
    if statuses:
        stmt = stmt.where(Claim.status.in_(statuses))
    items, next_cursor = paginate(db.session, stmt, [(Claim.id, True)], cursor, limit, lambda c: [c.id])
    attach_postings(items)
    return items, next_cursor


def list_posting_claims(
    user: User, posting_id: int, *, statuses: Sequence[str] | None, cursor: str | None, limit: int
) -> tuple[list[Claim], str | None]:
    """A posting's claims in sign-up order (the waitlist's order too), for its
    poster, its coordinators and admins."""
    posting = db.session.get(Posting, posting_id)
    if posting is None:
        raise NotFound()
    if not (posting.author_id == user.id or user.is_admin or _coordinates(user, posting)):
        raise Forbidden("poster_required")
    stmt = sa.select(Claim).where(Claim.posting_id == posting.id)
    if statuses:
        stmt = stmt.where(Claim.status.in_(statuses))
    return paginate(db.session, stmt, [(Claim.id, False)], cursor, limit, lambda c: [c.id])


def attach_postings(claims: Sequence[Claim]) -> None:
    """Load the postings of ``claims`` in one query as ``claim.posting_brief``."""
    ids = {c.posting_id for c in claims}
    postings = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_(ids)))} if ids else {}
    for claim in claims:
        claim.posting_brief = postings.get(claim.posting_id)


# --- claiming ------------------------------------------------------------------


def claim_posting(user: User, posting_id: int, message: str | None = None) -> Claim:
    """Claim a posting (认领 / 报名 / 预约 / 兑换) in one transaction.

    The INSERT of the claim is guarded by the unique index of live claims per
    (posting, user); the place by a conditional UPDATE of the posting's
    counters; a wish by the volunteer's active-claim allowance; an energy
    reward by the balance. Any refusal rolls everything back.
    """
    # The columns a claim needs, none of which changes once a posting can be
    # claimed (PATCH is refused then); its state is left to the guarded UPDATE.
    posting = db.session.execute(
        sa.select(Posting.kind, Posting.title, Posting.author_id, Posting.energy_cost, Posting.claim_ttl_hours).where(
            Posting.id == posting_id
        )
    ).first()
    if posting is None:
        raise NotFound()
    kind, title, author_id = posting.kind, posting.title, posting.author_id
    if author_id == user.id:
        raise Forbidden("own_posting")
    if kind in VOLUNTEER_KINDS and user.volunteer is None:
        raise Forbidden("volunteer_required")
    cost = posting.energy_cost or 0
    ttl_hours = posting.claim_ttl_hours or current_app.config.get("DEFAULT_CLAIM_TTL_HOURS", DEFAULT_CLAIM_TTL_HOURS)
    now = utcnow()

    claim = Claim(
        posting_id=posting_id,
        user_id=user.id,
        kind=kind,
        status="active",
        message=message,
        claimed_at=now,
        photo_urls=[],
        due_at=now + timedelta(hours=ttl_hours) if kind == "wish" else None,
    )
    db.session.add(claim)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("duplicate_claim") from None

    place = _take_place(posting_id, kind, now)
    if place is None:
        db.session.rollback()
        raise _why_not_taken(posting_id, kind, now)
    claim.status = place
    if kind == "wish" and not _take_wish_allowance(user.id):
        db.session.rollback()
        raise Conflict("active_claim_limit")
    if kind == "energy" and cost:
        if energy.debit(user.id, cost, reason="redeem", claim_id=claim.id, posting_id=posting_id) is None:
            db.session.rollback()
            raise Conflict("insufficient_energy")
        claim.energy_debited = cost
    if kind == "wish":
        notify(
            [author_id],
            "wish_claimed",
            dedupe=f"claim:{claim.id}",
            title=title,
            volunteer=user.display_name,
            posting_id=posting_id,
            claim_id=claim.id,
        )
    _commit_keeping_loaded()
    return claim


def _commit_keeping_loaded() -> None:
    """Commit without expiring what the session holds: the claim just written is
    exactly what is returned, so reading it back would be a wasted round trip."""
    session = db.session()
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def _open_for_claims(posting_id: int, kind: str, now: datetime) -> list[sa.ColumnElement[bool]]:
    conditions = [
        Posting.id == posting_id,
        sa.or_(Posting.expires_at.is_(None), Posting.expires_at > now),
    ]
    if kind in ON_SITE_KINDS:
        conditions.append(sa.or_(Posting.ends_at.is_(None), Posting.ends_at > now))
    return conditions


def _take_place(posting_id: int, kind: str, now: datetime) -> str | None:
    """Take a place (``"active"``), a place in line (``"waitlisted"``) or nothing (None)."""
    window = _open_for_claims(posting_id, kind, now)
    has_room = sa.or_(Posting.capacity.is_(None), Posting.claimed_count < Posting.capacity)
    if kind == "wish":
        new_status: sa.ColumnElement | str = "claimed"
    else:
        new_status = sa.case(
            (sa.and_(Posting.capacity.is_not(None), Posting.claimed_count + 1 >= Posting.capacity), "full"),
            else_=Posting.status,
        )
    # A place may free between the two statements; a second round takes it.
    for _ in range(2):
        taken = db.session.execute(
            sa.update(Posting)
            .where(*window, Posting.status == "open", has_room)
            .values(claimed_count=Posting.claimed_count + 1, status=new_status)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken:
            return "active"
        if kind not in WAITLIST_KINDS:
            return None
        queued = db.session.execute(
            sa.update(Posting)
            .where(
                *window,
                Posting.status.in_(("open", "full")),
                Posting.capacity.is_not(None),
                Posting.claimed_count >= Posting.capacity,
            )
            .values(waitlist_count=Posting.waitlist_count + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if queued:
            return "waitlisted"
    return None


def _why_not_taken(posting_id: int, kind: str, now: datetime) -> AppError:
    """After the rollback: which rule refused the place."""
    posting = db.session.get(Posting, posting_id)
    if posting is None:
        return NotFound()
    if kind == "wish" and posting.status == "claimed":
        return Conflict("already_claimed")
    window_open = (posting.expires_at is None or posting.expires_at > now) and (
        kind not in ON_SITE_KINDS or posting.ends_at is None or posting.ends_at > now
    )
    full = posting.capacity is not None and posting.claimed_count >= posting.capacity
    if window_open and (posting.status == "full" or (posting.status == "open" and full)):
        return Conflict("posting_full")
    return Conflict("posting_not_open")


def _take_wish_allowance(user_id: int) -> bool:
    limit = current_app.config["ACTIVE_WISH_CLAIM_LIMIT"]
    return bool(
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == user_id, Volunteer.active_wish_claims < limit)
            .values(active_wish_claims=Volunteer.active_wish_claims + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


# --- giving places back ----------------------------------------------------------


def withdraw_claim(user: User, claim_id: int) -> Claim:
    """The claimant gives the claim up (取消认领 / 取消报名). An active claim frees
    its place — the oldest waitlisted claim takes it — and is refunded its
    energy; a wish reopens. A checked-in claim cannot be withdrawn."""
    access = claim_access(user, claim_id)
    if not access.is_claimant:
        raise Forbidden("claimant_required")
    posting = access.posting
    posting_id, kind, title = posting.id, posting.kind, posting.title
    debited = access.claim.energy_debited
    now = utcnow()
    if kind in ON_SITE_KINDS and posting.ends_at is not None and now >= posting.ends_at:
        raise Conflict("event_ended")

    _lock_posting(posting_id)
    if _move(claim_id, ("waitlisted",), Claim.user_id == user.id, status="withdrawn", ended_at=now):
        db.session.execute(
            sa.update(Posting)
            .where(Posting.id == posting_id, Posting.waitlist_count > 0)
            .values(waitlist_count=Posting.waitlist_count - 1)
            .execution_options(synchronize_session=False)
        )
    elif _move(
        claim_id, ("active",), Claim.user_id == user.id, Claim.check_in_at.is_(None), status="withdrawn", ended_at=now
    ):
        give_back_place(posting_id, kind, title)
        if kind == "wish":
            release_wish_slots([user.id])
        if debited:
            energy.refund(user.id, debited, reason="refund_withdrawn", claim_id=claim_id, posting_id=posting_id)
    else:
        db.session.rollback()
        claim = db.session.get(Claim, claim_id)
        if claim.status == "active" and claim.check_in_at is not None:
            raise Conflict("already_checked_in")
        raise Conflict("claim_not_active")
    db.session.commit()
    return db.session.get(Claim, claim_id)


def give_back_place(posting_id: int, kind: str, title: str) -> int | None:
    """A claim holding a place has let it go: the oldest waitlisted claim takes
    it (and is told), or the posting gets the place back and reopens. Returns
    the promoted claim's id. Runs in the caller's transaction, which holds the
    posting row."""
    if kind in WAITLIST_KINDS:
        promoted = _promote_oldest_waitlisted(posting_id)
        if promoted is not None:
            claim_id, user_id = promoted
            db.session.execute(
                sa.update(Posting)
                .where(Posting.id == posting_id, Posting.waitlist_count > 0)
                .values(waitlist_count=Posting.waitlist_count - 1)
                .execution_options(synchronize_session=False)
            )
            notify(
                [user_id],
                "waitlist_promoted",
                dedupe=f"claim:{claim_id}",
                title=title,
                posting_id=posting_id,
                claim_id=claim_id,
            )
            return claim_id
    db.session.execute(
        sa.update(Posting)
        .where(Posting.id == posting_id, Posting.claimed_count > 0)
        .values(
            claimed_count=Posting.claimed_count - 1,
            status=sa.case((Posting.status.in_(("claimed", "full")), "open"), else_=Posting.status),
        )
        .execution_options(synchronize_session=False)
    )
    return None


def _promote_oldest_waitlisted(posting_id: int) -> tuple[int, int] | None:
    # SKIP LOCKED: two withdrawals at once promote two different claims, and a
    # waitlisted claimant withdrawing right now is passed over, not waited for.
    waiting = so.aliased(Claim)
    oldest = (
        sa.select(waiting.id)
        .where(waiting.posting_id == posting_id, waiting.status == "waitlisted")
        .order_by(waiting.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    row = db.session.execute(
        sa.update(Claim)
        .where(Claim.id == oldest, Claim.status == "waitlisted")
        .values(status="active")
        .returning(Claim.id, Claim.user_id)
        .execution_options(synchronize_session=False)
    ).first()
    return (row[0], row[1]) if row else None


def _lock_posting(posting_id: int) -> None:
    """Take the posting's row lock before any claim row (PostgreSQL; SQLite's
    single writer needs none), the order every claim transaction uses."""
    db.session.execute(sa.select(Posting.id).where(Posting.id == posting_id).with_for_update())


def cancel_claims_for_posting(posting: Posting) -> int:
    """The posting went away: its live claims become ``cancelled``, energy is
    refunded and the volunteers are told. Runs in the caller's transaction."""
    now = utcnow()
    cancelled = 0
    for from_status in LIVE:
        rows = db.session.execute(
            sa.update(Claim)
            .where(Claim.posting_id == posting.id, Claim.status == from_status)
            .values(status="cancelled", ended_at=now)
            .returning(Claim.id, Claim.user_id, Claim.energy_debited)
            .execution_options(synchronize_session=False)
        ).all()
        for claim_id, user_id, debited in rows:
            if debited:
                energy.refund(user_id, debited, claim_id=claim_id, posting_id=posting.id, reason="refund_cancelled")
            notify(
                [user_id],
                "claim_cancelled",
                dedupe=f"claim:{claim_id}",
                title=posting.title,
                posting_id=posting.id,
                claim_id=claim_id,
            )
        if rows and posting.kind == "wish" and from_status == "active":
            release_wish_slots([user_id for _, user_id, _ in rows])
        cancelled += len(rows)
    return cancelled


def release_wish_slots(user_ids: list[int]) -> None:
    """Give back one unit of each volunteer's active wish-claim allowance."""
    for user_id in user_ids:
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == user_id, Volunteer.active_wish_claims > 0)
            .values(active_wish_claims=Volunteer.active_wish_claims - 1)
            .execution_options(synchronize_session=False)
        )


# --- finishing -------------------------------------------------------------------


def fulfil_claim(
    user: User, claim_id: int, note: str, photo_urls: list[str] | None = None, minutes: int | None = None
) -> Claim:
    """Mark a claim done (完成): the claimant of a wish, with a note and up to 9
    photos and the time spent; or the provider of a service, whose hours are
    recorded at once."""
    access = claim_access(user, claim_id)
    claim, posting = access.claim, access.posting
    now = utcnow()
    values = {"status": "fulfilled", "fulfilled_at": now, "note": note, "photo_urls": list(photo_urls or [])}
    if posting.kind == "wish":
        if not access.is_claimant:
            raise Forbidden("claimant_required")
        if minutes is not None:
            values["minutes"] = records.round_down_half_hour(minutes)
        if not _move(claim_id, ("active",), **values):
            db.session.rollback()
            raise Conflict("claim_not_active")
        release_wish_slots([claim.user_id])
        notify_user = posting.author_id
    elif posting.kind == "service":
        if not (access.is_poster or access.is_coordinator or access.is_admin):
            raise Forbidden("provider_required")
        credited = _service_minutes(posting, minutes)
        values["minutes"] = credited
        if not _move(claim_id, ("active",), **values):
            db.session.rollback()
            raise Conflict("claim_not_active")
        started = posting.starts_at or now - timedelta(minutes=credited)
        ended = posting.ends_at or now
        records.write_credit_record(
            user_id=posting.author_id,
            posting=posting,
            claim_id=claim_id,
            minutes=credited,
            started_at=started,
            ended_at=ended,
            recorded_by=user.id,
            content=note,
        )
        notify_user = claim.user_id
    else:
        raise Conflict("wrong_claim_kind")
    return _tell_and_commit(notify_user, "claim_fulfilled", posting, claim_id, volunteer=claim.user.display_name)


def _tell_and_commit(user_id: int, kind: str, posting: Posting, claim_id: int, **context) -> Claim:
    """The last step of a claim transition: queue its notification, commit both."""
    notify(
        [user_id],
        kind,
        dedupe=f"claim:{claim_id}",
        title=posting.title,
        posting_id=posting.id,
        claim_id=claim_id,
        **context,
    )
    db.session.commit()
    return db.session.get(Claim, claim_id)


def _service_minutes(posting: Posting, minutes: int | None) -> int:
    if minutes is not None:
        return records.round_down_half_hour(minutes)
    if posting.starts_at is not None and posting.ends_at is not None:
        return records.round_down_half_hour(records.minutes_between(posting.starts_at, posting.ends_at))
    return 0


def confirm_claim(
    user: User, claim_id: int, rating: int | None = None, feedback: str | None = None, minutes: int | None = None
) -> Claim:
    """Confirm a finished claim (确认) and rate it.

    - wish: the poster or a coordinator confirms the fulfilment; the wish
      closes, the claimant gets one credit record (the minutes given here, or
      those reported at fulfilment) and energy (10 per hour plus 5).
    - service: the resident who booked it (or the poster, or a coordinator)
      confirms and rates the provider's work; the provider's record gets the
      evaluation.
    - energy: the poster or a coordinator confirms the hand-over of the reward.
    """
    access = claim_access(user, claim_id)
    claim, posting = access.claim, access.posting
    now = utcnow()
    kind = posting.kind
    if kind in ("wish", "service") and rating is None:
        raise Invalid("rating", "A rating from 1 to 5 is required.")
    values = {"status": "confirmed", "confirmed_at": now, "rating": rating, "feedback": feedback}

    if kind == "wish":
        if not access.manages_posting:
            raise Forbidden("poster_required")
        row = db.session.execute(
            sa.update(Claim)
            .where(Claim.id == claim_id, Claim.status == "fulfilled")
            .values(**values, minutes=sa.func.coalesce(_optional(minutes), Claim.minutes, 0))
            .returning(Claim.user_id, Claim.minutes, Claim.claimed_at, Claim.fulfilled_at, Claim.note)
            .execution_options(synchronize_session=False)
        ).first()
        if row is None:
            db.session.rollback()
            raise Conflict("claim_not_fulfilled")
        claimant_id, credited, claimed_at, fulfilled_at, note = row
        db.session.execute(
            sa.update(Posting)
            .where(Posting.id == posting.id, Posting.status == "claimed")
            .values(status="closed")
            .execution_options(synchronize_session=False)
        )
        records.write_credit_record(
            user_id=claimant_id,
            posting=posting,
            claim_id=claim_id,
            minutes=credited,
            started_at=claimed_at,
            ended_at=fulfilled_at,
            recorded_by=user.id,
            content=note,
            evaluation=records.evaluation_for(rating, feedback),
            rating=rating,
            bonus_points=records.WISH_CONFIRMED_POINTS,
        )
        tell = claimant_id
    elif kind == "service":
        if not (access.is_claimant or access.manages_posting):
            raise Forbidden("poster_required")
        if not _move(claim_id, ("fulfilled",), **values):
            db.session.rollback()
            raise Conflict("claim_not_fulfilled")
        db.session.execute(
            sa.update(ServiceRecord)
            .where(ServiceRecord.claim_id == claim_id)
            .values(evaluation=records.evaluation_for(rating, feedback), rating=rating)
            .execution_options(synchronize_session=False)
        )
        tell = posting.author_id
    elif kind == "energy":
        if not access.manages_posting:
            raise Forbidden("poster_required")
        if not _move(claim_id, ("active",), **values, fulfilled_at=now):
            db.session.rollback()
            raise Conflict("claim_not_active")
        tell = claim.user_id
    else:
        raise Conflict("wrong_claim_kind")
    return _tell_and_commit(tell, "claim_confirmed", posting, claim_id)


def _optional(value: int | None) -> sa.ColumnElement:
    rounded = records.round_down_half_hour(value) if value is not None else None
    return sa.cast(sa.literal(rounded), sa.Integer)


# --- on site: check-in, check-out, no-show ----------------------------------------


def check_in(user: User, claim_id: int, lat: float, lng: float) -> Claim:
    """签到: the claimant, on site (within 500 m), from 30 minutes before the start
    until the end. Only once."""
    access = _on_site_claim(user, claim_id)
    posting = access.posting
    now = utcnow()
    opens = posting.starts_at - CHECK_IN_OPENS_BEFORE if posting.starts_at is not None else None
    if (opens is not None and now < opens) or (posting.ends_at is not None and now >= posting.ends_at):
        raise Conflict("check_in_not_open")
    _require_on_site(posting, lat, lng)
    if not _move(claim_id, ("active",), Claim.user_id == user.id, Claim.check_in_at.is_(None), check_in_at=now):
        db.session.rollback()
        claim = db.session.get(Claim, claim_id)
        if claim.status == "active" and claim.check_in_at is not None:
            raise Conflict("already_checked_in")
        raise Conflict("claim_not_active")
    db.session.commit()
    return db.session.get(Claim, claim_id)


def check_out(user: User, claim_id: int, lat: float, lng: float) -> Claim:
    """签退: the claimant, on site. Writes the credit record: the time from
    check-in to check-out (no later than the end), rounded down to the half hour."""
    access = _on_site_claim(user, claim_id)
    posting = access.posting
    now = utcnow()
    _require_on_site(posting, lat, lng)
    row = db.session.execute(
        sa.update(Claim)
        .where(
            Claim.id == claim_id,
            Claim.user_id == user.id,
            Claim.status == "active",
            Claim.check_in_at.is_not(None),
            Claim.check_out_at.is_(None),
        )
        .values(status="confirmed", check_out_at=now, confirmed_at=now, ended_at=now)
        .returning(Claim.check_in_at)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        db.session.rollback()
        claim = db.session.get(Claim, claim_id)
        if claim.status == "active" and claim.check_in_at is None:
            raise Conflict("not_checked_in")
        raise Conflict("claim_not_active")
    checked_in_at = row[0]
    ended = min(now, posting.ends_at) if posting.ends_at is not None else now
    credited = records.round_down_half_hour(records.minutes_between(checked_in_at, ended))
    _move(claim_id, ("confirmed",), minutes=credited)
    records.write_credit_record(
        user_id=user.id,
        posting=posting,
        claim_id=claim_id,
        minutes=credited,
        started_at=checked_in_at,
        ended_at=max(ended, checked_in_at),
        recorded_by=posting.author_id,
    )
    return _tell_and_commit(user.id, "claim_confirmed", posting, claim_id)


def mark_no_show(user: User, claim_id: int) -> Claim:
    """缺席: a coordinator marks an active claim that never checked in, once the
    activity has ended. The place stays counted: it was taken and not used."""
    access = claim_access(user, claim_id)
    posting = access.posting
    if not access.manages_posting:
        raise Forbidden("coordinator_required")
    if posting.kind not in ON_SITE_KINDS:
        raise Conflict("wrong_claim_kind")
    now = utcnow()
    end = posting.ends_at or posting.starts_at
    if end is None or now < end:
        raise Conflict("event_not_ended")
    if not _move(claim_id, ("active",), Claim.check_in_at.is_(None), status="no_show", ended_at=now):
        db.session.rollback()
        claim = db.session.get(Claim, claim_id)
        if claim.status == "active" and claim.check_in_at is not None:
            raise Conflict("already_checked_in")
        raise Conflict("claim_not_active")
    db.session.commit()
    return db.session.get(Claim, claim_id)


def _on_site_claim(user: User, claim_id: int) -> ClaimAccess:
    access = claim_access(user, claim_id)
    if not access.is_claimant:
        raise Forbidden("claimant_required")
    if access.posting.kind not in ON_SITE_KINDS:
        raise Conflict("wrong_claim_kind")
    return access


def _require_on_site(posting: Posting, lat: float, lng: float) -> None:
    if posting.lat is None or posting.lng is None:
        return  # a posting without a point has no site to be near
    if haversine_km(lat, lng, posting.lat, posting.lng) > CHECK_IN_RADIUS_KM:
        raise Invalid("location", "You are more than 500 m from the site.", slug="too_far_from_site")


def _move(claim_id: int, from_statuses: Sequence[str], *conditions: sa.ColumnElement[bool], **values) -> bool:
    """One conditional transition: True when the claim was in ``from_statuses``
    (and met ``conditions``) and now has ``values``."""
    return bool(
        db.session.execute(
            sa.update(Claim)
            .where(Claim.id == claim_id, Claim.status.in_(from_statuses), *conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
    )
