"""Editing and cancelling a posting."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.errors import Conflict, Forbidden
from app.extensions import db
from app.models import Posting, PostingTag
from app.policy import LIVE_POSTING_STATUSES, POLICIES
from app.services.audit import audit
from app.services.claims import cancel_claims_for_posting
from app.services.permissions import Actor
from app.services.postings.fields import (
    BENEFICIARY_FIELDS,
    PLAIN_FIELDS,
    REVIEWED_COLUMNS,
    apply_location,
    check_fields,
    move_tags,
    no_beneficiary,
    normalise_tags,
    tag_rows,
    trimmed,
)
from app.services.postings.reviewing import ask_for_review, transition
from app.services.postings.views import PostingView, view_of, visible_posting


def update_posting(actor: Actor, posting_id: int, changes: Mapping[str, Any]) -> PostingView:
    """Edit a posting (its managers). Once anything is claimed (or waitlisted) only
    ``expires_at`` may change, and only later: extending is always allowed (wishes:
    up to 90 days from now). Checked in the UPDATE itself, so a claim landing
    meanwhile wins. A resident changing what a reviewer approved (text, place,
    photos, tags) sends the posting back to review."""
    posting = visible_posting(actor, posting_id)
    if not actor.manages_posting(posting):
        raise Forbidden("poster_required")
    if posting.status not in LIVE_POSTING_STATUSES:
        raise Conflict("posting_not_editable")
    policy = POLICIES[posting.kind]
    if "beneficiary" in changes:
        if not policy.has_beneficiary:
            raise no_beneficiary(policy)
        if not actor.coordinates_posting(posting):
            raise Forbidden("coordinator_required")

    current = {name: getattr(posting, name) for name in (*PLAIN_FIELDS, *BENEFICIARY_FIELDS)}
    current.update(lat=posting.lat, lng=posting.lng, geocell=posting.geocell)
    new: dict[str, Any] = trimmed({name: changes[name] for name in PLAIN_FIELDS if name in changes})
    if "photo_urls" in new and new["photo_urls"] is None:
        new["photo_urls"] = []
    if "location" in changes:
        apply_location(new, changes["location"])
    if "beneficiary" in changes:
        beneficiary = changes["beneficiary"]
        new.update(
            beneficiary_name=beneficiary["name"],
            beneficiary_phone=beneficiary.get("phone"),
            beneficiary_address=beneficiary.get("address"),
        )
    # A client may send the whole form back: only real changes count (and need
    # the posting to be unclaimed).
    new = {name: value for name, value in new.items() if current.get(name) != value}
    merged = {**current, **new}
    check_fields(policy, merged, utcnow(), changed=set(new))
    new = {name: merged[name] for name in new}  # with the defaults check_fields filled in
    new_tags = normalise_tags(changes["tags"]) if "tags" in changes else None
    if new_tags == posting.tag_names:
        new_tags = None
    changed = set(new) | ({"tags"} if new_tags is not None else set())
    if not changed:
        return view_of(actor, posting)

    stmt = sa.update(Posting).where(Posting.id == posting.id, Posting.status.in_(LIVE_POSTING_STATUSES))
    if policy.reviewed and posting.status == "open" and changed & REVIEWED_COLUMNS:
        if not actor.coordinates_posting(posting):
            # What the reviewer approved is no longer what is shown.
            new.update(status="pending_review", reviewed_by=None, reviewed_at=None)
            stmt = stmt.where(Posting.status == "open")

    nothing_claimed = sa.and_(Posting.claimed_count == 0, Posting.waitlist_count == 0)
    if changed == {"expires_at"}:
        stmt = stmt.where(
            sa.or_(nothing_claimed, Posting.expires_at.is_(None), Posting.expires_at <= new["expires_at"])
        )
    else:
        stmt = stmt.where(nothing_claimed)
    done = db.session.execute(stmt.values(updated_at=utcnow(), **new).execution_options(synchronize_session=False))
    if not done.rowcount:
        db.session.rollback()
        db.session.refresh(posting)
        if posting.status not in LIVE_POSTING_STATUSES:
            raise Conflict("posting_not_editable")
        raise Conflict("posting_claimed")
    if new_tags is not None:
        # Core statements: the ORM would see a re-added tag as a conflicting identity.
        db.session.execute(
            sa.delete(PostingTag)
            .where(PostingTag.posting_id == posting.id)
            .execution_options(synchronize_session=False)
        )
        if new_tags:
            rows = tag_rows(new_tags, posting.kind, new.get("status", posting.status), merged["lat"], merged["lng"])
            db.session.execute(sa.insert(PostingTag), [{"posting_id": posting.id, **row} for row in rows])
    elif "lat" in new or "lng" in new:
        move_tags(posting.id, posting.kind, new.get("status", posting.status), merged["lat"], merged["lng"])
    if new.get("status") == "pending_review":
        db.session.refresh(posting)  # its reviewers are those of the edited district
        ask_for_review(posting)
    db.session.commit()
    db.session.refresh(posting)
    return view_of(actor, posting)


def cancel_posting(actor: Actor, posting_id: int, reason: str | None = None, *, commit: bool = True) -> PostingView:
    """Take a posting down (its managers): its live claims are cancelled (energy
    refunded) and their volunteers told, in the same transaction (``commit=False``:
    the caller's, e.g. the erase of its author's account)."""
    posting = visible_posting(actor, posting_id)
    if not actor.manages_posting(posting):
        raise Forbidden("poster_required")
    reason = (reason or "").strip() or None
    transition(posting, LIVE_POSTING_STATUSES, "posting_not_cancellable", status="cancelled", cancel_reason=reason)
    cancel_claims_for_posting(posting)
    if not actor.is_author(posting):
        audit(actor.id, "posting.cancel", "posting", posting.id, reason=reason)
    if commit:
        db.session.commit()
    return view_of(actor, posting)
