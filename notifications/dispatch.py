"""The outbox dispatcher: claims due notification rows in batches and pushes them.

One batch (:func:`dispatch_pending`) runs in three steps, and no transaction
or row lock is open while the sender talks to FCM:

1. **Claim** — one short transaction flips up to ``batch_size`` due rows to
   ``sending`` with a lease (``lease_expires_at``) and counts the attempt.
   Due means ``pending`` with ``next_attempt_at`` reached, or ``sending``
   whose lease ran out (its dispatcher died: nothing is lost). On PostgreSQL
   the rows are picked ``FOR UPDATE SKIP LOCKED``, so dispatchers running at
   once each get their own rows; SQLite has one writer, and the claim is a
   single ``UPDATE … RETURNING``. The claim commits before anything is sent.
2. **Send** — the batch's users, devices and unread counts are read, the read
   transaction ends, and every (row, device token) becomes one push.
3. **Record** — each row's outcome is written, guarded by ``push_status =
   'sending' AND lease_expires_at = <our lease>``: a dispatcher that lost its
   lease (it was too slow and another one reclaimed the row) cannot overwrite
   the newer result. Dead tokens are deleted.

A row ends as:

``sent``
    at least one of the user's devices accepted it (``sent_at``). Other
    devices' errors are kept in ``last_error``.
``pending`` again
    no device accepted it and some answered a transient error (quota,
    unavailable, internal, a connection that never opened): retried after an
    exponential back-off with jitter (30 s, 1 min, 2 min, … capped at 1 h; at
    least the provider's ``Retry-After``), for ``PUSH_RETRY_HOURS`` (24) after
    the notification was written. Also a row whose user is in quiet hours
    right now: it waits until they end, and that does not count as an attempt.
``failed``
    a permanent error, or still transient ``PUSH_RETRY_HOURS`` after it was
    written (or after ``MAX_ATTEMPTS`` claims, which only dispatchers dying
    over and over reach); ``last_error`` keeps the error.
``skipped``
    nothing to send, with the reason in ``last_error``: ``muted`` (the user
    muted the kind), ``batched`` (set when the row was written: the user
    already had a push of this kind within its ``PUSH_INTERVALS``),
    ``no_devices`` (the user has no registered device) or ``no_devices: …``
    (every token turned out dead and was deleted). The inbox row is the
    message either way: push is best effort, the inbox is the truth.

Push is at-least-once: a dispatcher that dies after FCM accepted a message but
before recording it sends that message again once its lease expires. Every
push carries ``notification_id`` in its ``data``, so the app can drop a
repeat. A send whose answer timed out is not repeated (see senders/fcm.py).

``PUSH_LEASE_SECONDS`` (config, default 300) is the lease: longer than the
slowest batch can take (500 messages in parallel, each at most
``longest_send_seconds`` — the app refuses to start with ``PUSH_BACKEND=fcm``
and a lease that is not), short enough that a dead dispatcher's rows go out
again within minutes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from app import metrics
from app.clock import as_utc, utcnow
from app.extensions import db
from app.models import Device, Notification, User
from notifications import push_payload, quiet_hours_end
from notifications.senders import PushMessage, PushResult, PushSender, get_sender
from notifications.templates import TIME_CRITICAL_KINDS

log = logging.getLogger(__name__)

# Claims of one row before it is given up whatever its age: only dispatchers that
# die over and over reach it (24 h of transient errors take about 40 attempts).
MAX_ATTEMPTS = 100
DEFAULT_LEASE_SECONDS = 300  # well above a 500-message send_each with 10 s timeouts and SDK retries
DEFAULT_RETRY_HOURS = 24
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 3600

_sender_lock = threading.Lock()
_SENDER_KEY = "push_sender"


def current_sender() -> PushSender:
    """The app's sender (``PUSH_BACKEND``), built once per app and shared by its threads."""
    app = current_app._get_current_object()
    sender = app.extensions.get(_SENDER_KEY)
    if sender is None:
        with _sender_lock:
            sender = app.extensions.get(_SENDER_KEY)
            if sender is None:
                sender = app.extensions[_SENDER_KEY] = get_sender(app.config)
    return sender


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    user_id: int
    kind: str
    title: str
    body: str
    data: dict
    push_attempts: int
    last_error: str | None
    created_at: datetime


COUNTERS = ("claimed", "sent", "retried", "failed", "skipped", "deferred", "pushes", "tokens_deleted")


@dataclass
class _Batch:
    """One claimed batch between its claim and its record."""

    rows: list[ClaimedRow]
    claimed_at: datetime
    lease: datetime
    outcomes: dict[int, Outcome]
    messages: list[PushMessage]


def dispatch_pending(batch_size: int = 500, sender: PushSender | None = None) -> dict[str, int]:
    """Claim one batch of due rows, push them and record the results.

    Returns counts: ``claimed``, ``sent``, ``retried``, ``failed``, ``skipped``,
    ``deferred`` (quiet hours), ``pushes`` (messages handed to the sender) and
    ``tokens_deleted``. Call it in an app context.
    """
    sender = sender or current_sender()
    batch = _claim_and_plan(batch_size)
    if batch is None:
        return {name: 0 for name in COUNTERS}
    return _record(batch, _send(sender, batch.messages))


def dispatch_until_empty(
    batch_size: int = 500,
    sender: PushSender | None = None,
    *,
    max_batches: int | None = None,
    budget_seconds: float | None = None,
) -> dict[str, int]:
    """Dispatch batch after batch until nothing is due (or ``max_batches`` /
    ``budget_seconds`` is reached); returns the summed counts and ``batches``.

    Pipelined: while one batch is on the wire (the sender, on a thread of its
    own, touches no database), this thread records the batch before it and
    claims and plans the next, so the network no longer waits for the
    database work between batches. Each batch is still claimed, sent and
    recorded exactly as :func:`dispatch_pending` does. The budget is checked
    between batches; a batch already claimed is always sent and recorded
    (its rows would otherwise wait for their lease to run out).
    """
    sender = sender or current_sender()
    app = current_app._get_current_object()
    total: Counter[str] = Counter()
    started = time.monotonic()

    def send(messages: list[PushMessage]) -> list[PushResult]:
        with app.app_context():
            return _send(sender, messages)

    def may_claim_another(claimed: int) -> bool:
        if max_batches is not None and claimed >= max_batches:
            return False
        return budget_seconds is None or time.monotonic() - started < budget_seconds

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="push-send") as wire:
        batch = _claim_and_plan(batch_size)
        claimed = 1 if batch is not None else 0
        sent: tuple[_Batch, Future] | None = None  # on the wire or back, not yet recorded
        while batch is not None:
            in_flight = wire.submit(send, batch.messages)
            if sent is not None:
                total.update(_record(sent[0], sent[1].result()))
                total["batches"] += 1
            sent = (batch, in_flight)
            batch = None
            if may_claim_another(claimed):
                batch = _claim_and_plan(batch_size)
                claimed += batch is not None
        if sent is not None:
            total.update(_record(sent[0], sent[1].result()))
            total["batches"] += 1
    return dict(total)


def _claim_and_plan(batch_size: int) -> _Batch | None:
    """Step 1 and the reading part of step 2; None when nothing is due."""
    now = utcnow()
    lease = now + timedelta(seconds=int(current_app.config.get("PUSH_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)))
    rows = claim_batch(batch_size, now, lease)
    if not rows:
        return None
    outcomes, messages = plan_batch(rows, now)  # ends its read transaction
    return _Batch(rows, now, lease, outcomes, messages)


def _record(batch: _Batch, results: list[PushResult]) -> dict[str, int]:
    """Step 3: each row's outcome from its messages' results; the batch's counts."""
    counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
    counts["claimed"] = len(batch.rows)
    counts["pushes"] = len(batch.messages)
    for result in results:
        metrics.PUSH_RESULTS.labels(result.outcome).inc()
    by_row: dict[int, list[tuple[PushMessage, PushResult]]] = defaultdict(list)
    for message, result in zip(batch.messages, results, strict=True):
        by_row[message.notification_id].append((message, result))
    done_at = utcnow()
    horizon = timedelta(hours=float(current_app.config.get("PUSH_RETRY_HOURS", DEFAULT_RETRY_HOURS)))
    outcomes = dict(batch.outcomes)
    for row in batch.rows:
        if row.id not in outcomes:
            outcomes[row.id] = row_outcome(row, by_row[row.id], done_at, horizon)
    dead_tokens = {m.token for pairs in by_row.values() for m, r in pairs if r.outcome == "dead_token"}
    counts["tokens_deleted"] = record_results(outcomes, batch.lease, dead_tokens, claimed_at=batch.claimed_at)
    for outcome in outcomes.values():
        counts[outcome.counter] += 1
        metrics.PUSH_NOTIFICATIONS.labels(outcome.counter).inc()
    return dict(counts)


# --- 1. claim -----------------------------------------------------------------------


def claim_batch(limit: int, now: datetime, lease: datetime) -> list[ClaimedRow]:
    """Lease up to ``limit`` due rows to this dispatcher and commit.

    Two conditional UPDATEs in one short transaction: first rows whose lease
    expired (a dead dispatcher's), then ``pending`` rows in due order. They are
    separate so each walks the ``(push_status, next_attempt_at)`` index in
    order; one ``ORDER BY id`` over ``pending OR expired`` would make
    PostgreSQL walk the primary key through every row ever sent.
    """
    # an alias, so the subquery is not correlated to the table being updated
    n = Notification.__table__.alias("due")
    expired = sa.select(n.c.id).where(n.c.push_status == "sending", n.c.lease_expires_at < now).order_by(n.c.id)
    # ORDER BY next_attempt_at alone, so the index hands rows over in order and
    # LIMIT stops early (an id tie-break would make PostgreSQL sort every due row).
    due = (
        sa.select(n.c.id).where(n.c.push_status == "pending", n.c.next_attempt_at <= now).order_by(n.c.next_attempt_at)
    )
    rows: list[ClaimedRow] = []
    try:
        for pick in (expired, due):
            if len(rows) >= limit:
                break
            rows.extend(_claim(pick.limit(limit - len(rows)), lease))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return rows


def _claim(pick: sa.Select, lease: datetime) -> list[ClaimedRow]:
    table = Notification.__table__
    if db.session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(table)
        .where(table.c.id.in_(pick))
        .values(push_status="sending", lease_expires_at=lease, push_attempts=table.c.push_attempts + 1)
        .returning(
            table.c.id,
            table.c.user_id,
            table.c.kind,
            table.c.title,
            table.c.body,
            table.c.data,
            table.c.push_attempts,
            table.c.last_error,
            table.c.created_at,
        )
    )
    return [ClaimedRow(*row) for row in db.session.execute(stmt).all()]


# --- 2. plan and send --------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What to write back to one row."""

    status: str  # sent | pending | failed | skipped
    counter: str  # which count it adds to
    next_attempt_at: datetime | None = None
    error: str | None = None
    sent_at: datetime | None = None
    refund_attempt: bool = False  # a quiet-hours deferral is not an attempt


def plan_batch(rows: list[ClaimedRow], now: datetime) -> tuple[dict[int, Outcome], list[PushMessage]]:
    """Settle the rows that need no push (muted, quiet hours, no device, out of attempts)
    and build one message per device for the rest; ends the read transaction."""
    user_ids = {row.user_id for row in rows}
    users = {
        uid: (tz, start, end, muted or [])
        for uid, tz, start, end, muted in db.session.execute(
            sa.select(User.id, User.timezone, User.quiet_start, User.quiet_end, User.muted_kinds).where(
                User.id.in_(user_ids)
            )
        )
    }
    devices: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for uid, token, platform in db.session.execute(
        sa.select(Device.user_id, Device.token, Device.platform).where(Device.user_id.in_(user_ids)).order_by(Device.id)
    ):
        devices[uid].append((token, platform))
    badge_users = {uid for uid, devs in devices.items() if any(p == "ios" for _, p in devs)}
    unread = _unread_counts(badge_users) if badge_users else {}
    db.session.commit()  # nothing to write; ends the snapshot before the network call

    outcomes: dict[int, Outcome] = {}
    messages: list[PushMessage] = []
    for row in rows:
        user = users.get(row.user_id)
        if row.push_attempts > MAX_ATTEMPTS:
            # reclaimed after its dispatchers died MAX_ATTEMPTS times: give up, keep the story
            error = f"gave up after {MAX_ATTEMPTS} attempts" + (f"; last: {row.last_error}" if row.last_error else "")
            outcomes[row.id] = Outcome("failed", "failed", error=error[:500])
            continue
        if user is None:
            outcomes[row.id] = Outcome("skipped", "skipped", error="no_user")
            continue
        tz, start, end, muted = user
        if row.kind in muted:
            outcomes[row.id] = Outcome("skipped", "skipped", error="muted")
            continue
        quiet_until = quiet_hours_end(now, tz, start, end)
        if quiet_until is not None:
            outcomes[row.id] = Outcome(
                "pending", "deferred", next_attempt_at=quiet_until, error=row.last_error, refund_attempt=True
            )
            continue
        if not devices.get(row.user_id):
            outcomes[row.id] = Outcome("skipped", "skipped", error="no_devices")
            continue
        data = push_payload(row.id, row.data)
        posting_id = data.get("posting_id")
        for token, platform in devices[row.user_id]:
            messages.append(
                PushMessage(
                    notification_id=row.id,
                    token=token,
                    platform=platform,
                    title=row.title,
                    body=row.body,
                    data=data,
                    collapse_key=f"posting-{posting_id}" if posting_id else None,
                    high_priority=row.kind in TIME_CRITICAL_KINDS,
                    badge=unread.get(row.user_id, 0) if platform == "ios" else None,
                )
            )
    return outcomes, messages


def _unread_counts(user_ids: set[int]) -> dict[int, int]:
    n = Notification
    stmt = sa.select(n.user_id, sa.func.count()).where(n.user_id.in_(user_ids), n.read_at.is_(None)).group_by(n.user_id)
    return dict(db.session.execute(stmt).all())


def _send(sender: PushSender, messages: list[PushMessage]) -> list[PushResult]:
    """The sender's results; a sender that breaks its contract makes every message a retry."""
    if not messages:
        return []
    try:
        results = list(sender.send(messages))
    except Exception as exc:  # noqa: BLE001 - the batch must still be recorded
        log.exception("push sender %s failed", getattr(sender, "name", sender))
        return [PushResult("retry", f"sender error: {type(exc).__name__}: {exc}"[:500]) for _ in messages]
    if len(results) != len(messages):
        log.error("push sender returned %d results for %d messages", len(results), len(messages))
        return [PushResult("retry", "sender returned a wrong number of results") for _ in messages]
    return results


def row_outcome(
    row: ClaimedRow,
    pairs: list[tuple[PushMessage, PushResult]],
    now: datetime,
    horizon: timedelta = timedelta(hours=DEFAULT_RETRY_HOURS),
) -> Outcome:
    """Fold the per-device results of one row into its outcome."""
    results = [result for _, result in pairs]
    # a send may carry a note too ("unconfirmed: …", an answer that timed out)
    errors = [r.error for r in results if r.error]
    first_error = errors[0][:500] if errors else None
    if any(r.outcome == "sent" for r in results):
        return Outcome("sent", "sent", sent_at=now, error=first_error)
    transient = [r for r in results if r.outcome == "retry"]
    if transient:
        error = (transient[0].error or "transient error")[:500]
        give_up_at = as_utc(row.created_at) + horizon
        if now >= give_up_at or row.push_attempts >= MAX_ATTEMPTS:
            return Outcome("failed", "failed", error=f"gave up: {error}"[:500])
        least = max((r.retry_after or 0.0) for r in transient)
        retry_at = min(now + backoff(row.push_attempts, least), give_up_at)
        return Outcome("pending", "retried", next_attempt_at=retry_at, error=error)
    if any(r.outcome == "failed" for r in results):
        return Outcome("failed", "failed", error=first_error)
    # every token was dead (and is deleted): the user has no device left
    return Outcome("skipped", "skipped", error=f"no_devices: {first_error}"[:500] if first_error else "no_devices")


def backoff(attempts: int, at_least: float = 0.0) -> timedelta:
    """Exponential back-off with jitter after ``attempts`` tries: 30 s · 2^(n−1),
    capped at an hour, drawn from [½, 1] of that (so retries of one outage spread)."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return timedelta(seconds=max(delay, at_least))


# --- 3. record ---------------------------------------------------------------------------


def record_results(
    outcomes: dict[int, Outcome], lease: datetime, dead_tokens: set[str], *, claimed_at: datetime
) -> int:
    """Write every row's outcome (only where our lease still holds) and delete dead
    tokens; returns how many devices were deleted."""
    table = Notification.__table__
    stmt = (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("b_id"),
            table.c.push_status == "sending",
            table.c.lease_expires_at == sa.bindparam("b_lease"),
        )
        .values(
            push_status=sa.bindparam("b_status"),
            next_attempt_at=sa.func.coalesce(
                sa.bindparam("b_next", type_=table.c.next_attempt_at.type), table.c.next_attempt_at
            ),
            lease_expires_at=None,
            sent_at=sa.bindparam("b_sent_at", type_=table.c.sent_at.type),
            last_error=sa.bindparam("b_error"),
            push_attempts=table.c.push_attempts - sa.bindparam("b_refund"),
        )
    )
    params = [
        {
            "b_id": row_id,
            "b_lease": lease,
            "b_status": o.status,
            "b_next": o.next_attempt_at,
            "b_sent_at": o.sent_at,
            "b_error": o.error,
            "b_refund": 1 if o.refund_attempt else 0,
        }
        for row_id, o in outcomes.items()
    ]
    deleted = 0
    try:
        if params:
            db.session.execute(stmt, params)
        if dead_tokens:
            # a token re-registered after this batch was claimed is a fresh registration: keep it
            result = db.session.execute(
                sa.delete(Device.__table__).where(
                    Device.__table__.c.token.in_(sorted(dead_tokens)), Device.__table__.c.last_seen_at <= claimed_at
                )
            )
            deleted = result.rowcount or 0
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return deleted
