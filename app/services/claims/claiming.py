"""Claiming (认领 / 报名 / 预约 / 兑换): race-free, in one transaction — on PostgreSQL
in one statement (``in_one_statement``), on SQLite in a few."""

from __future__ import annotations

import functools
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.exc import IntegrityError

from app import metrics
from app.clock import utcnow
from app.errors import AppError, Conflict, NotFound
from app.extensions import db
from app.models import Claim, Posting, User
from app.models.base import insert_loaded
from app.outbox import notify, recipient_columns, recipient_of
from app.policy import POLICIES
from app.services import energy
from app.services.claims import in_one_statement
from app.services.claims.in_one_statement import commit_keeping_loaded
from app.services.claims.places import take_claim_allowance, take_place, why_not_taken
from app.services.permissions import Actor


def claim_posting(actor: Actor, posting_id: int, message: str | None = None) -> Claim:
    """Claim a posting in one transaction (:func:`_claim`), counting the outcome
    (``yz_claims_total``): the new claim's status, or the refusal's slug."""
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            claim = in_one_statement.claim(actor, posting_id, message, utcnow())
        else:
            claim = _claim(actor, posting_id, message)
    except AppError as exc:
        metrics.CLAIMS.labels(exc.slug).inc()
        raise
    metrics.CLAIMS.labels(claim.status).inc()
    return claim


def _claim(actor: Actor, posting_id: int, message: str | None) -> Claim:
    """Claim a posting in one transaction (SQLite; PostgreSQL does the same in one
    statement, :mod:`app.services.claims.in_one_statement`).

    The INSERT of the claim is guarded by the unique index of live claims per
    (posting, user); the place by a conditional UPDATE of the posting's
    counters; a wish by the volunteer's active-claim allowance; an energy
    reward by the balance. Any refusal rolls everything back.
    """
    # The columns a claim needs, none of which changes once a posting can be
    # claimed (PATCH is refused then); its state is left to the guarded UPDATE.
    # The poster's notification settings come along: one round trip, not two.
    posting = db.session.execute(_posting_statement(), {"posting_id": posting_id}).first()
    if posting is None:
        raise NotFound()
    user = actor.user
    policy = POLICIES[posting.kind]
    actor.require_may_claim(policy, posting.author_id)
    ttl_hours = posting.claim_ttl_hours or policy.claim_ttl_hours
    now = utcnow()

    try:
        claim = insert_loaded(
            db.session,
            Claim,
            posting_id=posting_id,
            user_id=user.id,
            kind=posting.kind,
            status="active",
            message=message,
            claimed_at=now,
            due_at=now + timedelta(hours=ttl_hours) if ttl_hours else None,
            created_at=now,
            updated_at=now,
        )
    except IntegrityError:
        db.session.rollback()
        raise Conflict("duplicate_claim") from None
    so.attributes.set_committed_value(claim, "user", user)
    so.attributes.set_committed_value(claim, "photos", [])  # none before it is fulfilled

    place = take_place(posting_id, policy, now)
    if place is None:
        db.session.rollback()
        raise why_not_taken(posting_id, policy, now)
    claim.status = place
    if place == "active" and policy.counts_toward_claim_limit and not take_claim_allowance(user.id):
        db.session.rollback()
        raise Conflict("active_claim_limit")
    cost = posting.energy_cost or 0
    if policy.has_energy_cost and cost:
        if energy.debit(user.id, cost, reason="redeem", claim_id=claim.id, posting_id=posting_id) is None:
            db.session.rollback()
            raise Conflict("insufficient_energy")
        claim.energy_debited = cost
    if policy.poster_told_of_claims:
        notify(
            [posting.author_id],
            "wish_claimed",
            dedupe=f"claim:{claim.id}",
            title=posting.title,
            volunteer=user.display_name,
            posting_id=posting_id,
            claim_id=claim.id,
            recipients=[recipient_of(posting)],
        )
    commit_keeping_loaded()
    return claim


@functools.cache
def _posting_statement() -> sa.Select:
    """The posting's columns a claim needs and its poster's notification
    settings, built once (the claim path runs it on every claim)."""
    author = so.aliased(User)
    return (
        sa.select(
            Posting.kind,
            Posting.title,
            Posting.author_id,
            Posting.energy_cost,
            Posting.claim_ttl_hours,
            *recipient_columns(author),
        )
        .join(author, author.id == Posting.author_id)
        .where(Posting.id == sa.bindparam("posting_id"))
    )
