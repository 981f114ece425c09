"""The app's clock (app/clock.py): what CLOCK_SHIFT_DAYS moves, in this process and
in those it starts, and what stays on the wall clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from app import clock
from app.config import Config
from tests.factories import make_user
from tests.moments import YEAR

ROOT = Path(__file__).resolve().parent.parent


def _ahead() -> timedelta:
    return clock.utcnow() - datetime.now(UTC)


def test_the_clock_runs_the_configured_shift_ahead_and_reset_keeps_it():
    assert clock.SHIFT == timedelta(days=Config.CLOCK_SHIFT_DAYS)
    assert abs(_ahead() - clock.SHIFT) < timedelta(seconds=5)
    clock.freeze(datetime(YEAR, 1, 1, tzinfo=UTC))
    clock.advance(timedelta(hours=1))
    assert clock.utcnow() == datetime(YEAR, 1, 1, 1, tzinfo=UTC)
    clock.reset()
    assert abs(_ahead() - clock.SHIFT) < timedelta(seconds=5)


@pytest.mark.slow
def test_a_process_the_tests_start_runs_as_far_ahead():
    """Servers and schedulers the tests start inherit CLOCK_SHIFT_DAYS, so their
    clock and the tests' agree."""
    probe = "import json; from app import clock; print(json.dumps(clock.utcnow().isoformat()))"
    for days in (0, 365):
        env = {**os.environ, "CLOCK_SHIFT_DAYS": str(days), "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=ROOT, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        theirs = datetime.fromisoformat(json.loads(out.stdout))
        assert abs(theirs - datetime.now(UTC) - timedelta(days=days)) < timedelta(minutes=1), (days, theirs)


def test_tokens_stay_on_the_wall_clock(app, client):
    """PyJWT checks a token's exp against the real time: tokens are issued on it,
    whatever the app's clock says, so a moved clock never expires or revives them."""
    clock.freeze(clock.utcnow() + timedelta(days=400))
    user = make_user(app)
    claims = jwt.decode(user.access_token, options={"verify_signature": False})
    assert abs(claims["exp"] - time.time() - app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()) < 60
    assert client.get("/api/v1/me", headers=user.headers).status_code == 200
    clock.reset()
    assert client.get("/api/v1/me", headers=user.headers).status_code == 200
