"""Review (审核): a resident's wish waits for its coordinators before it goes public.

Everyone who may review a posting is told when it starts waiting
(``posting_submitted``: when posted, and when an edit sends it back); the push
of that kind is coalesced to one per reviewer per 10 minutes (see
``app.outbox.templates.PUSH_INTERVALS``), the inbox keeps each.

Every state change is a conditional UPDATE whose WHERE clause is the rule
("only a pending posting can be approved"), so two reviewers racing, or an
edit racing a claim, cannot both win.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow
from app.errors import Conflict, Forbidden
from app.extensions import db
from app.models import Posting
from app.outbox import notify
from app.policy import LIVE_POSTING_STATUSES
from app.services import nearby_alerts
from app.services.audit import audit
from app.services.batches import stamp
from app.services.lifecycle import retire_tags
from app.services.permissions import Actor, reviewers_of
from app.services.postings.views import PostingView, view_of, visible_posting


def ask_for_review(posting: Posting) -> None:
    """``posting`` (just flushed in ``pending_review``) waits for review: tell its
    reviewers, in the caller's transaction. One query finds them, one INSERT
    writes their rows, however many coordinators the district has."""
    notify(
        reviewers_of(posting),
        "posting_submitted",
        dedupe=f"posting:{posting.id}:{stamp(utcnow())}",
        title=posting.title,
        posting_id=posting.id,
    )


def approve_posting(actor: Actor, posting_id: int) -> PostingView:
    """pending_review → open; the author is told, and the volunteers nearby (微呼百应).
    An org-less wish gets its recording org: the approving coordinator's org in
    its district (the lowest id when they coordinate several there; none for an
    admin who coordinates none there — its service then records nothing)."""
    posting = _review(actor, posting_id, "open", None)
    nearby_alerts.request_alerts([posting.id])
    db.session.commit()
    nearby_alerts.send_requested([posting.id])
    return view_of(actor, posting)


def reject_posting(actor: Actor, posting_id: int, reason: str) -> PostingView:
    """pending_review → rejected with a reason the author is told."""
    _review(actor, posting_id, "rejected", reason.strip())
    db.session.commit()
    return view_of(actor, db.session.get(Posting, posting_id))


def _review(actor: Actor, posting_id: int, status: str, reason: str | None) -> Posting:
    """One reviewer's decision on a pending posting, told to its author and audited
    (the caller commits). A posting re-reviewed after an edit is told again."""
    posting = visible_posting(actor, posting_id)
    if not actor.reviews_posting(posting):
        raise Forbidden("coordinator_required")
    now = utcnow()
    values = {}
    if status == "open" and posting.org_id is None:
        # 谁组织谁记录: the approver's org records the service done on this wish.
        values["recording_org_id"] = actor.coordinated_org_in(posting.district)
    transition(
        posting,
        "pending_review",
        "posting_not_pending",
        status=status,
        reviewed_by=actor.id,
        reviewed_at=now,
        review_note=reason,
        **values,
    )
    kind = "posting_approved" if status == "open" else "posting_rejected"
    context = {"reason": reason} if reason else {}
    notify(
        [posting.author_id],
        kind,
        dedupe=f"posting:{posting.id}:{stamp(now)}",
        title=posting.title,
        posting_id=posting.id,
        **context,
    )
    audit(actor.id, f"posting.{'approve' if status == 'open' else 'reject'}", "posting", posting.id, **context)
    return posting


def transition(posting: Posting, from_status: str | Sequence[str], conflict: str, **values: Any) -> None:
    """One conditional UPDATE from ``from_status``; 409 ``conflict`` if the posting
    is no longer there (someone else won)."""
    allowed = [from_status] if isinstance(from_status, str) else list(from_status)
    done = db.session.execute(
        sa.update(Posting)
        .where(Posting.id == posting.id, Posting.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        db.session.rollback()
        raise Conflict(conflict)
    if values.get("status", posting.status) not in LIVE_POSTING_STATUSES:
        retire_tags([posting.id])
    db.session.refresh(posting)
