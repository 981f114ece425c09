"""Claims (认领): race-free claiming and the claim state machine.

Every transition is a conditional UPDATE whose WHERE clause is the rule
("only an active claim can be withdrawn"), never a read-check-write in Python.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Claim, Posting, Volunteer
from app.services import energy
from notifications import notify

LIVE = ("active", "waitlisted", "fulfilled")
# Volunteer.active_wish_claims counts a volunteer's wish claims in status
# "active" (taken, not yet fulfilled); it is the guard of the per-volunteer limit.


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
