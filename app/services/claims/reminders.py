"""Reminders before a claim's deadline or an event's start (markers on the claim row,
so each is queued once; a run never rescans what it already handled)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.models import Claim, Posting
from app.outbox import notify_many
from app.policy import DUE_WARNING, RUNNING_POSTING_STATUSES, kinds_where, whole_hours
from app.services.batches import update_batch
from app.services.lifecycle import titles

# (stage, lead time, label) of the event reminders, the nearest first
EVENT_REMINDERS = ((2, timedelta(hours=1), "1h"), (1, timedelta(hours=24), "24h"))
REMINDED_KINDS = kinds_where(event_reminders=True)


def remind_due(limit: int) -> int:
    """Active claims due within ``DUE_WARNING``: the claimant is reminded once (``claim_due_soon``)."""
    now = utcnow()
    rule = (
        Claim.status == "active",
        Claim.due_at >= now,
        Claim.due_at <= now + DUE_WARNING,
        Claim.due_reminded_at.is_(None),
    )
    rows = update_batch(
        Claim,
        rule,
        limit,
        {"due_reminded_at": now, "updated_at": Claim.updated_at},
        [Claim.id, Claim.posting_id, Claim.user_id, Claim.due_at],
    )
    names = titles({posting_id for _, posting_id, _, _ in rows})
    notify_many(
        "claim_due_soon",
        (
            (
                [user_id],
                f"claim:{claim_id}",
                {
                    "title": names.get(posting_id),
                    "posting_id": posting_id,
                    "claim_id": claim_id,
                    "when": due_at,
                    "hours": whole_hours(DUE_WARNING),
                },
            )
            for claim_id, posting_id, user_id, due_at in rows
        ),
    )
    return len(rows)


def remind_event(limit: int, stage: int, lead: timedelta, label: str) -> int:
    """Claimants with a place on an event starting within ``lead`` are reminded
    (``event_reminder``) once for this ``stage``; each stage owns its window, so a
    claim inside the last hour never gets the 24-hour text."""
    now = utcnow()
    nearer = [s_lead for s, s_lead, _ in EVENT_REMINDERS if s > stage]
    window_start = now + max(nearer) if nearer else now
    events = sa.select(Posting.id).where(
        Posting.kind.in_(REMINDED_KINDS),
        Posting.status.in_(RUNNING_POSTING_STATUSES),
        Posting.starts_at > window_start,
        Posting.starts_at <= now + lead,
    )
    rule = (
        Claim.status == "active",
        Claim.kind.in_(REMINDED_KINDS),
        Claim.reminder_stage < stage,
        Claim.check_in_at.is_(None),
        Claim.posting_id.in_(events.scalar_subquery()),
    )
    rows = update_batch(
        Claim,
        rule,
        limit,
        {"reminder_stage": stage, "updated_at": Claim.updated_at},
        [Claim.id, Claim.posting_id, Claim.user_id],
    )
    if not rows:
        return 0
    postings = {
        p.id: p
        for p in db.session.execute(
            sa.select(Posting.id, Posting.title, Posting.starts_at).where(Posting.id.in_({r.posting_id for r in rows}))
        )
    }
    notify_many(
        "event_reminder",
        (
            (
                [user_id],
                f"claim:{claim_id}:{label}",
                {
                    "title": postings[posting_id].title,
                    "when": postings[posting_id].starts_at,
                    "posting_id": posting_id,
                    "claim_id": claim_id,
                },
            )
            for claim_id, posting_id, user_id in rows
        ),
    )
    return len(rows)
