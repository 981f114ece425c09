"""How every posting ends by itself (the scheduler's ``expire_postings`` calls these).

- A project, charity activity, service or reward is ``closed`` once its
  ``ends_at`` has passed (its claims are settled later, see
  ``app.services.claims.settling``).
- A posting past its ``expires_at`` that nothing live holds (no active,
  waitlisted or fulfilled claim) is ``expired`` and its poster told; 24 h
  before, the poster is warned once per deadline and may extend it.

Each function moves at most ``limit`` rows in the caller's transaction and
returns how many it moved; run again, it finds nothing left to do.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.clock import utcnow
from app.models import Posting
from app.outbox import notify_many
from app.policy import EXPIRY_WARNING, LIVE_POSTING_STATUSES, RUNNING_POSTING_STATUSES, kinds_where, whole_hours
from app.services.batches import stamp, update_batch
from app.services.lifecycle import nothing_live_holds, retire_tags, tell_expired

CLOSING_KINDS = kinds_where(closes_at_end=True)


def close_ended(limit: int) -> int:
    """Postings of the closing kinds whose ``ends_at`` has passed → ``closed``."""
    now = utcnow()
    rule = (Posting.status.in_(RUNNING_POSTING_STATUSES), Posting.ends_at <= now, Posting.kind.in_(CLOSING_KINDS))
    rows = update_batch(Posting, rule, limit, {"status": "closed", "updated_at": now}, [Posting.id])
    retire_tags([posting_id for (posting_id,) in rows])
    return len(rows)


def expire_due(limit: int) -> int:
    """Live postings past ``expires_at`` that nothing live holds → ``expired``; the poster is told."""
    now = utcnow()
    rule = (Posting.status.in_(LIVE_POSTING_STATUSES), Posting.expires_at < now, nothing_live_holds())
    rows = update_batch(
        Posting,
        rule,
        limit,
        {"status": "expired", "updated_at": now},
        [Posting.id, Posting.author_id, Posting.title],
    )
    tell_expired(rows)
    retire_tags([posting_id for posting_id, _, _ in rows])
    return len(rows)


def warn_expiring(limit: int) -> int:
    """Postings that will expire within ``EXPIRY_WARNING``: the poster is warned once per deadline
    (``posting_expiring``); extending ``expires_at`` earns a new warning later."""
    now = utcnow()
    rule = (
        Posting.status.in_(LIVE_POSTING_STATUSES),
        Posting.expires_at >= now,
        Posting.expires_at <= now + EXPIRY_WARNING,
        sa.or_(Posting.expiry_warned_for.is_(None), Posting.expiry_warned_for != Posting.expires_at),
        nothing_live_holds(),
    )
    # A marker, not an edit: updated_at stays as the poster left it.
    rows = update_batch(
        Posting,
        rule,
        limit,
        {"expiry_warned_for": Posting.expires_at, "updated_at": Posting.updated_at},
        [Posting.id, Posting.author_id, Posting.title, Posting.expires_at],
    )
    notify_many(
        "posting_expiring",
        (
            (
                [author_id],
                f"posting:{posting_id}:{stamp(expires_at)}",
                {
                    "title": title,
                    "posting_id": posting_id,
                    "when": expires_at,
                    "hours": whole_hours(EXPIRY_WARNING),
                },
            )
            for posting_id, author_id, title, expires_at in rows
        ),
    )
    return len(rows)
