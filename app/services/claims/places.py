"""Places (名额): taking one, waiting for one, giving one back.

Posting counters: ``claimed_count`` counts the claims that hold or held a
place (``PLACE_CLAIM_STATUSES``) and ``waitlist_count`` the ``waitlisted``
ones; ``Volunteer.active_wish_claims`` counts a volunteer's active claims of
the kinds that count towards ``ACTIVE_WISH_CLAIM_LIMIT``. Each moves only by
a conditional UPDATE built from the conditions here (``claim_window``,
``place_free``, ``line_open``, ``status_once_taken``, ``allowance_left``) —
the statements below, and the claim's one statement on PostgreSQL
(``in_one_statement``).

Lock order, everywhere: the new claim row, then the posting row, then other
claim rows, then the volunteer row — so two transactions never wait on each
other in a circle. (The one statement locks the posting before it inserts the
claim: nobody else can be waiting on a row not yet written, and a second
claim by the same user for the same posting waits on the posting first.)
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from flask import current_app

from app.errors import AppError, Conflict, NotFound
from app.extensions import db
from app.models import Claim, Posting, Volunteer
from app.outbox import notify
from app.policy import FILLED_POSTING_STATUSES, POLICIES, QUEUEING_POSTING_STATUSES, KindPolicy
from app.services.batches import batch_of
from app.services.lifecycle import expired_or_reopened, retire_tags, tell_expired, titles
from app.services.nearby_alerts import request_alerts


def open_for_claims(posting_id, policy: KindPolicy, now) -> list[sa.ColumnElement[bool]]:
    """The posting still takes claims: before its deadline and, for the kinds that
    close at their end, before its end."""
    return [Posting.id == posting_id, claim_window(now, policy.closes_at_end)]


# The conditions of a place, as SQL: the guarded UPDATEs below and the claim's one
# statement on PostgreSQL (``app.services.claims.in_one_statement``) are built from
# these, so each rule is written once. A policy flag may be a Python bool (a
# statement for one kind) or a boolean column (one statement for every kind, the
# flag read from a table of the policies).


def claim_window(now, closes_at_end: bool | sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """Before the posting's deadline and, where the kind closes at its end, before its end."""
    before_deadline = sa.or_(Posting.expires_at.is_(None), Posting.expires_at > now)
    before_end = sa.or_(Posting.ends_at.is_(None), Posting.ends_at > now)
    if closes_at_end is True:
        return sa.and_(before_deadline, before_end)
    if closes_at_end is False:
        return before_deadline
    return sa.and_(before_deadline, sa.or_(sa.not_(closes_at_end), before_end))


def place_free() -> sa.ColumnElement[bool]:
    """A place may be taken now: the posting is open with room."""
    has_room = sa.or_(Posting.capacity.is_(None), Posting.claimed_count < Posting.capacity)
    return sa.and_(Posting.status == "open", has_room)


def line_open() -> sa.ColumnElement[bool]:
    """Every place is taken and the line takes claims (for the kinds with a waitlist)."""
    return sa.and_(
        Posting.status.in_(QUEUEING_POSTING_STATUSES),
        Posting.capacity.is_not(None),
        Posting.claimed_count >= Posting.capacity,
    )


def status_once_taken(one_place: bool | sa.ColumnElement[bool]) -> sa.ColumnElement | str:
    """The posting's status once a place is taken: a one-claim posting is claimed,
    one whose last place this was is full, any other stays as it is."""
    last_place = sa.and_(Posting.capacity.is_not(None), Posting.claimed_count + 1 >= Posting.capacity)
    if one_place is True:
        return "claimed"
    if one_place is False:
        return sa.case((last_place, "full"), else_=Posting.status)
    return sa.case((one_place, "claimed"), (last_place, "full"), else_=Posting.status)


def take_place(posting_id: int, policy: KindPolicy, now: datetime) -> str | None:
    """Take a place (``"active"``), a place in line (``"waitlisted"``) or nothing (None)."""
    take, queue = _place_statements(policy)
    params = {"posting_id": posting_id, "now": now}
    # A place may free between the two statements; a second round takes it.
    for _ in range(2):
        if db.session.execute(take, params).rowcount:
            return "active"
        if not policy.waitlist:
            return None
        if db.session.execute(queue, params).rowcount:
            return "waitlisted"
    return None


@functools.cache
def _place_statements(policy: KindPolicy) -> tuple[sa.Update, sa.Update]:
    """The two guarded UPDATEs of :func:`take_place` for a kind, built once
    (``posting_id`` and ``now`` are parameters): take a place while there is
    room, else a place in line when the kind keeps a waitlist."""
    window = open_for_claims(sa.bindparam("posting_id"), policy, sa.bindparam("now"))
    take = (
        sa.update(Posting)
        .where(*window, place_free())
        .values(claimed_count=Posting.claimed_count + 1, status=status_once_taken(policy.capacity == "one"))
        .execution_options(synchronize_session=False)
    )
    queue = (
        sa.update(Posting)
        .where(*window, line_open())
        .values(waitlist_count=Posting.waitlist_count + 1)
        .execution_options(synchronize_session=False)
    )
    return take, queue


def why_not_taken(posting_id: int, policy: KindPolicy, now: datetime) -> AppError:
    """After the rollback: which rule refused the place."""
    posting = db.session.get(Posting, posting_id)
    if posting is None:
        return NotFound()
    if policy.capacity == "one" and posting.status == "claimed":
        return Conflict("already_claimed")
    window_open = (posting.expires_at is None or posting.expires_at > now) and (
        not policy.closes_at_end or posting.ends_at is None or posting.ends_at > now
    )
    full = posting.capacity is not None and posting.claimed_count >= posting.capacity
    if window_open and (posting.status == "full" or (posting.status == "open" and full)):
        return Conflict("posting_full")
    return Conflict("posting_not_open")


def take_claim_allowance(user_id: int) -> bool:
    """One more active claim towards the volunteer's limit, if the limit allows."""
    limit = current_app.config["ACTIVE_WISH_CLAIM_LIMIT"]
    return bool(db.session.execute(_allowance_statement(), {"volunteer": user_id, "claim_limit": limit}).rowcount)


def allowance_left() -> sa.ColumnElement[bool]:
    """The volunteer may hold one more active claim of the kinds that count
    (the limit is the parameter ``claim_limit``, ``ACTIVE_WISH_CLAIM_LIMIT``)."""
    return Volunteer.active_wish_claims < sa.bindparam("claim_limit")


@functools.cache
def _allowance_statement() -> sa.Update:
    return (
        sa.update(Volunteer)
        .where(Volunteer.user_id == sa.bindparam("volunteer"), allowance_left())
        .values(active_wish_claims=Volunteer.active_wish_claims + 1)
        .execution_options(synchronize_session=False)
    )


def return_claim_allowance(user_ids: list[int]) -> None:
    """Give back one unit of each volunteer's allowance (sorted: one lock order)."""
    for user_id in sorted(user_ids):
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == user_id, Volunteer.active_wish_claims > 0)
            .values(active_wish_claims=Volunteer.active_wish_claims - 1)
            .execution_options(synchronize_session=False)
        )


def lock_posting(posting_id: int) -> None:
    """Take the posting's row lock before any claim row (PostgreSQL; SQLite's
    single writer needs none), the order every claim transaction uses."""
    db.session.execute(sa.select(Posting.id).where(Posting.id == posting_id).with_for_update())


def leave_waitlist(left: Mapping[int, int]) -> None:
    """``left[posting_id]`` waitlisted claims have left the line."""
    for posting_id, count in left.items():
        db.session.execute(
            sa.update(Posting)
            .where(Posting.id == posting_id, Posting.waitlist_count >= count)
            .values(waitlist_count=Posting.waitlist_count - count)
            .execution_options(synchronize_session=False)
        )


@dataclass
class GivenBack:
    promoted: list[tuple[int, int, int]] = field(default_factory=list)  # (claim id, user id, posting id)
    reopened: list[int] = field(default_factory=list)  # postings open again
    expired: list[int] = field(default_factory=list)  # postings whose deadline had passed meanwhile


def give_back_places(freed: Mapping[int, int]) -> GivenBack:
    """``freed[posting_id]`` claims that held a place have let it go (withdrawn,
    released, cancelled). In each posting the oldest waitlisted claims take the
    places (and are told); the places nobody takes go back to the posting, which
    reopens — or, past its deadline with nothing live left, expires (its poster
    told). Reopened postings are news again for the volunteers nearby: their
    alerts are requested here and go out after the commit (app.services.nearby_alerts).

    Runs in the caller's transaction, which holds the postings' rows.
    """
    result = GivenBack()
    freed = {posting_id: count for posting_id, count in freed.items() if count > 0}
    if not freed:
        return result
    kinds = dict(db.session.execute(sa.select(Posting.id, Posting.kind).where(Posting.id.in_(freed))).all())
    remaining: dict[int, list[int]] = defaultdict(list)
    for posting_id, count in sorted(freed.items()):
        if POLICIES[kinds[posting_id]].waitlist:
            promoted = _promote_waitlisted(posting_id, count)
            if promoted:
                leave_waitlist({posting_id: len(promoted)})
                result.promoted += [(claim_id, user_id, posting_id) for claim_id, user_id in promoted]
                count -= len(promoted)
        if count:
            remaining[count].append(posting_id)

    ended = []
    for count, posting_ids in remaining.items():
        rows = db.session.execute(
            sa.update(Posting)
            .where(Posting.id.in_(posting_ids), Posting.claimed_count >= count)
            .values(
                claimed_count=Posting.claimed_count - count,
                status=sa.case(
                    (Posting.status.in_(FILLED_POSTING_STATUSES), expired_or_reopened()), else_=Posting.status
                ),
            )
            .returning(Posting.id, Posting.status, Posting.author_id, Posting.title)
            .execution_options(synchronize_session=False)
        ).all()
        for posting_id, status, author_id, title in rows:
            if status == "expired":
                ended.append((posting_id, author_id, title))
            elif status == "open":
                result.reopened.append(posting_id)
    result.expired = [posting_id for posting_id, _, _ in ended]
    tell_expired(ended)
    retire_tags(result.expired)
    names = titles({posting_id for _, _, posting_id in result.promoted})
    for claim_id, user_id, posting_id in result.promoted:
        notify(
            [user_id],
            "waitlist_promoted",
            dedupe=f"claim:{claim_id}",
            title=names[posting_id],
            posting_id=posting_id,
            claim_id=claim_id,
        )
    request_alerts(result.reopened)
    return result


def _promote_waitlisted(posting_id: int, count: int) -> list[tuple[int, int]]:
    """The ``count`` oldest waitlisted claims become active: (claim id, user id)."""
    # SKIP LOCKED: two withdrawals at once promote different claims, and a
    # waitlisted claimant withdrawing right now is passed over, not waited for.
    rule = (Claim.posting_id == posting_id, Claim.status == "waitlisted")
    rows = db.session.execute(
        sa.update(Claim)
        .where(batch_of(Claim, rule, count, order_by=Claim.id), *rule)
        .values(status="active")
        .returning(Claim.id, Claim.user_id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((row[0], row[1]) for row in rows)
