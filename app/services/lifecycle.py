"""Posting states that claims and postings both move: when nothing live holds a posting.

A lower layer than ``app.services.postings`` and ``app.services.claims``, so the
rule "a posting past its deadline that nothing live holds has expired" has one
home whichever of them applies it.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Claim, Posting
from app.policy import LIVE_CLAIM_STATUSES
from notifications import notify_many


def nothing_live_holds() -> sa.ColumnElement[bool]:
    """No live claim on the posting. The counters answer for most rows without a
    look at the claims (claimed_count also counts finished claims, so a posting
    with some is checked claim by claim)."""
    live = sa.exists().where(Claim.posting_id == Posting.id, Claim.status.in_(LIVE_CLAIM_STATUSES))
    return sa.or_(sa.and_(Posting.claimed_count == 0, Posting.waitlist_count == 0), ~live)


def tell_expired(rows) -> None:
    """``posting_expired`` to the posters of ``rows`` of (id, author_id, title)."""
    notify_many(
        "posting_expired",
        (
            ([author_id], f"posting:{posting_id}", {"title": title, "posting_id": posting_id})
            for posting_id, author_id, title in rows
        ),
    )


def expired_or_reopened() -> sa.ColumnElement[str]:
    """The status of a posting that just got a place back: ``expired`` when its
    deadline has passed and nothing live holds it any more, else ``open``."""
    return sa.case(
        (sa.and_(Posting.expires_at.is_not(None), Posting.expires_at <= utcnow(), nothing_live_holds()), "expired"),
        else_="open",
    )


def titles(posting_ids: set[int]) -> dict[int, str]:
    if not posting_ids:
        return {}
    return dict(db.session.execute(sa.select(Posting.id, Posting.title).where(Posting.id.in_(posting_ids))).all())
