"""Scheduler jobs (定时任务): plain, idempotent, set-based functions.

The rules of how postings and claims end live in the services
(``app.services.postings.ending``, ``app.services.claims.deadlines``,
``…finishing.auto_confirm``, ``…reminders``); a job here only runs them in
bounded batches. A job needs an app context (the scheduler's wrapper or
``flask jobs run`` gives it one) and nothing from a request. One batch is one
transaction that

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
or rolls back whole. Each run logs one line (fields ``job``, ``rows``, ``counts``,
``duration_ms``) and counts itself in the metrics (app/metrics.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app import metrics
from app.clock import utcnow
from app.database import job_limits
from app.delivery import push_delivery
from app.extensions import db
from app.logs import log_context
from app.models import Device, IdempotencyKey, JobRun, Notification, RefreshToken, SmsCode
from app.services import deletion, nearby_alerts, photos, sms_codes
from app.services.batches import batch_of
from app.services.claims import deadlines, finishing, reminders
from app.services.postings import ending

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
DEVICE_IDLE_TTL = timedelta(days=270)
READ_NOTIFICATION_TTL = timedelta(days=180)
# SMS codes live minutes and their counters a day at most: kept two days, then gone.
SMS_TTL = timedelta(days=2)

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


def record_heartbeat(job: str, duration_ms: int, error: str | None) -> None:
    """The job's row in ``job_runs`` (``flask doctor`` reads it), in its own short
    transaction; a database that cannot take it costs the run nothing else."""
    now = utcnow()
    values = {"job": job, "last_finished_at": now, "last_duration_ms": duration_ms, "last_error": error, "runs": 1}
    if error is None:
        values["last_ok_at"] = now
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(JobRun).values(**values)
    update = {k: stmt.excluded[k] for k in values if k not in ("job", "runs")}
    stmt = stmt.on_conflict_do_update(index_elements=["job"], set_={**update, "runs": JobRun.runs + 1})
    try:
        db.session.execute(stmt)
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - the run's own outcome is already logged
        from app.database import is_unreachable

        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - the database is away: nothing to roll back
            pass
        if not is_unreachable(exc):  # an outage is the scheduler's one line (app.scheduler)
            log.warning("job %s: could not record its heartbeat", job, exc_info=True)


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
        self._context = log_context(job=self.job)
        self._context.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish(exc_type, exc)
        finally:
            self._context.__exit__(None, None, None)

    def _finish(self, exc_type, exc) -> None:
        from app.database import is_unreachable

        outage = exc is not None and is_unreachable(exc)
        if exc_type is not None:
            try:
                db.session.rollback()
            except Exception:  # noqa: BLE001 - the database is away; the pool replaces the connection
                if not outage:
                    raise
        seconds = time.monotonic() - self.started
        duration_ms = round(seconds * 1000)
        moved = {k: v for k, v in self.counts.items() if k != "batches"}
        fields = " ".join(f"{k}={v}" for k, v in self.counts.items())
        # Idle runs (most of them) go to DEBUG so a healthy log is not a wall of zeros.
        # An outage is logged once per back-off step by the scheduler (app.scheduler), not per run.
        level = logging.INFO if exc_type or self.lease_busy or any(moved.values()) else logging.DEBUG
        if outage:
            level = logging.DEBUG
        log.log(
            level,
            "job %s %s",
            self.job,
            fields,
            extra={
                "rows": sum(moved.values()),
                "counts": dict(self.counts),
                "duration_ms": duration_ms,
                "lease_busy": self.lease_busy,
                "error": exc_type.__name__ if exc_type else None,
            },
        )
        metrics.record_job_run(self.job, moved, seconds, error=exc_type is not None, lease_busy=self.lease_busy)
        if self.lease:
            metrics.record_lease(self.job, not self.lease_busy)
        if not outage:  # nothing to write it to
            record_heartbeat(self.job, duration_ms, None if exc_type is None else f"{exc_type.__name__}: {exc}")

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
        """One batch in one transaction (with the jobs' own statement timeout);
        None when the lease is held elsewhere."""
        try:
            with job_limits(db.session, current_app.config["JOB_STATEMENT_TIMEOUT_MS"]):
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


# --- expire_postings ---------------------------------------------------------------------------------------------


def expire_postings(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Every posting ends: events, services and rewards past ``ends_at`` are
    ``closed``; postings past ``expires_at`` that nothing live holds are ``expired``
    (poster told); posters are warned 24 h before ``expires_at``, once per deadline."""
    with _Run("expire_postings", ("closed", "expired", "warned"), batch_size, time_budget, lease=True) as run:
        run.drain("closed", ending.close_ended)
        run.drain("expired", ending.expire_due)
        run.drain("warned", ending.warn_expiring)
    return run.result


# --- release_overdue_claims --------------------------------------------------------------------------------------

CLAIM_COUNTERS = (
    "released",
    "reopened",
    "reminded",
    "checked_out",
    "no_show",
    "waitlist_cancelled",
    "bookings_released",
    "auto_confirmed",
)


def release_overdue_claims(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Every claim ends: active claims past ``due_at`` are ``released`` (the wish
    reopens, or expires if its own deadline passed; both sides told) and their
    claimants reminded 24 h before; events are settled ``EVENT_SETTLE_HOURS``
    after their end (checked in → checked out at the end, never came → no_show,
    still waiting → cancelled; a service's bookings never done → released);
    fulfilled claims nobody confirmed within ``AUTO_CONFIRM_DAYS`` are confirmed."""
    with _Run("release_overdue_claims", CLAIM_COUNTERS, batch_size, time_budget, lease=True) as run:

        def release(limit: int) -> int:
            released, reopened = deadlines.release_overdue(limit)
            run.counts["reopened"] += reopened
            return released

        run.drain("released", release)
        run.drain("reminded", reminders.remind_due)
        run.drain("checked_out", deadlines.settle_checked_in)
        run.drain("no_show", deadlines.settle_no_shows)
        run.drain("waitlist_cancelled", deadlines.settle_waitlist)
        run.drain("bookings_released", deadlines.release_unfinished_bookings)
        run.drain("auto_confirmed", finishing.auto_confirm)
    return run.result


# --- remind_upcoming ---------------------------------------------------------------------------------------------


def remind_upcoming(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Volunteers with an active place on an event (微项目/微公益) are reminded
    (``event_reminder``) 24 h and again 1 h before it starts, once each; someone who
    signs up later gets the reminders still due, never one for a window already past."""
    counters = tuple(f"reminded_{label}" for _, _, label in reversed(reminders.EVENT_REMINDERS))
    with _Run("remind_upcoming", counters, batch_size, time_budget, lease=True) as run:
        for stage, lead, label in reminders.EVENT_REMINDERS:
            run.drain(
                f"reminded_{label}",
                lambda limit, stage=stage, lead=lead, label=label: reminders.remind_event(limit, stage, lead, label),
            )
    return run.result


# --- alert_nearby ------------------------------------------------------------------------------------------------


def alert_nearby(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Fan out the nearby alerts (微呼百应) still requested — postings the release job
    reopened, any a request left behind, and the second wave of a party-first wish
    once it is due — one posting per transaction, oldest due request first
    (app/services/nearby_alerts.py)."""
    with _Run("alert_nearby", ("postings", "alerted"), batch_size, time_budget, lease=True) as run:
        while not run.should_stop():
            posting_id = nearby_alerts.next_requested()
            if posting_id is None:
                break
            with job_limits(db.session, current_app.config["JOB_STATEMENT_TIMEOUT_MS"]):
                if not take_lease(run.job):
                    db.session.rollback()
                    run.lease_busy = True
                    break
                alerted = nearby_alerts.fan_out(posting_id)
            if alerted is None:  # another process is fanning this posting out right now
                break
            run.counts["batches"] += 1
            run.counts["postings"] += 1
            run.counts["alerted"] += alerted
    return run.result


# --- dispatch_push -----------------------------------------------------------------------------------------------


def dispatch_push(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Drain the notification outbox to the push providers, in batches of at most
    ``batch_size`` due rows (default: the delivery layer's, 500), each answer
    recorded as it arrives (notifications/dispatch.py).

    No lease: the dispatcher hands each caller its own rows (``FOR UPDATE SKIP
    LOCKED`` on PostgreSQL), so more dispatchers simply drain faster."""
    delivery = push_delivery(current_app)
    size = batch_size or delivery.batch_size
    counters = tuple(name for name in delivery.counters if name != "pushes")
    with _Run("dispatch_push", counters, size, time_budget, lease=False) as run:
        counts = delivery.dispatch(size, should_stop=run.should_stop)
        run.counts["batches"] += counts.get("batches", 0)
        for name in counters:
            run.counts[name] += counts.get(name, 0)
    return run.result


# --- erase_accounts ----------------------------------------------------------------------------------------------

# Accounts one batch erases: each is a few dozen statements (claims withdrawn,
# postings cancelled, rows deleted), so a batch stays short whatever JOB_BATCH_SIZE is.
ERASE_BATCH_SIZE = 50


def erase_accounts(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Accounts whose deletion is due (``DELETE /me`` plus ``ACCOUNT_DELETION_DAYS``)
    are erased (app.services.personal_data): the person goes, the organisations'
    records stay under the volunteer number; each erase is in the audit log."""
    size = min(batch_size or ERASE_BATCH_SIZE, ERASE_BATCH_SIZE)
    with _Run("erase_accounts", ("erased", "postponed"), size, time_budget, lease=True) as run:

        def erase(limit: int) -> int:
            erased, postponed = deletion.erase_due(limit)
            run.counts["postponed"] += postponed
            return erased + postponed

        run.drain("erased", erase)
        run.counts["erased"] -= run.counts["postponed"]
    return run.result


# --- purge -------------------------------------------------------------------------------------------------------


def purge(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Delete what nobody needs any more: idempotency keys older than 24 h, refresh
    tokens past their expiry (used or not, they can no longer be presented),
    devices unseen for 270 days, read notifications older than 180 days, SMS
    codes and their counters older than two days."""
    counters = ("idempotency_keys", "refresh_tokens", "devices", "notifications", "sms_codes", "sms_counters")
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
        run.drain("sms_codes", lambda n: _delete(SmsCode, (SmsCode.reserved_at < now - SMS_TTL,), n))
        run.drain("sms_counters", lambda n: sms_codes.purge_counters(now - SMS_TTL, n))
    return run.result


# --- purge_photos ------------------------------------------------------------------------------------------------


def purge_photos(*, batch_size: int | None = None, time_budget: float | None = None) -> JobResult:
    """Nothing left behind in the photo storage: photos that belong to nothing —
    uploads unused for 24 h, photos taken off their posting or avatar, or whose
    posting, claim or account went — are deleted, files then rows; and once an
    upload URL has expired, the original of a photo in use is deleted once more
    (a phone may have PUT it again after the check). Each batch deletes its
    files inside its transaction: a storage that fails rolls the batch back, to
    be retried on the next run."""
    with _Run("purge_photos", ("photos_deleted", "uploads_closed"), batch_size, time_budget, lease=True) as run:
        run.drain("photos_deleted", photos.purge_photos)
        run.drain("uploads_closed", photos.close_uploads)
    return run.result


def _delete(model, rule: Sequence[sa.ColumnElement[bool]], limit: int) -> int:
    deleted = db.session.execute(
        sa.delete(model)
        .where(batch_of(model, rule, limit), *rule)
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    return len(deleted.all())
