"""Who may see a claim, the lists of claims, and the one-step claim transition.

Every transition is a conditional UPDATE whose WHERE clause is the rule
("only an active claim can be withdrawn"), never a read-check-write in Python.
When a guard refuses, the transaction is rolled back first and only then is
the row read again to say which rule it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from app.errors import Conflict, Forbidden, NotFound
from app.extensions import db
from app.models import Claim, Posting
from app.outbox import notify
from app.policy import POLICIES, KindPolicy
from app.services.pagination import paginate
from app.services.party_blocks import visible_parties
from app.services.permissions import Actor
from app.services.photos import load_photos


@dataclass
class ClaimAccess:
    """A claim, its posting, and the actor looking at them."""

    claim: Claim
    posting: Posting
    actor: Actor

    @property
    def policy(self) -> KindPolicy:
        return POLICIES[self.posting.kind]

    @property
    def is_claimant(self) -> bool:
        return self.claim.user_id == self.actor.id

    @property
    def manages_posting(self) -> bool:
        return self.actor.manages_posting(self.posting)


def claim_access(actor: Actor, claim_id: int) -> ClaimAccess:
    """The claim as ``actor`` may see it: 404 unless they are its claimant or one
    of the posting's managers."""
    claim = db.session.get(Claim, claim_id)
    posting = db.session.get(Posting, claim.posting_id) if claim is not None else None
    if claim is None or posting is None or not actor.may_see_claim(claim, posting):
        raise NotFound()
    return ClaimAccess(claim=claim, posting=posting, actor=actor)


def claimant_access(actor: Actor, claim_id: int) -> ClaimAccess:
    """As :func:`claim_access`, 403 ``claimant_required`` for anyone but the claimant."""
    access = claim_access(actor, claim_id)
    if not access.is_claimant:
        raise Forbidden("claimant_required")
    return access


def get_claim(actor: Actor, claim_id: int) -> Claim:
    access = claim_access(actor, claim_id)
    show_ratings(actor, access.posting, [access.claim])
    show_parties(actor, [access.claim])
    return access.claim


def list_my_claims(
    actor: Actor, *, statuses: Sequence[str] | None, cursor: str | None, limit: int
) -> tuple[list[Claim], str | None]:
    """The user's claims, newest first, each with ``posting_brief`` attached."""
    stmt = sa.select(Claim).where(Claim.user_id == actor.id)
    if statuses:
        stmt = stmt.where(Claim.status.in_(statuses))
    items, next_cursor = paginate(db.session, stmt, [(Claim.id, True)], cursor, limit, lambda c: [c.id])
    attach_postings(items)
    load_photos(claims=items)
    return items, next_cursor


def list_posting_claims(
    actor: Actor, posting_id: int, *, statuses: Sequence[str] | None, cursor: str | None, limit: int
) -> tuple[list[Claim], str | None]:
    """A posting's claims in sign-up order (the waitlist's order too), for its managers."""
    posting = db.session.get(Posting, posting_id)
    if posting is None:
        raise NotFound()
    if not actor.manages_posting(posting):
        raise Forbidden("poster_required")
    stmt = sa.select(Claim).where(Claim.posting_id == posting.id)
    if statuses:
        stmt = stmt.where(Claim.status.in_(statuses))
    items, next_cursor = paginate(db.session, stmt, [(Claim.id, False)], cursor, limit, lambda c: [c.id])
    show_ratings(actor, posting, items)
    show_parties(actor, items)
    load_photos(claims=items)
    return items, next_cursor


def show_parties(actor: Actor, claims: Sequence[Claim]) -> None:
    """A claimant's party block (``claim.volunteer_party``) for the claimant and the
    coordinators of their branch and community (``Actor.sees_party``); two queries a page."""
    parties = visible_parties(actor, [claim.user_id for claim in claims])
    for claim in claims:
        claim.volunteer_party = parties.get(claim.user_id)


def show_ratings(actor: Actor, posting: Posting, claims: Sequence[Claim]) -> None:
    """The posting's managers — who let claimants in and confirm their work — see
    each claimant's reputation as ``claim.volunteer_rating``; nobody else does on a
    claim (the claimant has theirs on ``GET /me``). The volunteers come with the
    claims' users (one query for a whole page), never one query per claim."""
    if not actor.manages_posting(posting):
        return
    for claim in claims:
        volunteer = claim.user.volunteer
        claim.volunteer_rating = volunteer.rating if volunteer is not None else {"average": None, "count": 0}


def attach_postings(claims: Sequence[Claim]) -> None:
    """Load the postings of ``claims`` in one query as ``claim.posting_brief``."""
    ids = {c.posting_id for c in claims}
    postings = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_(ids)))} if ids else {}
    for claim in claims:
        claim.posting_brief = postings.get(claim.posting_id)


def move(claim_id: int, from_statuses: Sequence[str], *conditions: sa.ColumnElement[bool], **values) -> bool:
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


def refused(claim_id: int) -> Conflict:
    """After a refused transition (rolled back here): why an active-claim step was refused."""
    db.session.rollback()
    claim = db.session.get(Claim, claim_id)
    if claim.status == "active" and claim.check_in_at is not None:
        return Conflict("already_checked_in")
    return Conflict("claim_not_active")


def tell(user_ids: Sequence[int], kind: str, posting: Posting, claim_id: int, **context) -> None:
    """Queue a claim transition's notification, in the caller's transaction."""
    notify(
        user_ids,
        kind,
        dedupe=f"claim:{claim_id}",
        title=posting.title,
        posting_id=posting.id,
        claim_id=claim_id,
        **context,
    )


def tell_and_commit(user_ids: Sequence[int], kind: str, posting: Posting, claim_id: int, **context) -> Claim:
    """The last step of a claim transition: queue its notification, commit both."""
    tell(user_ids, kind, posting, claim_id, **context)
    db.session.commit()
    return db.session.get(Claim, claim_id)
