"""The SMS limits across processes: a two-worker gunicorn takes a flood of
concurrent requests (the request limiter off) and the per-phone, per-address
and daily-budget limits still hold exactly, whichever worker answers.

On SQLite (the embedded default) by default; on PostgreSQL with TEST_DATABASE_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.config import TestConfig
from tests.helpers import free_port
from tests.test_metrics import _request, _stop, _wait_for

pytestmark = pytest.mark.slow  # a two-worker gunicorn

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 30


def start_gunicorn(tmp_path: Path, url: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    access = tmp_path / "access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "FLASK_", "GUNICORN_", "SMS_"))}
    env.update(
        APP_ENV="development",
        INSTANCE_PATH=str(tmp_path / "instance"),
        DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://"),
        SECRET_KEY=TestConfig.SECRET_KEY,
        JWT_SECRET_KEY=TestConfig.JWT_SECRET_KEY,
        ID_HASH_KEY=TestConfig.ID_HASH_KEY,
        RATELIMIT_ENABLED="0",  # the codes' limits hold without the request limiter
        TRUSTED_PROXIES="1",
        SMS_BACKEND="log",
        SMS_DAILY_BUDGET=str(BUDGET),
        PUSH_BACKEND="log",
        LOG_LEVEL="WARNING",
        GUNICORN_MAX_REQUESTS="0",
        METRICS_ADDRESS="",  # not served: this test reads the access log
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-c", "deploy/gunicorn.conf.py", "-w", "2", "--threads", "8", "--bind", f"127.0.0.1:{port}",
         "--access-logfile", str(access), "--access-logformat", "%(p)s %(s)s", "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(port, "/readyz", lambda _text: True)
    _both_workers_answer(port, access)
    return proc, port, access


def _workers_in(access: Path) -> Counter:
    return Counter(line.split()[0] for line in access.read_text().splitlines())


def _both_workers_answer(port: int, access: Path, timeout: float = 60) -> None:
    """Gunicorn boots its two workers side by side; on a busy machine the second may
    still be loading the app when the first answers. Probe until both have answered,
    then start the access log afresh for the flood."""
    deadline = time.monotonic() + timeout
    while len(_workers_in(access)) < 2:
        assert time.monotonic() < deadline, f"the second worker never answered: {_workers_in(access)}"
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda _: _request(port, "GET", "/healthz"), range(16)))
    access.write_text("")


def flood(port: int, requests: list[tuple[str, str]]) -> Counter:
    """POST /auth/sms-codes for each (phone, client address) at once; the answers' statuses."""

    def ask(item):
        phone, address = item
        body = {"phone": phone, "purpose": "register"}
        status, text = _request(port, "POST", "/api/v1/auth/sms-codes", body, {"X-Forwarded-For": address})
        slug = json.loads(text).get("error") if status >= 400 else None
        return status, slug

    with ThreadPoolExecutor(32) as pool:
        return Counter(pool.map(ask, requests))


def test_the_limits_hold_across_two_gunicorn_workers(app, db_url, sqlite_file, tmp_path):
    url = db_url if db_url.startswith("postgresql") else sqlite_file
    proc, port, access = start_gunicorn(tmp_path, url)
    try:
        # One phone from 40 addresses at once: one code.
        one_phone = flood(port, [("13800010001", f"10.1.0.{n}") for n in range(40)])
        assert one_phone == {(202, None): 1, (429, "sms_too_frequent"): 39}, one_phone
        # One address, 60 phones at once: 20 codes an hour.
        one_address = flood(port, [(f"138000200{n:02d}", "10.2.0.1") for n in range(60)])
        assert one_address == {(202, None): 20, (429, "sms_too_frequent"): 40}, one_address
        # Rotating numbers and addresses: the day's budget (21 spent so far) ends it.
        rotating = flood(port, [(f"138000300{n:02d}", f"10.3.{n}.1") for n in range(60)])
        assert rotating == {(202, None): BUDGET - 21, (503, "sms_unavailable"): 60 - (BUDGET - 21)}, rotating
    finally:
        _stop(proc)
    workers = _workers_in(access)
    assert len(workers) == 2, f"one worker served every request: {workers}"
