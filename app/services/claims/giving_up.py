"""Giving a claim up: the claimant withdraws, or the posting is taken down."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from app.clock import utcnow
from app.errors import Conflict
from app.extensions import db
from app.models import Claim, Posting
from app.policy import CHECK_IN_OUT, LIVE_CLAIM_STATUSES, POLICIES, kinds_where
from app.services import energy
from app.services.claims.access import claimant_access, move, refused, tell
from app.services.claims.places import give_back_places, leave_waitlist, lock_posting, return_claim_allowance
from app.services.permissions import Actor
from notifications import notify


def withdraw_claim(actor: Actor, claim_id: int, *, commit: bool = True) -> Claim:
    """The claimant gives the claim up (取消认领 / 取消报名). An active claim frees
    its place — the oldest waitlisted claim takes it — and is refunded its
    energy; a wish reopens. The poster is told (``claim_withdrawn``). A
    checked-in claim cannot be withdrawn, nor an on-site claim once the
    activity has ended (:func:`withdrawable` says which claims may be).
    ``commit=False`` leaves the transaction to the caller (the erase of an account)."""
    access = claimant_access(actor, claim_id)
    posting, policy = access.posting, access.policy
    debited = access.claim.energy_debited
    now = utcnow()
    if policy.on_site and posting.ends_at is not None and now >= posting.ends_at:
        raise Conflict("event_ended")

    lock_posting(posting.id)
    mine = Claim.user_id == actor.id
    if move(claim_id, ("waitlisted",), mine, status="withdrawn", ended_at=now):
        leave_waitlist({posting.id: 1})
    elif move(claim_id, ("active",), mine, Claim.check_in_at.is_(None), status="withdrawn", ended_at=now):
        give_back_places({posting.id: 1})
        if policy.counts_toward_claim_limit:
            return_claim_allowance([actor.id])
        if debited:
            energy.refund(actor.id, debited, reason="refund_withdrawn", claim_id=claim_id, posting_id=posting.id)
    else:
        raise refused(claim_id)
    tell([posting.author_id], "claim_withdrawn", posting, claim_id, volunteer=actor.user.display_name)
    if commit:
        db.session.commit()
    return db.session.get(Claim, claim_id)


def withdrawable(user_id: int, now) -> sa.Select:
    """The ids of ``user_id``'s claims that :func:`withdraw_claim` accepts now: waitlisted,
    or active and not checked in — but none on an on-site activity that has ended."""
    on_site = Posting.kind.in_(kinds_where(finish=CHECK_IN_OUT))
    return (
        sa.select(Claim.id)
        .join(Posting, Posting.id == Claim.posting_id)
        .where(
            Claim.user_id == user_id,
            sa.or_(Claim.status == "waitlisted", sa.and_(Claim.status == "active", Claim.check_in_at.is_(None))),
            sa.or_(~on_site, Posting.ends_at.is_(None), Posting.ends_at > now),
        )
        .order_by(Claim.id)
    )


def cancel_claims_for_posting(posting: Posting) -> int:
    """The posting went away: its live claims become ``cancelled``, their places
    and allowances are given back, energy is refunded and the volunteers are
    told. Runs in the caller's transaction."""
    now = utcnow()
    policy = POLICIES[posting.kind]
    cancelled: dict[str, list[tuple[int, int, int]]] = {}
    for from_status in LIVE_CLAIM_STATUSES:
        cancelled[from_status] = db.session.execute(
            sa.update(Claim)
            .where(Claim.posting_id == posting.id, Claim.status == from_status)
            .values(status="cancelled", ended_at=now)
            .returning(Claim.id, Claim.user_id, Claim.energy_debited)
            .execution_options(synchronize_session=False)
        ).all()
    leave_waitlist(Counter({posting.id: len(cancelled["waitlisted"])}))
    give_back_places({posting.id: len(cancelled["active"]) + len(cancelled["fulfilled"])})
    if policy.counts_toward_claim_limit:
        return_claim_allowance([user_id for _, user_id, _ in cancelled["active"]])
    rows = [row for status in LIVE_CLAIM_STATUSES for row in cancelled[status]]
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
    return len(rows)
