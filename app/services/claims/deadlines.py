"""Claims that end by themselves (the scheduler's ``release_overdue_claims`` calls these).

- An active claim past its ``due_at`` (a wish taken on and not done in time)
  is ``released``: its place goes back, the wish reopens (or expires, if its
  own deadline passed meanwhile), both sides are told (the reminders before
  are ``app.services.claims.reminders``).
- ``EVENT_SETTLE_HOURS`` after an event's end: a claim checked in but not out
  is checked out at the end; an active claim that never checked in is a
  ``no_show``; a claim still on the waitlist is ``cancelled``. A service's
  bookings never marked done are ``released``.

Each function moves at most ``limit`` claims in the caller's transaction and
returns how many it moved; run again, it finds nothing left to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app.clock import utcnow
from app.extensions import db
from app.models import Claim, Posting
from app.outbox import notify_many
from app.policy import POLICIES, kinds_where
from app.services.batches import update_batch
from app.services.claims.on_site import credit_attendance
from app.services.claims.places import give_back_places, leave_waitlist, return_claim_allowance
from app.services.lifecycle import titles
from app.services.records import hold_time

ON_SITE_SETTLED = kinds_where(settlement="on_site")
RELEASE_SETTLED = kinds_where(settlement="release")


def release_overdue(limit: int) -> tuple[int, int]:
    """Active claims past ``due_at`` → ``released``; returns (released, reopened postings)."""
    return _release(limit, (Claim.status == "active", Claim.due_at < utcnow()))


def release_unfinished_bookings(limit: int) -> int:
    """Services settled: bookings still active ``EVENT_SETTLE_HOURS`` after the end → ``released``."""
    return _release(limit, (Claim.status == "active", Claim.posting_id.in_(_settled_postings(RELEASE_SETTLED))))[0]


def _release(limit: int, rule: Sequence[sa.ColumnElement[bool]]) -> tuple[int, int]:
    # The claims services lock a posting before its claims; so does this batch, or
    # a claimant withdrawing right now could deadlock with it. Postings a request
    # is busy with are left for the next run (SKIP LOCKED).
    candidates = sa.select(Claim.posting_id).where(*rule).limit(limit).scalar_subquery()
    posting_ids = db.session.scalars(
        sa.select(Posting.id).where(Posting.id.in_(candidates)).order_by(Posting.id).with_for_update(skip_locked=True)
    ).all()
    if not posting_ids:
        return 0, 0
    now = utcnow()
    released = db.session.execute(
        sa.update(Claim)
        .where(Claim.posting_id.in_(posting_ids), *rule)
        .values(status="released", ended_at=now, updated_at=now)
        .returning(Claim.id, Claim.posting_id, Claim.user_id, Claim.kind)
        .execution_options(synchronize_session=False)
    ).all()
    if not released:
        return 0, 0
    given_back = give_back_places(Counter(posting_id for _, posting_id, _, _ in released))
    return_claim_allowance([user_id for _, _, user_id, kind in released if POLICIES[kind].counts_toward_claim_limit])
    authors = dict(
        db.session.execute(
            sa.select(Posting.id, Posting.author_id).where(Posting.id.in_({r[1] for r in released}))
        ).all()
    )
    names = titles(set(authors))
    notify_many(
        "claim_released",
        (
            (
                [authors[posting_id], user_id],
                f"claim:{claim_id}",
                {"title": names[posting_id], "posting_id": posting_id, "claim_id": claim_id},
            )
            for claim_id, posting_id, user_id, _ in released
        ),
    )
    return len(released), len(given_back.reopened)


def _settled_postings(kinds: tuple[str, ...]) -> sa.ScalarSelect:
    """Postings of ``kinds`` whose end is ``EVENT_SETTLE_HOURS`` past."""
    cutoff = utcnow() - timedelta(hours=current_app.config["EVENT_SETTLE_HOURS"])
    return sa.select(Posting.id).where(Posting.kind.in_(kinds), Posting.ends_at <= cutoff).scalar_subquery()


def settle_checked_in(limit: int) -> int:
    """Events settled: claims checked in but never out are checked out at the end
    and credited as a check-out would be, the record ``pending`` (nobody stood
    there to check out: a coordinator of the org approves it)."""
    now = utcnow()
    rule = (
        Claim.status == "active",
        Claim.check_in_at.is_not(None),
        Claim.check_out_at.is_(None),
        Claim.posting_id.in_(_settled_postings(ON_SITE_SETTLED)),
    )
    end = sa.select(Posting.ends_at).where(Posting.id == Claim.posting_id).scalar_subquery()
    values = {"status": "confirmed", "check_out_at": end, "confirmed_at": now, "ended_at": now, "updated_at": now}
    rows = update_batch(Claim, rule, limit, values, [Claim.id, Claim.posting_id, Claim.user_id, Claim.check_in_at])
    postings = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_({r[1] for r in rows})))}
    for user_id in sorted({row[2] for row in rows}):
        hold_time(user_id)
    for claim_id, posting_id, user_id, checked_in in sorted(rows, key=lambda r: (r[2], r[0])):
        posting = postings[posting_id]
        credit_attendance(posting, claim_id, user_id, checked_in, posting.ends_at, on_site=False)
    notify_many(
        "claim_confirmed",
        (
            (
                [user_id],
                f"claim:{claim_id}",
                {"title": postings[posting_id].title, "posting_id": posting_id, "claim_id": claim_id},
            )
            for claim_id, posting_id, user_id, _ in rows
        ),
    )
    return len(rows)


def settle_no_shows(limit: int) -> int:
    """Events settled: active claims that never checked in → ``no_show``; the claimant is told."""
    now = utcnow()
    rule = (
        Claim.status == "active",
        Claim.check_in_at.is_(None),
        Claim.posting_id.in_(_settled_postings(ON_SITE_SETTLED)),
    )
    rows = update_batch(
        Claim,
        rule,
        limit,
        {"status": "no_show", "ended_at": now, "updated_at": now},
        [Claim.id, Claim.posting_id, Claim.user_id],
    )
    names = titles({posting_id for _, posting_id, _ in rows})
    notify_many(
        "claim_no_show",
        (
            (
                [user_id],
                f"claim:{claim_id}",
                {"title": names[posting_id], "posting_id": posting_id, "claim_id": claim_id},
            )
            for claim_id, posting_id, user_id in rows
        ),
    )
    return len(rows)


def settle_waitlist(limit: int) -> int:
    """Events settled: claims still waiting for a place → ``cancelled`` (the event is over)."""
    now = utcnow()
    rule = (Claim.status == "waitlisted", Claim.posting_id.in_(_settled_postings(ON_SITE_SETTLED)))
    rows = update_batch(
        Claim, rule, limit, {"status": "cancelled", "ended_at": now, "updated_at": now}, [Claim.id, Claim.posting_id]
    )
    leave_waitlist(Counter(posting_id for _, posting_id in rows))
    return len(rows)
