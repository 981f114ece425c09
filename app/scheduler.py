"""The scheduler (APScheduler 3.x): the job table, built into a scheduler and run.

``flask --app wsgi scheduler run`` runs a ``BlockingScheduler`` as its own
process; that is the production shape. Gunicorn workers never start one (each
would run every job). For the one-command local run only,
``SCHEDULER_EMBEDDED=1`` starts a ``BackgroundScheduler`` inside the
development server (``flask run``), once, in the process that serves requests.

Every job runs in UTC with ``coalesce=True`` (a late or sleeping host runs a
missed job once, not once per missed interval), ``max_instances=1`` and
``misfire_grace_time=60``, and fires once at start-up, then at its interval.
Jobs are referenced as ``module:function`` text; the scheduler calls
:func:`run_job`, which runs the job inside an app context. A run stops taking
new batches after 80 % of its interval, so the next run is never skipped for
overlapping it. Several scheduler processes may run: the per-job lease
(app/jobs.py) makes the others standbys.

Job (every, by default; the environment variable that sets it) and what it does:

- ``expire_postings`` (60 s; ``JOB_EXPIRE_POSTINGS_SECONDS``): events, services
  and rewards past ``ends_at`` → ``closed``; postings past ``expires_at`` that
  nothing live holds → ``expired``; the poster is warned 24 h before.
- ``release_overdue_claims`` (60 s; ``JOB_RELEASE_OVERDUE_CLAIMS_SECONDS``): claims
  past ``due_at`` → ``released``, the wish reopened (the claimant is reminded
  24 h before); events settled ``EVENT_SETTLE_HOURS`` after their end; fulfilled
  claims confirmed after ``AUTO_CONFIRM_DAYS``.
- ``remind_upcoming`` (60 s; ``JOB_REMIND_UPCOMING_SECONDS``): volunteers of a
  project or charity reminded 24 h and 1 h before it starts.
- ``alert_nearby`` (5 s; ``JOB_ALERT_NEARBY_SECONDS``): the nearby alerts
  (微呼百应) of postings that opened and were not fanned out at once (the
  release job's reopened wishes, a fan-out that met a lock), and a wish's second
  wave once ``PARTY_FIRST_MINUTES`` have passed (its first went to party members).
- ``dispatch_push`` (2 s; ``JOB_DISPATCH_PUSH_SECONDS``): drain the outbox to the
  push providers.
- ``erase_accounts`` (600 s; ``JOB_ERASE_ACCOUNTS_SECONDS``): accounts whose
  deletion is due are erased, the organisations' records kept.
- ``purge`` (86,400 s; ``JOB_PURGE_SECONDS``): idempotency keys older than 24 h,
  expired refresh tokens, devices unseen for 270 days, read notifications older
  than 180 days, SMS codes and counters older than two days.
- ``purge_photos`` (300 s; ``JOB_PURGE_PHOTOS_SECONDS``): photos that belong to
  nothing — uploads unused for 24 h, photos taken off their posting or avatar,
  those of an erased account — files and rows; the originals of photos in use
  once their upload URL has expired.

``JOB_BATCH_SIZE`` (default 1,000) is the most rows one batch (one transaction) moves.

**While the database is away** a job that finds it unreachable backs off: it
skips its runs for 5 s, then 10, 20, … up to 5 minutes between tries, and
logs one short line per job per step ("job dispatch_push: database
unavailable (OperationalError: …); next try in 20 s") — never a traceback per
run — then one line when the database is back. Any other error is the job's
own and is logged in full.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.util import ref_to_obj
from flask import Flask

from app.extensions import db

log = logging.getLogger(__name__)

JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
BUDGET_FRACTION = 0.8


@dataclass(frozen=True)
class JobSpec:
    name: str
    interval_key: str
    summary: str

    @property
    def ref(self) -> str:
        return f"app.jobs:{self.name}"


JOBS = (
    JobSpec(
        "expire_postings",
        "JOB_EXPIRE_POSTINGS_SECONDS",
        "close postings past their end, expire those past their deadline; warn posters 24 h ahead",
    ),
    JobSpec(
        "release_overdue_claims",
        "JOB_RELEASE_OVERDUE_CLAIMS_SECONDS",
        "release overdue claims (remind 24 h ahead), settle ended events, auto-confirm fulfilled claims",
    ),
    JobSpec("remind_upcoming", "JOB_REMIND_UPCOMING_SECONDS", "remind volunteers 24 h and 1 h before an event"),
    JobSpec("alert_nearby", "JOB_ALERT_NEARBY_SECONDS", "send the nearby alerts (微呼百应) of postings that opened"),
    JobSpec("dispatch_push", "JOB_DISPATCH_PUSH_SECONDS", "send pending notifications to the push providers"),
    JobSpec(
        "erase_accounts", "JOB_ERASE_ACCOUNTS_SECONDS", "erase accounts whose deletion is due; keep the orgs' records"
    ),
    JobSpec(
        "purge", "JOB_PURGE_SECONDS", "delete expired keys, tokens, idle devices, old read notifications, SMS codes"
    ),
    JobSpec(
        "purge_photos",
        "JOB_PURGE_PHOTOS_SECONDS",
        "delete photos that belong to nothing (unused uploads after 24 h), originals whose upload URL expired",
    ),
)
JOB_NAMES = tuple(spec.name for spec in JOBS)


def job_spec(name: str) -> JobSpec:
    for spec in JOBS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def interval_of(app: Flask, spec: JobSpec) -> int:
    """Seconds between runs of ``spec`` (its environment variable, at least 1)."""
    return max(1, int(app.config[spec.interval_key]))


class _RunningJobs:
    """How many job runs are in flight in this process, to wait for them on shutdown."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def __enter__(self) -> None:
        with self._cond:
            self._count += 1

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)


running_jobs = _RunningJobs()


# Back-off of a job that finds the database unreachable: the first wait, doubled
# after each failed try, up to the last.
BACKOFF_FIRST_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0


class _Backoff:
    """Per job: how many tries in a row found the database away, and when to try next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, float]] = {}

    def waiting(self, job: str) -> bool:
        with self._lock:
            failures, next_try = self._state.get(job, (0, 0.0))
        return failures > 0 and time.monotonic() < next_try

    def failed(self, job: str, exc: BaseException) -> None:
        with self._lock:
            failures = self._state.get(job, (0, 0.0))[0] + 1
            delay = min(BACKOFF_FIRST_SECONDS * 2 ** (failures - 1), BACKOFF_MAX_SECONDS)
            self._state[job] = (failures, time.monotonic() + delay)
        cause = getattr(exc, "orig", None) or exc
        detail = (str(cause).strip().splitlines() or [""])[0][:160]
        log.warning(
            "job %s: database unavailable (%s: %s); next try in %d s",
            job,
            type(cause).__name__,
            detail,
            delay,
            extra={"failures": failures, "retry_in_seconds": delay},
        )

    def succeeded(self, job: str) -> None:
        with self._lock:
            failures = self._state.pop(job, (0, 0.0))[0]
        if failures:
            log.info("job %s: database back after %d failed tries", job, failures)

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


backoff = _Backoff()


def run_job(ref: str, *, app: Flask | None = None, **options) -> dict[str, int]:
    """Run the job ``ref`` (``"app.jobs:expire_postings"``) once.

    The scheduler passes ``app`` and the job runs in a fresh app context (its own
    session, removed afterwards); the CLI calls it inside its own context.
    ``options`` (``batch_size``, ``time_budget``) go to the job. Under the
    scheduler, a run that finds the database away backs off (:data:`backoff`).
    """
    from app.database import is_unreachable

    func = ref_to_obj(ref)
    with running_jobs:
        if app is None:
            return func(**options)
        job = ref.rpartition(":")[2]
        if backoff.waiting(job):
            return {}
        with app.app_context():
            try:
                result = func(**options)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                backoff.failed(job, exc)
                return {}
            finally:
                try:
                    db.session.remove()
                except Exception:  # noqa: BLE001 - the connection is gone; the pool replaces it
                    db.session.registry.clear()
        backoff.succeeded(job)
        return result


def build_scheduler(app: Flask, scheduler_class: type[BaseScheduler] = BlockingScheduler) -> BaseScheduler:
    """A scheduler (not started) holding every job of :data:`JOBS` for ``app``."""
    scheduler = scheduler_class(
        timezone=UTC,
        job_defaults=JOB_DEFAULTS,
        executors={"default": ThreadPoolExecutor(max_workers=len(JOBS))},
    )
    first_run = datetime.now(UTC)  # APScheduler's timetable is on the wall clock, not app.clock
    for spec in JOBS:
        seconds = interval_of(app, spec)
        scheduler.add_job(
            "app.scheduler:run_job",
            trigger="interval",
            seconds=seconds,
            args=[spec.ref],
            kwargs={"app": app, "time_budget": seconds * BUDGET_FRACTION},
            id=spec.name,
            name=spec.name,
            next_run_time=first_run,
        )
    return scheduler


def run_scheduler(app: Flask) -> None:
    """Run the jobs in this process until SIGTERM or SIGINT, then return.

    On the signal the running jobs finish the batch they are in (or roll it
    back, if it fails) and start no other; the scheduler starts no new runs.
    """
    from app import jobs

    jobs.clear_stop()
    scheduler = build_scheduler(app, BlockingScheduler)
    stopping = threading.Event()

    def stop(signum, _frame) -> None:
        if stopping.is_set():
            log.info("scheduler already stopping")
            return
        stopping.set()
        log.info("scheduler received %s: finishing the current batches", signal.Signals(signum).name)
        jobs.request_stop()
        # wait=False: joining the job threads from inside a signal handler could
        # deadlock on a lock the interrupted main thread holds; we wait below.
        scheduler.shutdown(wait=False)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    # APScheduler logs every run at INFO; the jobs' own line says more.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    log.info(
        "scheduler started: %s",
        ", ".join(f"{spec.name} every {interval_of(app, spec)}s" for spec in JOBS),
    )
    try:
        scheduler.start()
        running_jobs.wait_idle()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("scheduler stopped")


_embedded: BaseScheduler | None = None
_embedded_lock = threading.Lock()


def start_embedded(app: Flask) -> BaseScheduler | None:
    """Start a ``BackgroundScheduler`` when ``app`` is being served by ``flask run``.

    Returns None everywhere else: tests, gunicorn, other ``flask`` commands, and
    the reloader's watcher process (only the child that serves requests runs
    jobs, so a reload never leaves two schedulers behind). At most one per process.
    """
    global _embedded
    if app.testing or not is_dev_server_process():
        return None
    from app import jobs

    with _embedded_lock:
        if _embedded is None:
            jobs.clear_stop()
            scheduler = build_scheduler(app, BackgroundScheduler)
            logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
            scheduler.start()
            atexit.register(_stop_embedded)
            log.info("embedded scheduler started: %s", ", ".join(JOB_NAMES))
            _embedded = scheduler
        return _embedded


def _stop_embedded() -> None:
    global _embedded
    from app import jobs

    with _embedded_lock:
        if _embedded is not None and _embedded.running:
            jobs.request_stop()
            _embedded.shutdown(wait=False)
        _embedded = None


def is_dev_server_process() -> bool:
    """Whether this process is ``flask run``'s server (not its reloader watcher)."""
    import click
    from flask.cli import get_debug_flag, run_command
    from werkzeug.serving import is_running_from_reloader

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.command is not run_command:
        return False
    reload = ctx.params.get("reload")
    if reload is None:
        reload = get_debug_flag()
    # With the reloader, `flask run` is two processes running the same code: the
    # watcher restarts the server child (WERKZEUG_RUN_MAIN=true) and serves nothing.
    return not reload or is_running_from_reloader()
