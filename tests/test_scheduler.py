"""The scheduler: its job table, the app-context wrapper, where an embedded one may
start, and the real process (``flask scheduler run``, ``flask run``) in subprocesses."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from flask.cli import run_command

from app import clock, create_app, scheduler
from app.config import TestConfig
from app.extensions import db
from app.models import Notification, Posting
from tests.factories import make_posting, make_user
from tests.helpers import free_port
from tests.moments import YEAR

ROOT = Path(__file__).resolve().parent.parent


# --- the job table -----------------------------------------------------------------------------------------------


def test_the_scheduler_holds_every_job_with_the_agreed_options(app):
    app.config["JOB_DISPATCH_PUSH_SECONDS"] = 5
    app.config["JOB_PURGE_SECONDS"] = 0  # nonsense is clamped to 1 s
    sched = scheduler.build_scheduler(app, BackgroundScheduler)
    sched.start(paused=True)  # applies the job defaults without running anything
    try:
        assert str(sched.timezone) == "UTC"
        by_id = {job.id: job for job in sched.get_jobs()}
        assert sorted(by_id) == sorted(scheduler.JOB_NAMES)
        expected = {
            "expire_postings": 60,
            "release_overdue_claims": 60,
            "remind_upcoming": 60,
            "alert_nearby": 5,
            "dispatch_push": 5,
            "erase_accounts": 600,
            "purge": 1,
            "purge_photos": 300,
        }
        for name, job in by_id.items():
            assert job.func_ref == "app.scheduler:run_job"
            assert job.args == (f"app.jobs:{name}",)
            assert job.trigger.interval == timedelta(seconds=expected[name])
            assert job.kwargs == {"app": app, "time_budget": expected[name] * 0.8}
            assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 60)
            assert job.next_run_time <= datetime.now(UTC)  # first run at start-up (APScheduler's wall clock)
    finally:
        sched.shutdown(wait=False)


def test_run_job_runs_the_job_in_an_app_context_of_its_own(app):
    clock.freeze(datetime(YEAR, 11, 20, tzinfo=UTC))
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=clock.utcnow() - timedelta(minutes=1))

    result = scheduler.run_job("app.jobs:expire_postings", app=app, time_budget=10)
    assert result["expired"] == 1
    assert scheduler.running_jobs.wait_idle(timeout=0)
    with app.app_context():
        assert db.session.get(Posting, wish).status == "expired"


# --- where an embedded scheduler may start -----------------------------------------------------------------------


def _in_context(command: click.Command, **params) -> bool:
    ctx = click.Context(command)
    ctx.params = params
    with ctx:
        return scheduler.is_dev_server_process()


def test_only_flask_runs_serving_process_counts_as_the_dev_server(monkeypatch):
    monkeypatch.delenv("WERKZEUG_RUN_MAIN", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    assert scheduler.is_dev_server_process() is False  # gunicorn, pytest: no click context
    assert _in_context(run_command, reload=False) is True
    assert _in_context(run_command, reload=True) is False  # the reloader's watcher
    assert _in_context(run_command, reload=None) is True  # no --debug: no reloader
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert _in_context(run_command, reload=None) is False  # --debug turns the reloader on
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    assert _in_context(run_command, reload=True) is True  # the child that serves
    assert _in_context(click.Command("run")) is False  # e.g. `flask scheduler run`


def test_an_embedded_scheduler_never_starts_under_test(app, monkeypatch):
    monkeypatch.setenv("WERKZEUG_RUN_MAIN", "true")
    app.config["SCHEDULER_EMBEDDED"] = True
    ctx = click.Context(run_command)
    ctx.params = {"reload": False}
    with ctx:
        assert scheduler.start_embedded(app) is None


# --- the real processes ------------------------------------------------------------------------------------------


def _setup_app(url: str):
    config = {k: getattr(TestConfig, k) for k in dir(TestConfig) if k.isupper()}
    return create_app({**config, "SQLALCHEMY_DATABASE_URI": url})


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "WERKZEUG_"))}
    env.update(
        DATABASE_URL=url,
        PUSH_BACKEND="log",
        SCHEDULER_EMBEDDED="0",
        LOG_LEVEL="DEBUG",
        JOB_EXPIRE_POSTINGS_SECONDS="1",
        JOB_RELEASE_OVERDUE_CLAIMS_SECONDS="1",
        JOB_REMIND_UPCOMING_SECONDS="1",
        JOB_DISPATCH_PUSH_SECONDS="1",
        JOB_PURGE_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class _Output:
    """The merged output of a subprocess, read by a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self._queue.put(line)

    def wait_for(self, predicate, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.lines.append(self._queue.get(timeout=0.1))
            except queue.Empty:
                pass
            if predicate(self.text):
                return True
        return False

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def finish(self) -> str:
        self._thread.join(timeout=10)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return self.text


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the reloader's child goes with it
    )


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_the_scheduler_process_runs_its_jobs_and_stops_cleanly_on_sigterm(sqlite_file):
    setup = _setup_app(sqlite_file)
    poster = make_user(setup)
    wish = make_posting(setup, poster, expires_at=clock.utcnow() - timedelta(minutes=5))
    with setup.app_context():
        db.engine.dispose()

    proc = _spawn(["scheduler", "run"], _env(sqlite_file))
    out = _Output(proc)
    try:

        def every_job_ran(text: str) -> bool:
            return all(f"job {name} " in text for name in scheduler.JOB_NAMES) and text.count("job dispatch_push ") >= 2

        assert out.wait_for(every_job_ran), out.text
        assert "scheduler started: expire_postings every 1s" in out.text
        assert "job expire_postings closed=0 expired=1 warned=0 batches=3 job=expire_postings rows=1" in out.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        _stop_group(proc)
    text = out.finish()
    assert "scheduler received SIGTERM" in text
    assert text.rstrip().endswith("scheduler stopped"), text[-2000:]
    assert "Traceback" not in text
    with setup.app_context():
        assert db.session.get(Posting, wish).status == "expired"
        assert db.session.scalars(sa.select(Notification.kind)).all() == ["posting_expired"]
        db.engine.dispose()


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_run_leaves_no_batch_half_done(sqlite_file):
    setup = _setup_app(sqlite_file)
    poster = make_user(setup)
    total, batch = 6000, 10
    past = clock.utcnow() - timedelta(hours=1)
    with setup.app_context():
        db.session.execute(
            sa.insert(Posting),
            [
                {
                    "kind": "wish",
                    "status": "open",
                    "title": f"心愿{n}",
                    "description": "详情",
                    "district": "haishu",
                    "author_id": poster.id,
                    "capacity": 1,
                    "expires_at": past,
                    "photo_urls": [],
                }
                for n in range(total)
            ],
        )
        db.session.commit()

        def expired() -> int:
            return db.session.scalar(sa.select(sa.func.count()).where(Posting.status == "expired"))

        proc = _spawn(["scheduler", "run"], _env(sqlite_file, JOB_BATCH_SIZE=str(batch)))
        out = _Output(proc)
        try:
            deadline = time.monotonic() + 30
            while expired() == 0 and time.monotonic() < deadline:
                db.session.rollback()
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            _stop_group(proc)
        text = out.finish()
        db.session.rollback()
        done = expired()
        notified = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
        db.engine.dispose()
    assert 0 < done < total, text[-2000:]  # it stopped early ...
    assert done % batch == 0  # ... between batches ...
    assert notified == done  # ... and every expired wish's poster was told
    assert f"job expire_postings closed=0 expired={done} " in text
    assert text.rstrip().endswith("scheduler stopped")


@pytest.mark.slow
def test_flask_run_with_the_reloader_starts_one_embedded_scheduler(sqlite_file):
    setup = _setup_app(sqlite_file)
    poster = make_user(setup)
    wish = make_posting(setup, poster, expires_at=clock.utcnow() - timedelta(minutes=5))
    with setup.app_context():
        db.engine.dispose()

    env = _env(sqlite_file, SCHEDULER_EMBEDDED="1", LOG_LEVEL="INFO")
    proc = _spawn(["run", "--reload", "--port", str(free_port())], env)
    out = _Output(proc)
    try:
        assert out.wait_for(lambda text: "job expire_postings closed=0 expired=1" in text), out.text
        # Give a second (wrongly started) scheduler time to show itself.
        out.wait_for(lambda text: False, timeout=3)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            _stop_group(proc)
    text = out.finish()
    assert text.count("embedded scheduler started") == 1, text
    assert text.count("job expire_postings closed=0 expired=1") == 1
    with setup.app_context():
        assert db.session.get(Posting, wish).status == "expired"
        db.engine.dispose()


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://postgres@127.0.0.1:1/nowhere", "sqlite:////nonexistent-dir/for-jobs/db.sqlite"]
)
def test_a_database_outage_is_one_short_line_per_job_per_back_off_step(url, caplog, monkeypatch):
    """No traceback per run: each job logs one line when it first finds the
    database away, skips its runs while it backs off (5, 10, 20 s …), and logs
    one line each time it tries again and fails."""
    import logging

    from app import create_app
    from app import scheduler as sched
    from tests.conftest import _config_dict

    app = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": url})
    now = [1000.0]
    monkeypatch.setattr(sched.time, "monotonic", lambda: now[0])
    sched.backoff.reset()
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):  # the first finds the outage, the others wait out the first 5 s
            assert sched.run_job("app.jobs:expire_postings", app=app) == {}
            now[0] += 0.5
        first = [r for r in caplog.records if r.levelno >= logging.INFO]
        now[0] += 5
        assert sched.run_job("app.jobs:expire_postings", app=app) == {}
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(first) == 1 and len(lines) == 2, [r.getMessage() for r in lines]
    assert all(not r.exc_info and len(r.getMessage()) < 300 for r in lines)
    assert "job expire_postings: database unavailable" in lines[0].getMessage()
    assert lines[0].getMessage().endswith("next try in 5 s")
    assert lines[1].getMessage().endswith("next try in 10 s")
    sched.backoff.reset()
