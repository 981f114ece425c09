"""Scheduler jobs (定时任务): plain, idempotent, set-based functions.

A job needs an app context (the scheduler's wrapper or ``flask jobs run``
gives it one) and nothing from a request. It works in bounded batches; one
batch is one transaction that

1. takes the job's lease: on PostgreSQL ``pg_try_advisory_xact_lock`` on a
   stable per-job key, so two scheduler processes never work one job at the
   same moment (the process that misses the lease ends its run; SQLite's single
   writer needs nothing more);
2. moves at most ``batch_size`` rows with one conditional
   ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED) AND <the rule>
   RETURNING …``, so a row changes state once however many runs race for it;
3. queues the notifications of exactly the rows it moved, each with a dedupe
   key, so one event never notifies twice.

A run ends when a batch comes back short (nothing left), when its time budget
is spent, or when a stop was requested (SIGTERM): the batch in flight commits
or rolls back whole. Each run logs one line with its counts and duration.

The reminders remember what they sent on the row itself
(``Posting.expiry_warned_for``, ``Claim.due_reminded_at``,
``Claim.reminder_stage``), so a run never rescans events it already handled.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app.clock import utcnow
from app.extensions import db
from app.models import Claim, Device, IdempotencyKey, Notification, Posting, RefreshToken
from app.services.claims import release_wish_slots
from notifications import notify_many
from notifications.dispatch import current_sender, dispatch_pending
from notifications.nearby import alert_nearby_volunteers

log = logging.getLogger(__name__)

EXPIRY_WARNING = timedelta(hours=24)  # posting_expiring this long before expires_at
DUE_WARNING = timedelta(hours=24)  # claim_due_soon this long before due_at
# (stage, lead time, label) of the event reminders, the nearest first
EVENT_REMINDERS = ((2, timedelta(hours=1), "1h"), (1, timedelta(hours=24), "24h"))
DISPATCH_BATCH_SIZE = 500
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
DEVICE_IDLE_TTL = timedelta(days=270)
READ_NOTIFICATION_TTL = timedelta(days=180)

# A posting expires while nobody holds it: still in review, or open and unclaimed.
EXPIRABLE_STATUSES = ("open", "pending_review")
EVENT_KINDS = ("project", "charity")
EVENT_LIVE_STATUSES = ("open", "full")

JobResult = dict[str, int]

_stop = threading.Event()


def request_stop() -> None:
    """Ask running jobs to stop after their current batch (SIGTERM)."""
    _stop.set()


def clear_stop() -> None:
    """Let jobs run again after :func:`request_stop` (tests, a restarted embedded scheduler)."""
    _stop.clear()


def lease_key(job: str) -> int:
    """The job's advisory-lock key: a stable signed 64-bit hash of its name."""
    digest = hashlib.blake2b(f"yongzhiyuan-job:{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def take_lease(job: str) -> bool:
    """Take the job's lease for the current transaction; False when another process holds it."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    return bool(db.session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(lease_key(job)))).scalar())


class _Run:
    """One run of a job: its batches, counts, budget and log line."""

    def __init__(
        self, job: str, counters: Sequence[str], batch_size: int | None, time_budget: float | None, *, lease: bool
    ) -> None:
        self.job = job
        self.lease = lease
        self.batch_size = max(1, batch_size or current_app.config["JOB_BATCH_SIZE"])
        self.started = time.monotonic()
        self.deadline = None if time_budget is None else self.started + time_budget
        self.counts: Counter[str] = Counter({name: 0 for name in counters})
        self.counts["batches"] = 0
        self.lease_busy = False

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            db.session.rollback()
        duration_ms = round((time.monotonic() - self.started) * 1000)
        moved = {k: v for k, v in self.counts.items() if k != "batches"}
        fields = " ".join(f"{k}={v}" for k, v in self.counts.items())
        outcome = f"error={exc_type.__name__}" if exc_type else f"lease_busy={int(self.lease_busy)}"
        # Idle runs (most of them) go to DEBUG so a healthy log is not a wall of zeros.
        level = logging.INFO if exc_type or self.lease_busy or any(moved.values()) else logging.DEBUG
        log.log(level, "job %s %s %s duration_ms=%d", self.job, fields, outcome, duration_ms)

    @property
    def result(self) -> JobResult:
        return {**self.counts, "lease_busy": int(self.lease_busy)}

    def should_stop(self) -> bool:
        return self.lease_busy or _stop.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)

    def drain(self, counter: str, step: Callable[[int], int]) -> None:
        """Run ``step(limit)`` one transaction at a time until it moves fewer than ``limit`` rows."""
        while not self.should_stop():
            moved = self.batch(step)
            if moved is None:
                return
            self.counts[counter] += moved
            if moved < self.batch_size:
                return

    def batch(self, step: Callable[[int], int]) -> int | None:
        """One batch in one transaction; None when the lease is held elsewhere."""
        try:
            if self.lease and not take_lease(self.job):
                db.session.rollback()
                self.lease_busy = True
                return None
            moved = step(self.batch_size)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        self.counts["batches"] += 1
        return moved


def _batch_of(model, rule: Sequence[sa.ColumnElement[bool]], limit: int) -> sa.ColumnElement[bool]:
    """``id IN (up to limit ids matching rule)``, rows another batch holds skipped.

    Callers repeat the rule in the outer statement, so a row changed since the
    subquery saw it is re-checked against its latest version.
    """
    ids = sa.select(model.id).where(*rule).limit(limit)
    if db.session.get_bind().dialect.name != "postgresql":
        # SQLite: no row locks, one writer, and an uncorrelated IN list built once.
        # (Not a CTE: sqlite3 opens no transaction for a statement starting with WITH.)
        return model.id.in_(ids.correlate(None).scalar_subquery())
    # PostgreSQL: the ids come from a materialised CTE. As a plain ``IN (SELECT …
    # LIMIT n FOR UPDATE SKIP LOCKED)`` the subquery may be rescanned per candidate
    # row, skip the rows this very statement just updated, and so move more than n.
    batch = (
        ids.with_for_update(skip_locked=True)
        .cte(f"{model.__tablename__}_batch")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return model.id.in_(sa.select(batch.c.id))


def _stamp(value) -> str:
    return value.strftime("%Y%m%dT%H%M%SZ")


# --- expire_postings ---------------------------------------------------------------------------------------------


def expire_postings(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Postings nobody holds (``open`` and unclaimed, or still ``pending_review``) past
    ``expires_at`` become ``expired`` and their poster is told (``posting_expired``).
    Within 24 h of ``expires_at`` the poster is warned once per deadline
    (``posting_expiring``); extending ``expires_at`` earns a new warning later."""
    with _Run("expire_postings", ("expired", "warned"), batch_size, time_budget, lease=True) as run:
        run.drain("expired", _expire_batch)
        run.drain("warned", _warn_expiring_batch)
    return run.result


def _expire_batch(limit: int) -> int:
    now = utcnow()
    rule = (Posting.status.in_(EXPIRABLE_STATUSES), Posting.expires_at < now, Posting.claimed_count == 0)
    rows = db.session.execute(
        sa.update(Posting)
        .where(_batch_of(Posting, rule, limit), *rule)
        .values(status="expired", updated_at=now)
        .returning(Posting.id, Posting.author_id, Posting.title)
        .execution_options(synchronize_session=False)
    ).all()
    notify_many(
        "posting_expired",
        (
            ([author_id], f"posting:{posting_id}", {"title": title, "posting_id": posting_id})
            for posting_id, author_id, title in rows
        ),
    )
    return len(rows)


def _warn_expiring_batch(limit: int) -> int:
    now = utcnow()
    rule = (
        Posting.status.in_(EXPIRABLE_STATUSES),
        Posting.claimed_count == 0,
        Posting.expires_at >= now,
        Posting.expires_at <= now + EXPIRY_WARNING,
        sa.or_(Posting.expiry_warned_for.is_(None), Posting.expiry_warned_for != Posting.expires_at),
    )
    rows = db.session.execute(
        sa.update(Posting)
        .where(_batch_of(Posting, rule, limit), *rule)
        # A marker, not an edit: updated_at stays as the poster left it.
        .values(expiry_warned_for=Posting.expires_at, updated_at=Posting.updated_at)
        .returning(Posting.id, Posting.author_id, Posting.title, Posting.expires_at)
        .execution_options(synchronize_session=False)
    ).all()
    notify_many(
        "posting_expiring",
        (
            (
                [author_id],
                f"posting:{posting_id}:{_stamp(expires_at)}",
                {"title": title, "posting_id": posting_id, "when": expires_at},
            )
            for posting_id, author_id, title, expires_at in rows
        ),
    )
    return len(rows)


# --- release_overdue_claims --------------------------------------------------------------------------------------


def release_overdue_claims(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Active wish claims past ``due_at`` become ``released``: the wish is ``open`` again
    (and again eligible for nearby alerts), the volunteer gets the claim allowance
    back, and both the poster and the volunteer are told (``claim_released``).
    Within 24 h of ``due_at`` the volunteer is reminded once (``claim_due_soon``)."""
    with _Run(
        "release_overdue_claims", ("released", "reopened", "reminded"), batch_size, time_budget, lease=True
    ) as run:
        run.drain("released", lambda limit: _release_batch(limit, run.counts))
        run.drain("reminded", _remind_due_batch)
    return run.result


def _release_batch(limit: int, counts: Counter[str]) -> int:
    now = utcnow()
    rule = (Claim.status == "active", Claim.kind == "wish", Claim.due_at < now)
    # The claims service locks a posting before its claims; so does this batch, or a
    # volunteer withdrawing right now could deadlock with it. Postings a request is
    # busy with are left for the next run (SKIP LOCKED).
    overdue = sa.select(Claim.posting_id).where(*rule).limit(limit).scalar_subquery()
    posting_ids = db.session.scalars(
        sa.select(Posting.id).where(Posting.id.in_(overdue)).order_by(Posting.id).with_for_update(skip_locked=True)
    ).all()
    if not posting_ids:
        return 0
    released = db.session.execute(
        sa.update(Claim)
        .where(Claim.posting_id.in_(posting_ids), *rule)
        .values(status="released", ended_at=now, updated_at=now)
        .returning(Claim.id, Claim.posting_id, Claim.user_id)
        .execution_options(synchronize_session=False)
    ).all()
    if not released:
        return 0
    by_count: dict[int, list[int]] = defaultdict(list)
    for posting_id, count in Counter(posting_id for _, posting_id, _ in released).items():
        by_count[count].append(posting_id)
    postings = {}
    for count, posting_ids in by_count.items():
        for row in db.session.execute(
            sa.update(Posting)
            .where(Posting.id.in_(posting_ids))
            .values(
                claimed_count=sa.case((Posting.claimed_count >= count, Posting.claimed_count - count), else_=0),
                status=sa.case((Posting.status.in_(("claimed", "full")), "open"), else_=Posting.status),
                updated_at=now,
            )
            .returning(Posting.id, Posting.author_id, Posting.title, Posting.status, Posting.expires_at)
            .execution_options(synchronize_session=False)
        ):
            postings[row.id] = row
    # Sorted, so two batches touching the same volunteers lock them in one order.
    release_wish_slots(sorted(user_id for _, _, user_id in released))
    notify_many(
        "claim_released",
        (
            (
                [postings[posting_id].author_id, user_id],
                f"claim:{claim_id}",
                {"title": postings[posting_id].title, "posting_id": posting_id, "claim_id": claim_id},
            )
            for claim_id, posting_id, user_id in released
            if posting_id in postings
        ),
    )
    reopened = [p.id for p in postings.values() if p.status == "open" and (p.expires_at is None or p.expires_at > now)]
    counts["reopened"] += len(reopened)
    _alert_reopened(reopened)
    return len(released)


def _alert_reopened(posting_ids: list[int]) -> None:
    """A wish back on the board is news again for the volunteers nearby (微呼百应)."""
    if not posting_ids:
        return
    reopened = sa.select(Posting).where(Posting.id.in_(posting_ids)).order_by(Posting.id)
    for posting in db.session.scalars(reopened.execution_options(populate_existing=True)):
        alert_nearby_volunteers(posting)


def _remind_due_batch(limit: int) -> int:
    now = utcnow()
    rule = (
        Claim.status == "active",
        Claim.kind == "wish",
        Claim.due_at >= now,
        Claim.due_at <= now + DUE_WARNING,
        Claim.due_reminded_at.is_(None),
    )
    rows = db.session.execute(
        sa.update(Claim)
        .where(_batch_of(Claim, rule, limit), *rule)
        .values(due_reminded_at=now, updated_at=Claim.updated_at)
        .returning(Claim.id, Claim.posting_id, Claim.user_id, Claim.due_at)
        .execution_options(synchronize_session=False)
    ).all()
    titles = _titles({posting_id for _, posting_id, _, _ in rows})
    notify_many(
        "claim_due_soon",
        (
            (
                [user_id],
                f"claim:{claim_id}",
                {"title": titles.get(posting_id), "posting_id": posting_id, "claim_id": claim_id, "when": due_at},
            )
            for claim_id, posting_id, user_id, due_at in rows
        ),
    )
    return len(rows)


def _titles(posting_ids: set[int]) -> dict[int, str]:
    if not posting_ids:
        return {}
    return dict(db.session.execute(sa.select(Posting.id, Posting.title).where(Posting.id.in_(posting_ids))).all())


# --- remind_upcoming ---------------------------------------------------------------------------------------------


def remind_upcoming(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Volunteers with an active place on a project or charity (微项目/微公益) are reminded
    (``event_reminder``) 24 h and again 1 h before it starts, once each; someone who
    signs up later gets the reminders still due, never one for a window already past."""
    with _Run("remind_upcoming", ("reminded_24h", "reminded_1h"), batch_size, time_budget, lease=True) as run:
        for stage, lead, label in EVENT_REMINDERS:
            run.drain(
                f"reminded_{label}",
                lambda limit, stage=stage, lead=lead, label=label: _remind_event_batch(limit, stage, lead, label),
            )
    return run.result


def _remind_event_batch(limit: int, stage: int, lead: timedelta, label: str) -> int:
    now = utcnow()
    # Each stage owns its own window, so a claim inside the last hour never gets the 24-hour text.
    nearer = [s_lead for s, s_lead, _ in EVENT_REMINDERS if s > stage]
    window_start = now + max(nearer) if nearer else now
    events = sa.select(Posting.id).where(
        Posting.kind.in_(EVENT_KINDS),
        Posting.status.in_(EVENT_LIVE_STATUSES),
        Posting.starts_at > window_start,
        Posting.starts_at <= now + lead,
    )
    rule = (
        Claim.status == "active",
        Claim.kind.in_(EVENT_KINDS),
        Claim.reminder_stage < stage,
        Claim.check_in_at.is_(None),
        Claim.posting_id.in_(events.scalar_subquery()),
    )
    rows = db.session.execute(
        sa.update(Claim)
        .where(_batch_of(Claim, rule, limit), *rule)
        .values(reminder_stage=stage, updated_at=Claim.updated_at)
        .returning(Claim.id, Claim.posting_id, Claim.user_id)
        .execution_options(synchronize_session=False)
    ).all()
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


# --- dispatch_push -----------------------------------------------------------------------------------------------

DISPATCH_COUNTERS = ("claimed", "sent", "retried", "failed", "skipped", "deferred", "tokens_deleted")


def dispatch_push(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Drain the notification outbox to the push sender, one batch of at most
    ``batch_size`` (default 500, FCM's limit per call) due rows at a time.

    No lease: the dispatcher hands each caller its own rows (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL), so more dispatchers simply drain faster."""
    size = batch_size or DISPATCH_BATCH_SIZE
    with _Run("dispatch_push", DISPATCH_COUNTERS, size, time_budget, lease=False) as run:
        sender = current_sender()
        while not run.should_stop():
            counts = dispatch_pending(size, sender)
            if counts.get("claimed"):
                run.counts["batches"] += 1
            for name in DISPATCH_COUNTERS:
                run.counts[name] += counts.get(name, 0)
            if counts.get("claimed", 0) < size:
                break
    return run.result


# --- purge -------------------------------------------------------------------------------------------------------


def purge(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Delete what nobody needs any more: idempotency keys older than 24 h, refresh
    tokens past their expiry (used or not, they can no longer be presented),
    devices unseen for 270 days, read notifications older than 180 days."""
    counters = ("idempotency_keys", "refresh_tokens", "devices", "notifications")
    with _Run("purge", counters, batch_size, time_budget, lease=True) as run:
        now = utcnow()
        run.drain(
            "idempotency_keys",
            lambda n: _delete(IdempotencyKey, (IdempotencyKey.created_at < now - IDEMPOTENCY_KEY_TTL,), n),
        )
        run.drain("refresh_tokens", lambda n: _delete(RefreshToken, (RefreshToken.expires_at < now,), n))
        run.drain("devices", lambda n: _delete(Device, (Device.last_seen_at < now - DEVICE_IDLE_TTL,), n))
        run.drain(
            "notifications",
            lambda n: _delete(
                Notification,
                (Notification.created_at < now - READ_NOTIFICATION_TTL, Notification.read_at.is_not(None)),
                n,
            ),
        )
    return run.result


def _delete(model, rule: Sequence[sa.ColumnElement[bool]], limit: int) -> int:
    deleted = db.session.execute(
        sa.delete(model)
        .where(_batch_of(model, rule, limit), *rule)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    return len(deleted.all())
