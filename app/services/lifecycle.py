"""Posting states that claims and postings both move: when nothing live holds a
posting, and what a posting that ended leaves behind.

A lower layer than ``app.services.postings`` and ``app.services.claims``, so the
rule "a posting past its deadline that nothing live holds has expired" has one
home whichever of them applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.geo import geocell_for
from app.models import Claim, Posting, PostingTag
from app.outbox import notify_many
from app.policy import LIVE_CLAIM_STATUSES, LIVE_POSTING_STATUSES, POLICIES


def nothing_live_holds() -> sa.ColumnElement[bool]:
    """No live claim on the posting. The counters answer for most rows without a
    look at the claims (claimed_count also counts finished claims, so a posting
    with some is checked claim by claim)."""
    live = sa.exists().where(Claim.posting_id == Posting.id, Claim.status.in_(LIVE_CLAIM_STATUSES))
    return sa.or_(sa.and_(Posting.claimed_count == 0, Posting.waitlist_count == 0), ~live)


def tag_place(kind: str, status: str, lat: float | None, lng: float | None) -> dict[str, float | int | None]:
    """The copy of a posting's point its tags carry (``posting_tags`` lat, lng,
    geocell: the index "for me" finds postings by skill around a home in): only
    while the posting can still be matched to volunteers — a kind matched to
    them, not yet over. Closed, expired, cancelled and rejected postings leave
    the index (:func:`retire_tags`), so it holds the live postings, not years of
    history. It only speeds the search up: "for me" checks the posting itself."""
    if POLICIES[kind].matched_to_volunteers and status in LIVE_POSTING_STATUSES and lat is not None:
        return {"lat": lat, "lng": lng, "geocell": geocell_for(lat, lng)}
    return {"lat": None, "lng": None, "geocell": None}


def retire_tags(posting_ids: Sequence[int]) -> None:
    """Postings that just ended leave the tag index (:func:`tag_place`)."""
    if posting_ids:
        db.session.execute(
            sa.update(PostingTag)
            .where(PostingTag.posting_id.in_(list(posting_ids)), PostingTag.geocell.is_not(None))
            .values(lat=None, lng=None, geocell=None)
            .execution_options(synchronize_session=False)
        )


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
