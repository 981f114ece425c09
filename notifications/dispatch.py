"""The outbox dispatcher: claims due notification rows, pushes them to every device
of their user through that device's provider, and records each answer as it arrives.

A batch (at most ``batch_size`` rows) goes through three steps, and no
transaction or row lock is open while a provider talks to its service:

1. **Claim** — one short transaction flips up to ``batch_size`` due rows to
   ``sending`` with a lease (``lease_expires_at``) and counts the attempt.
   Due means ``pending`` with ``next_attempt_at`` reached, or ``sending``
   whose lease ran out (its dispatcher died: nothing is lost). On PostgreSQL
   the rows are picked ``FOR UPDATE SKIP LOCKED``, so dispatchers running at
   once each get their own rows; SQLite has one writer, and the claim is a
   single ``UPDATE … RETURNING``. The claim commits before anything is sent.
2. **Plan and send** — the batch's users, devices, unread counts and earlier
   deliveries are read, the read transaction ends, and every (row, device
   still without an answer) becomes one push, routed to the device's provider
   (notifications/senders: ``fcm``, ``jpush``; ``log`` or ``memory`` stand in
   for both in development and tests). Each provider sends its share on a
   thread of its own, so one provider's outage never holds up another's.
3. **Record, as answers arrive** — answers are written every
   :data:`FLUSH_ANSWERS` answers or :data:`FLUSH_SECONDS`, whichever comes
   first, one short transaction each: a row whose devices have all answered is
   settled, guarded by ``push_status = 'sending' AND lease_expires_at = <our
   lease>`` (a dispatcher that lost its lease cannot overwrite a newer result);
   a device that answered for a row still waiting on another device gets a
   ``push_deliveries`` row, so no later attempt sends to it again; dead
   devices are deleted. While one batch is on the wire, the next is claimed
   and queued behind it, so the wire never waits for the database.

A row ends as:

``sent``
    every device has answered and at least one accepted it (``sent_at``, the
    first acceptance). Other devices' errors are kept in ``last_error``.
``pending`` again
    some device answered a transient error (quota, unavailable, a rate limit,
    a connection that never opened) or its provider is misconfigured (keys
    refused, or no enabled provider serves it): only those devices are tried
    again, after an exponential back-off with jitter (30 s, 1 min, 2 min, …
    capped at 1 h; at least the provider's ``Retry-After`` or rate-limit
    reset), for ``PUSH_RETRY_HOURS`` (24) after the notification was written —
    then it is ``sent`` if some device got it, else ``failed``. The devices
    that answered keep a ``push_deliveries`` row meanwhile: with FCM down, a
    user's JPush phone gets the message now and the Android phone on FCM when
    FCM is back, each once. Also a row whose user is in quiet hours right now:
    it waits until they end, and that does not count as an attempt.
``failed``
    a permanent error on every device, or still transient ``PUSH_RETRY_HOURS``
    after it was written with no device reached (or after ``MAX_ATTEMPTS``
    claims, which only dispatchers dying over and over reach); ``last_error``
    keeps the error.
``skipped``
    nothing to send, with the reason in ``last_error``: ``muted`` (the user
    muted the kind), ``batched`` (set when the row was written: the user
    already had a push of this kind within its ``PUSH_INTERVALS``),
    ``no_devices`` (the user has no registered device) or ``no_devices: …``
    (every device turned out dead and was deleted). The inbox row is the
    message either way: push is best effort, the inbox is the truth.

Push is at-least-once: a dispatcher that dies after a provider accepted a
message but before recording the answer sends that message again once its
lease expires — at most the messages on the wire and the answers of the last
:data:`FLUSH_SECONDS` (bench/push.py ``--kill`` measures it). Every push
carries ``notification_id`` in its ``data``, so the app can drop a repeat. A
send whose answer timed out is not repeated (see senders/fcm.py).

``PUSH_LEASE_SECONDS`` (config, default 300) is the lease: longer than the
slowest batch can take (each provider refuses to start with a lease that is
not), short enough that a dead dispatcher's rows go out again within minutes.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask, current_app

from app import metrics
from app.clock import as_utc, utcnow
from app.extensions import db
from app.models import Device, Notification, PushDelivery, User
from app.outbox import push_payload, quiet_hours_end
from app.outbox.templates import TIME_CRITICAL_KINDS
from notifications.senders import PushMessage, PushResult, Router

log = logging.getLogger(__name__)

# Claims of one row before it is given up whatever its age: only dispatchers that
# die over and over reach it (24 h of transient errors take about 40 attempts).
MAX_ATTEMPTS = 100
DEFAULT_LEASE_SECONDS = 300
DEFAULT_RETRY_HOURS = 24
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 3600
DEFAULT_BATCH_SIZE = 500
# Answers are written at least this often (seconds) and in groups of at most this many.
FLUSH_SECONDS = 0.1
FLUSH_ANSWERS = 100
# Outcomes after which a device needs nothing more for a row.
DONE_OUTCOMES = frozenset({"sent", "failed", "dead_token"})
WAITING_OUTCOMES = frozenset({"retry", "misconfigured"})

# What one dispatch run counts (the dispatch_push job reports the same names).
COUNTERS = ("claimed", "sent", "retried", "failed", "skipped", "deferred", "pushes", "tokens_deleted")

_router_lock = threading.Lock()
_ROUTER_KEY = "push_router"


def current_router(app: Flask | None = None) -> Router:
    """The app's enabled providers (``PUSH_BACKEND``), built once per app and shared by its threads."""
    app = app or current_app._get_current_object()
    router = app.extensions.get(_ROUTER_KEY)
    if router is None:
        with _router_lock:
            router = app.extensions.get(_ROUTER_KEY)
            if router is None:
                router = app.extensions[_ROUTER_KEY] = Router(app.config)
    return router


def close_router(app: Flask) -> None:
    """Close the app's providers (their pools and sessions); the next dispatch builds them again."""
    router = app.extensions.pop(_ROUTER_KEY, None)
    if router is not None:
        router.close()


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


@dataclass(frozen=True)
class Outcome:
    """What to write back to one row."""

    status: str  # sent | pending | failed | skipped
    counter: str  # which count it adds to
    next_attempt_at: datetime | None = None
    error: str | None = None
    sent_at: datetime | None = None
    refund_attempt: bool = False  # a quiet-hours deferral is not an attempt


@dataclass
class _Batch:
    """One claimed batch between its claim and its record."""

    rows: dict[int, ClaimedRow]
    claimed_at: datetime
    lease: datetime
    settled: dict[int, Outcome]  # rows that need no push
    messages: list[PushMessage]
    earlier: dict[int, list[tuple[str, str | None]]]  # row -> (outcome, error) of devices answered before


def dispatch_pending(batch_size: int = DEFAULT_BATCH_SIZE, router: Router | None = None) -> dict[str, int]:
    """Claim one batch of due rows, push them and record the answers; returns the counts
    (``claimed``, ``sent``, ``retried``, ``failed``, ``skipped``, ``deferred`` (quiet
    hours), ``pushes`` (messages handed to providers) and ``tokens_deleted``). Call it in
    an app context."""
    counts = dispatch_until_empty(batch_size, router, max_batches=1)
    counts.pop("batches", None)
    return counts


def dispatch_until_empty(
    batch_size: int = DEFAULT_BATCH_SIZE,
    router: Router | None = None,
    *,
    max_batches: int | None = None,
    budget_seconds: float | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, int]:
    """Dispatch batch after batch until nothing is due (or ``max_batches``,
    ``budget_seconds`` or ``should_stop()`` says enough); returns the summed counts
    and ``batches``. A batch already claimed is always sent and recorded (its rows
    would otherwise wait for their lease to run out)."""
    router = router or current_router()
    started = time.monotonic()
    flow = _Flow(router, current_app._get_current_object())

    def may_claim_another(claimed: int) -> bool:
        if max_batches is not None and claimed >= max_batches:
            return False
        if should_stop is not None and should_stop():
            return False
        return budget_seconds is None or time.monotonic() - started < budget_seconds

    batch = _claim_and_plan(batch_size)
    claimed = 1 if batch is not None else 0
    claiming = batch is not None
    low_water = batch_size  # claim the next batch as soon as at most one is left on the wire
    while batch is not None or flow.outstanding:
        if batch is not None:
            flow.submit(batch)
            batch = None
        # record answers as they arrive until at most one batch is left on the wire and the
        # answers not yet written are at most one write's worth: a busy recorder holds back the
        # next batch rather than let answers pile up unwritten (what a kill -9 would resend)
        while flow.outstanding and (flow.on_wire > low_water or flow.backlog > FLUSH_ANSWERS or not claiming):
            flow.receive()
        if claiming and may_claim_another(claimed):
            batch = _claim_and_plan(batch_size)
            claimed += batch is not None
            claiming = batch is not None
        else:
            claiming = False
    flow.flush()
    flow.log_answers()
    counts = {name: flow.counts[name] for name in COUNTERS}
    counts["batches"] = claimed
    return counts


def _claim_and_plan(batch_size: int) -> _Batch | None:
    """Step 1 and the reading part of step 2; None when nothing is due."""
    now = utcnow()
    lease = now + timedelta(seconds=int(current_app.config.get("PUSH_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)))
    rows = claim_batch(batch_size, now, lease)
    if not rows:
        return None
    settled, messages, earlier = plan_batch(rows, now)  # ends its read transaction
    return _Batch({row.id: row for row in rows}, now, lease, settled, messages, earlier)


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


def plan_batch(
    rows: list[ClaimedRow], now: datetime
) -> tuple[dict[int, Outcome], list[PushMessage], dict[int, list[tuple[str, str | None]]]]:
    """Settle the rows that need no push (muted, quiet hours, no device, out of attempts)
    and build one message per device still without an answer for the rest; ends the
    read transaction. Returns (settled rows, messages, earlier answers per row)."""
    user_ids = {row.user_id for row in rows}
    users = {
        uid: (tz, start, end, muted or [])
        for uid, tz, start, end, muted in db.session.execute(
            sa.select(User.id, User.timezone, User.quiet_start, User.quiet_end, User.muted_kinds).where(
                User.id.in_(user_ids)
            )
        )
    }
    devices: dict[int, list[tuple[int, str, str, str]]] = defaultdict(list)
    for uid, device_id, token, platform, provider in db.session.execute(
        sa.select(Device.user_id, Device.id, Device.token, Device.platform, Device.provider)
        .where(Device.user_id.in_(user_ids))
        .order_by(Device.id)
    ):
        devices[uid].append((device_id, token, platform, provider))
    answered: dict[int, set[int]] = defaultdict(set)
    earlier: dict[int, list[tuple[str, str | None]]] = defaultdict(list)
    retried = [row.id for row in rows if row.push_attempts > 1]  # a first attempt has no earlier answers
    if retried:
        for row_id, device_id, outcome, error in db.session.execute(
            sa.select(
                PushDelivery.notification_id, PushDelivery.device_id, PushDelivery.outcome, PushDelivery.error
            ).where(PushDelivery.notification_id.in_(retried))
        ):
            answered[row_id].add(device_id)
            earlier[row_id].append((outcome, error))
    badge_users = {uid for uid, devs in devices.items() if any(d[2] == "ios" for d in devs)}
    unread = _unread_counts(badge_users) if badge_users else {}
    db.session.commit()  # nothing to write; ends the snapshot before the network call

    settled: dict[int, Outcome] = {}
    messages: list[PushMessage] = []
    for row in rows:
        user = users.get(row.user_id)
        if row.push_attempts > MAX_ATTEMPTS:
            # reclaimed after its dispatchers died MAX_ATTEMPTS times: give up, keep the story
            error = f"gave up after {MAX_ATTEMPTS} attempts" + (f"; last: {row.last_error}" if row.last_error else "")
            reached = any(outcome == "sent" for outcome, _ in earlier.get(row.id, ()))
            settled[row.id] = Outcome("sent" if reached else "failed", "failed", error=error[:500])
            continue
        if user is None:
            settled[row.id] = Outcome("skipped", "skipped", error="no_user")
            continue
        tz, start, end, muted = user
        if row.kind in muted:
            settled[row.id] = Outcome("skipped", "skipped", error="muted")
            continue
        quiet_until = quiet_hours_end(now, tz, start, end)
        if quiet_until is not None:
            settled[row.id] = Outcome(
                "pending", "deferred", next_attempt_at=quiet_until, error=row.last_error, refund_attempt=True
            )
            continue
        waiting = [d for d in devices.get(row.user_id, ()) if d[0] not in answered.get(row.id, ())]
        if not waiting:
            if earlier.get(row.id):  # every device answered before the last attempt ended
                settled[row.id] = row_outcome(row, [], now, earlier=earlier[row.id])
            else:
                settled[row.id] = Outcome("skipped", "skipped", error="no_devices")
            continue
        data = push_payload(row.id, row.data)
        posting_id = data.get("posting_id")
        for device_id, token, platform, provider in waiting:
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
                    device_id=device_id,
                    provider=provider,
                )
            )
    return settled, messages, dict(earlier)


def _unread_counts(user_ids: set[int]) -> dict[int, int]:
    n = Notification
    stmt = sa.select(n.user_id, sa.func.count()).where(n.user_id.in_(user_ids), n.read_at.is_(None)).group_by(n.user_id)
    return dict(db.session.execute(stmt).all())


def row_outcome(
    row: ClaimedRow,
    results: list[PushResult],
    now: datetime,
    horizon: timedelta = timedelta(hours=DEFAULT_RETRY_HOURS),
    *,
    earlier: Iterable[tuple[str, str | None]] = (),
) -> Outcome:
    """Fold this attempt's answers of one row (and its devices' earlier answers) into its outcome."""
    earlier = list(earlier)
    # a send may carry a note too ("unconfirmed: …", an answer that timed out)
    errors = [r.error for r in results if r.error] + [e for _, e in earlier if e]
    first_error = errors[0][:500] if errors else None
    reached_now = any(r.outcome == "sent" for r in results)
    reached = reached_now or any(outcome == "sent" for outcome, _ in earlier)
    waiting = [r for r in results if r.outcome in WAITING_OUTCOMES]
    if waiting:
        error = (waiting[0].error or "transient error")[:500]
        give_up_at = as_utc(row.created_at) + horizon
        if now >= give_up_at or row.push_attempts >= MAX_ATTEMPTS:
            if reached:
                return Outcome("sent", "sent", sent_at=now if reached_now else None, error=f"gave up: {error}"[:500])
            return Outcome("failed", "failed", error=f"gave up: {error}"[:500])
        least = max((r.retry_after or 0.0) for r in waiting)
        retry_at = min(now + backoff(row.push_attempts, least), give_up_at)
        return Outcome(
            "pending", "retried", next_attempt_at=retry_at, error=error, sent_at=now if reached_now else None
        )
    if reached:
        return Outcome("sent", "sent", sent_at=now if reached_now else None, error=first_error)
    if any(r.outcome == "failed" for r in results) or any(outcome == "failed" for outcome, _ in earlier):
        return Outcome("failed", "failed", error=first_error)
    # every device was dead (and is deleted): the user has no device left
    return Outcome("skipped", "skipped", error=f"no_devices: {first_error}"[:500] if first_error else "no_devices")


def backoff(attempts: int, at_least: float = 0.0) -> timedelta:
    """Exponential back-off with jitter after ``attempts`` tries: 30 s · 2^(n−1),
    capped at an hour, drawn from [½, 1] of that (so retries of one outage spread)."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return timedelta(seconds=max(delay, at_least))


# --- 3. record, as answers arrive ---------------------------------------------------------------------


@dataclass
class _RowState:
    batch: _Batch
    expected: int
    answers: list[tuple[PushMessage, str, PushResult]] = field(default_factory=list)
    stored: set[int] = field(default_factory=set)  # device ids whose answer is in push_deliveries


class _Flow:
    """The batches on the wire: answers arrive on a queue (fed by the router's
    threads, which touch no database) and are written here, on the caller's thread."""

    def __init__(self, router: Router, app: Flask) -> None:
        self.router = router
        self.app = app
        self.answers: queue.Queue = queue.Queue()
        self.rows: dict[int, _RowState] = {}
        self.outstanding = 0  # answers not yet taken from the queue
        self.on_wire = 0  # messages not yet answered by their provider
        self._wire_lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.by_provider: dict[str, Counter[str]] = defaultdict(Counter)
        self.horizon = timedelta(hours=float(app.config.get("PUSH_RETRY_HOURS", DEFAULT_RETRY_HOURS)))
        self._ready: list[int] = []  # rows whose every device answered
        self._partial: set[int] = set()  # rows with answers to keep before the rest arrive
        self._settled: list[tuple[int, datetime, Outcome]] = []
        self._finished: list[int] = []  # settled rows whose earlier deliveries can go
        self._dead: dict[str, datetime] = {}  # token -> its batch's claim time
        self._buffered = 0
        self._answer_counts: Counter[tuple[str, str]] = Counter()  # for the metrics, at each write
        self._last_flush = time.monotonic()

    def submit(self, batch: _Batch) -> None:
        self.counts["claimed"] += len(batch.rows)
        self.counts["pushes"] += len(batch.messages)
        for row_id, outcome in batch.settled.items():
            self._settled.append((row_id, batch.lease, outcome))
            if batch.earlier.get(row_id) and outcome.status != "pending":
                self._finished.append(row_id)
        expected = Counter(m.notification_id for m in batch.messages)
        for row_id, count in expected.items():
            self.rows[row_id] = _RowState(batch, count)
        if not batch.messages:
            return
        self.outstanding += len(batch.messages)
        with self._wire_lock:
            self.on_wire += len(batch.messages)
        messages = batch.messages
        put = self.answers.put

        def answered(answer: tuple[int, str, PushResult]) -> None:
            # on the providers' threads: straight onto this flow's queue
            with self._wire_lock:
                self.on_wire -= 1
            put((messages[answer[0]], answer[1], answer[2]))

        self.router.start_sending(messages, answered)

    @property
    def backlog(self) -> int:
        """Answers that have arrived and are not written yet."""
        return self.outstanding - self.on_wire + self._buffered

    def receive(self) -> None:
        """Take every answer that has arrived, waiting for the first at most until the
        next write is due; write them when due. Answers are taken in bulk, not woken
        for one by one."""
        wait = max(0.0, FLUSH_SECONDS - (time.monotonic() - self._last_flush))
        try:
            first = self.answers.get(timeout=wait)
        except queue.Empty:
            first = None
        if first is not None:
            self._take(first)
            try:
                while True:  # everything already there: one write however far behind we are
                    self._take(self.answers.get_nowait())
            except queue.Empty:
                pass
        if self._buffered >= FLUSH_ANSWERS or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def _take(self, answer: tuple[PushMessage, str, PushResult]) -> None:
        message, provider, result = answer
        self.outstanding -= 1
        self._buffered += 1
        self.by_provider[provider][result.outcome] += 1
        self._answer_counts[provider, result.outcome] += 1
        state = self.rows[message.notification_id]
        state.answers.append((message, provider, result))
        if result.outcome == "dead_token":
            self._dead[message.token] = state.batch.claimed_at
        if len(state.answers) == state.expected:
            self._ready.append(message.notification_id)
            self._partial.discard(message.notification_id)
        elif result.outcome in ("sent", "failed"):
            self._partial.add(message.notification_id)

    def flush(self) -> None:
        """Write every answer taken so far, in one short transaction."""
        now = utcnow()
        deliveries: list[dict] = []
        finished: list[int] = []
        for row_id in self._ready:
            state = self.rows.pop(row_id)
            row = state.batch.rows[row_id]
            earlier = state.batch.earlier.get(row_id, [])
            outcome = row_outcome(row, [r for _, _, r in state.answers], now, self.horizon, earlier=earlier)
            self._settled.append((row_id, state.batch.lease, outcome))
            if outcome.status == "pending":
                deliveries += self._deliveries(row_id, state, now)
            elif earlier or state.stored:
                finished.append(row_id)
        for row_id in self._partial:
            deliveries += self._deliveries(row_id, self.rows[row_id], now)
        finished += self._finished
        if self._settled or deliveries or self._dead:
            deleted = record_results(self._settled, self._dead, deliveries=deliveries, finished=set(finished))
            self.counts["tokens_deleted"] += deleted
            for _, _, outcome in self._settled:
                self.counts[outcome.counter] += 1
                metrics.PUSH_NOTIFICATIONS.labels(outcome.counter).inc()
        self._ready, self._settled, self._dead, self._finished = [], [], {}, []
        self._partial = set()
        for (provider, outcome), count in self._answer_counts.items():
            metrics.PUSH_RESULTS.labels(provider, outcome).inc(count)
        self._answer_counts.clear()
        self._buffered = 0
        self._last_flush = time.monotonic()

    @staticmethod
    def _deliveries(row_id: int, state: _RowState, now: datetime) -> list[dict]:
        """Rows of ``push_deliveries`` for the devices of ``row_id`` that answered for good."""
        rows = []
        for message, provider, result in state.answers:
            if result.outcome in ("sent", "failed") and message.device_id not in state.stored:
                state.stored.add(message.device_id)
                rows.append(
                    {
                        "notification_id": row_id,
                        "device_id": message.device_id,
                        "provider": provider,
                        "outcome": result.outcome,
                        "error": (result.error or None) and result.error[:500],
                        "answered_at": now,
                    }
                )
        return rows

    def log_answers(self) -> None:
        """One line per provider that answered: how its devices answered."""
        for provider, answers in sorted(self.by_provider.items()):
            level = logging.INFO if set(answers) - {"sent"} else logging.DEBUG
            log.log(
                level,
                "push provider=%s %s",
                provider,
                " ".join(f"{k}={v}" for k, v in sorted(answers.items())),
                extra={"provider": provider, "answers": dict(answers)},
            )


def record_results(
    settled: list[tuple[int, datetime, Outcome]],
    dead_tokens: dict[str, datetime],
    *,
    deliveries: list[dict] = (),
    finished: set[int] = frozenset(),
) -> int:
    """Write every row's outcome (only where its lease still holds), the devices'
    answers of rows still waiting on others, forget the deliveries of settled rows,
    and delete dead devices; returns how many devices were deleted."""
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
            sent_at=sa.func.coalesce(table.c.sent_at, sa.bindparam("b_sent_at", type_=table.c.sent_at.type)),
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
        for row_id, lease, o in settled
    ]
    deleted = 0
    try:
        if params:
            db.session.execute(stmt, params)
        if deliveries:
            db.session.execute(_insert_deliveries(), list(deliveries))
        if finished:
            db.session.execute(
                sa.delete(PushDelivery.__table__).where(PushDelivery.__table__.c.notification_id.in_(sorted(finished)))
            )
        by_claim: dict[datetime, list[str]] = defaultdict(list)
        for token, claimed_at in dead_tokens.items():
            by_claim[claimed_at].append(token)
        devices = Device.__table__
        for claimed_at, tokens in by_claim.items():
            # a token re-registered after its batch was claimed is a fresh registration: keep it
            result = db.session.execute(
                sa.delete(devices).where(devices.c.token.in_(sorted(tokens)), devices.c.last_seen_at <= claimed_at)
            )
            deleted += result.rowcount or 0
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return deleted


def _insert_deliveries():
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(PushDelivery).on_conflict_do_nothing(index_elements=["notification_id", "device_id"])
