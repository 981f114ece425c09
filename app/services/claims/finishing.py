"""Finishing a claim: marked done by whoever did the work, confirmed by someone else.

Nobody credits their own work: a wish's claimant marks it done and its
managers confirm; a service's provider marks it done and the resident who
booked it (or its coordinators) confirms; a reward is handed over by its
managers. The minutes are reported when the work is marked done (1–480) and
may be lowered, never raised, by the confirmer. A fulfilled claim nobody
confirms within ``AUTO_CONFIRM_DAYS`` is confirmed by the scheduler
(:func:`auto_confirm`), through the same steps as a person's confirmation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import format_decimal, gettext

from app.clock import utcnow
from app.errors import Conflict, Forbidden, Invalid
from app.extensions import db
from app.models import Claim, Posting
from app.outbox import notify_many
from app.policy import CHECK_IN_OUT, FULFIL_CONFIRM, HAND_OVER, POLICIES, PROVIDER, kinds_where
from app.services import records
from app.services.batches import update_batch
from app.services.claims.access import claim_access, move, tell_and_commit
from app.services.claims.places import return_claim_allowance
from app.services.lifecycle import retire_tags
from app.services.permissions import Actor

AUTO_CONFIRMED_KINDS = kinds_where(auto_confirm=True)
# What a confirmation needs of the claim to write its record.
_CONFIRMED = (Claim.id, Claim.posting_id, Claim.user_id, Claim.minutes, Claim.fulfilled_at, Claim.note, Claim.rating)


def fulfil_claim(
    actor: Actor, claim_id: int, note: str, photo_urls: list[str] | None = None, minutes: int | None = None
) -> Claim:
    """Mark a claim done (完成) with a note, up to 9 photos and the minutes the
    work took: a wish's claimant, or a service's provider. The other side is told
    to confirm; no hours are credited yet."""
    access = claim_access(actor, claim_id)
    claim, posting, policy = access.claim, access.posting, access.policy
    if policy.finish != FULFIL_CONFIRM:
        raise Conflict("wrong_claim_kind")
    if not actor.may_fulfil(claim, posting):
        raise Forbidden("provider_required" if policy.credited == PROVIDER else "claimant_required")
    values = {
        "status": "fulfilled",
        "fulfilled_at": utcnow(),
        "note": note,
        "photo_urls": list(photo_urls or []),
        "minutes": minutes,
    }
    if not move(claim_id, ("active",), **values):
        db.session.rollback()
        raise Conflict("claim_not_active")
    if policy.counts_toward_claim_limit:
        return_claim_allowance([claim.user_id])
    confirmer = posting.author_id if policy.credited != PROVIDER else claim.user_id
    return tell_and_commit([confirmer], "claim_fulfilled", posting, claim_id, volunteer=actor.user.display_name)


def confirm_claim(
    actor: Actor, claim_id: int, rating: int | None = None, feedback: str | None = None, minutes: int | None = None
) -> Claim:
    """Confirm a finished claim (确认) and rate it.

    - wish, service: the claim must be fulfilled; its record is written for the
      one who did the work, with the reported minutes or fewer (``minutes``),
      ``ended_at`` the fulfilment and ``started_at`` that minus the minutes;
      energy 10 per credited hour (plus 5 for a wish). A wish closes.
    - energy: the reward is handed over.
    """
    access = claim_access(actor, claim_id)
    claim, posting, policy = access.claim, access.posting, access.policy
    if policy.finish == CHECK_IN_OUT:
        raise Conflict("wrong_claim_kind")
    actor.require_may_confirm(claim, posting)
    now = utcnow()
    if policy.finish == HAND_OVER:
        values = {"status": "confirmed", "confirmed_at": now, "fulfilled_at": now, "rating": rating}
        if not move(claim_id, ("active",), **values, feedback=feedback):
            db.session.rollback()
            raise Conflict("claim_not_active")
        return tell_and_commit([claim.user_id], "claim_confirmed", posting, claim_id)

    if rating is None:
        raise Invalid("rating", gettext("A rating from 1 to 5 is required."))
    rule = [Claim.id == claim_id, Claim.status == "fulfilled"]
    if minutes is not None:
        rule.append(sa.or_(Claim.minutes.is_(None), Claim.minutes >= minutes))
    rows = db.session.execute(
        sa.update(Claim)
        .where(*rule)
        .values(
            status="confirmed",
            confirmed_at=now,
            rating=rating,
            feedback=feedback,
            minutes=sa.func.coalesce(sa.cast(sa.literal(minutes), sa.Integer), Claim.minutes, 0),
        )
        .returning(*_CONFIRMED)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        db.session.rollback()
        current = db.session.get(Claim, claim_id)
        if current.status == "fulfilled":
            raise Invalid(
                "minutes",
                gettext("At most the %(minutes)s minutes reported.", minutes=format_decimal(current.minutes)),
                slug="minutes_above_reported",
            )
        raise Conflict("claim_not_fulfilled")
    record_confirmed(rows, recorded_by=actor.id, feedback=feedback)
    db.session.commit()
    return db.session.get(Claim, claim_id)


def auto_confirm(limit: int) -> int:
    """Fulfilled claims nobody confirmed within ``AUTO_CONFIRM_DAYS`` → confirmed
    (no rating, ``auto_confirmed``), recorded as a person's confirmation would be;
    both sides are told."""
    now = utcnow()
    cutoff = now - timedelta(days=current_app.config["AUTO_CONFIRM_DAYS"])
    rule = (Claim.status == "fulfilled", Claim.kind.in_(AUTO_CONFIRMED_KINDS), Claim.fulfilled_at <= cutoff)
    values = {
        "status": "confirmed",
        "confirmed_at": now,
        "auto_confirmed": True,
        "minutes": sa.func.coalesce(Claim.minutes, 0),
        "updated_at": now,
    }
    rows = update_batch(Claim, rule, limit, values, _CONFIRMED)
    record_confirmed(rows, recorded_by=None, feedback=None, tell_both=True)
    return len(rows)


def record_confirmed(rows: Sequence, *, recorded_by: int | None, feedback: str | None, tell_both: bool = False) -> None:
    """The consequences of confirmed fulfilments (rows of ``_CONFIRMED``): the
    record and energy of whoever did the work, a wish closed, ``claim_confirmed``
    to the one credited (and, ``tell_both``, to the other side too)."""
    if not rows:
        return
    postings = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_({r[1] for r in rows})))}
    told = []
    now = utcnow()
    for claim_id, posting_id, user_id, minutes, fulfilled_at, note, rating in rows:
        fulfilled_at = fulfilled_at or now
        posting = postings[posting_id]
        policy = POLICIES[posting.kind]
        credited = posting.author_id if policy.credited == PROVIDER else user_id
        records.write_credit_record(
            user_id=credited,
            posting=posting,
            claim_id=claim_id,
            minutes=minutes,
            started_at=fulfilled_at - timedelta(minutes=minutes),
            ended_at=fulfilled_at,
            recorded_by=recorded_by,
            content=note,
            evaluation=records.evaluation_for(rating, feedback),
            rating=rating,
            bonus_points=policy.confirm_bonus_points,
        )
        audience = {user_id, posting.author_id} if tell_both else {credited}
        told.append(
            (
                sorted(audience),
                f"claim:{claim_id}",
                {"title": posting.title, "posting_id": posting_id, "claim_id": claim_id},
            )
        )
    one_claim_postings = [p.id for p in postings.values() if POLICIES[p.kind].capacity == "one"]
    if one_claim_postings:
        # A posting taken on by exactly one claim is over once that claim is confirmed.
        closed = db.session.scalars(
            sa.update(Posting)
            .where(Posting.id.in_(one_claim_postings), Posting.status == "claimed")
            .values(status="closed")
            .returning(Posting.id)
            .execution_options(synchronize_session=False)
        ).all()
        retire_tags(closed)
    notify_many("claim_confirmed", told)
