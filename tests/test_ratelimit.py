"""Login and register are rate-limited per IP and per phone (Flask-Limiter);
429 comes in the envelope with ``Retry-After``; the limiter is configured from
the environment like everything else."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from app import create_app
from app.extensions import db
from tests.conftest import _config_dict
from tests.factories import PASSWORD, make_user
from tests.helpers import SMS_CODES, register

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def limited(app, db_url):
    """Build an app with the limiter on (fresh in-memory counters) and low limits."""
    made = []

    def build(phone: str = "100/minute", ip: str = "100/minute", **extra):
        limited_app = create_app(
            {
                **_config_dict(),
                "SQLALCHEMY_DATABASE_URI": db_url,
                "RATELIMIT_ENABLED": True,
                "RATELIMIT_STORAGE_URI": "memory://",
                "RATELIMIT_AUTH_PHONE": phone,
                "RATELIMIT_AUTH_IP": ip,
                **extra,
            }
        )
        made.append(limited_app)
        return limited_app

    yield build
    for made_app in made:
        with made_app.app_context():
            db.engine.dispose()


def login(client, phone="13812345678", password="wrong-password", ip="10.0.0.1", **kwargs):
    return client.post(LOGIN, json={"phone": phone, "password": password}, environ_base={"REMOTE_ADDR": ip}, **kwargs)


def assert_429(resp, window: int = 60) -> None:
    body = resp.get_json()
    assert resp.status_code == 429, body
    assert body == {
        "code": 429,
        "status": "Too Many Requests",
        "error": "rate_limited",
        "message": "请求过于频繁，请稍后再试",
    }
    assert 1 <= int(resp.headers["Retry-After"]) <= window
    assert resp.headers["X-Request-ID"]


# --- per phone ---------------------------------------------------------------------


def test_per_phone_limit(limited):
    app = limited(phone="3/minute")
    account = make_user(app, phone="+8613812345678")
    client = app.test_client()
    for _ in range(3):
        assert login(client).status_code == 401
    assert_429(login(client))
    # The right password does not get through either: the budget is spent.
    assert_429(login(client, password=account.password))
    # Another phone from the same address is not affected.
    assert login(client, phone="13912345678").status_code == 401


@pytest.mark.parametrize("spelling", ["+8613812345678", "+86 138 1234 5678", "138-1234-5678", "１３８１２３４５６７８"])
def test_per_phone_limit_sees_through_spellings(limited, spelling):
    client = limited(phone="2/minute").test_client()
    assert login(client, phone="13812345678").status_code == 401
    assert login(client, phone="13812345678", ip="10.0.0.2").status_code == 401
    assert_429(login(client, phone=spelling, ip="10.0.0.3"))


def test_per_phone_limit_follows_the_phone_across_addresses(limited):
    client = limited(phone="2/minute").test_client()
    for ip in ("10.0.0.1", "10.0.0.2"):
        assert login(client, ip=ip).status_code == 401
    assert_429(login(client, ip="10.0.0.3"))


def test_per_email_limit(limited):
    app = limited(phone="2/minute")
    make_user(app, email="li@example.com")
    client = app.test_client()
    for _ in range(2):
        assert client.post(LOGIN, json={"email": "li@example.com", "password": "nope-nope"}).status_code == 401
    assert_429(client.post(LOGIN, json={"email": " LI@example.com", "password": PASSWORD}))


def test_register_login_and_codes_share_the_phone_budget(limited):
    app = limited(phone="4/minute")
    client = app.test_client()
    # A code and the sign-up are two of the phone's four.
    assert register(app, client, "13812345678", "long-enough").status_code == 201
    assert client.post(SMS_CODES, json={"phone": "13812345678", "purpose": "register"}).status_code == 409
    assert login(client).status_code == 401
    assert_429(client.post(SMS_CODES, json={"phone": "13812345678", "purpose": "login"}))
    assert_429(client.post(REGISTER, json={"phone": "13812345678", "password": "long-enough"}))
    assert_429(login(client, password="long-enough"))


# --- per IP ------------------------------------------------------------------------


def test_per_ip_limit(limited):
    client = limited(ip="3/minute").test_client()
    for n in range(3):
        assert login(client, phone=f"1381234560{n}").status_code == 401
    assert_429(login(client, phone="13812345609"))
    # Another address has its own budget.
    assert login(client, phone="13812345609", ip="10.9.9.9").status_code == 401


def test_per_ip_limit_counts_register_and_login_together(limited):
    app = limited(ip="3/minute")
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    assert register(app, client, "13812345678", "long-enough").status_code == 201
    assert login(client, phone="13912345678").status_code == 401
    assert_429(client.post(SMS_CODES, json={"phone": "13712345678", "purpose": "register"}))


def test_invalid_bodies_count_too(limited):
    """Garbage costs the same as a guess, so it cannot probe for free."""
    client = limited(ip="2/minute").test_client()
    env = {"REMOTE_ADDR": "10.0.0.1"}
    assert client.post(LOGIN, json={}, environ_base=env).status_code == 422
    assert client.post(LOGIN, data=b"{", content_type="application/json", environ_base=env).status_code == 400
    assert_429(login(client))


def test_forwarded_for_is_not_trusted_by_default(limited):
    client = limited(ip="2/minute").test_client()
    for n in range(2):
        assert login(client, phone=f"1381234560{n}", headers={"X-Forwarded-For": f"1.2.3.{n}"}).status_code == 401
    assert_429(login(client, phone="13812345609", headers={"X-Forwarded-For": "1.2.3.99"}))


def test_forwarded_for_is_used_behind_a_trusted_proxy(limited):
    client = limited(ip="2/minute", TRUSTED_PROXIES=1).test_client()
    proxy = "10.0.0.254"
    for n in range(2):
        resp = login(client, phone=f"1381234560{n}", ip=proxy, headers={"X-Forwarded-For": "1.2.3.4"})
        assert resp.status_code == 401
    assert_429(login(client, phone="13812345608", ip=proxy, headers={"X-Forwarded-For": "1.2.3.4"}))
    # A different client behind the same proxy has its own budget; a forged
    # extra hop in front of the real one changes nothing.
    assert login(client, phone="13812345609", ip=proxy, headers={"X-Forwarded-For": "5.6.7.8"}).status_code == 401
    forged = {"X-Forwarded-For": "9.9.9.9, 1.2.3.4"}
    assert_429(login(client, phone="13812345607", ip=proxy, headers=forged))


# --- the 429 itself ------------------------------------------------------------------


def test_429_in_english(limited):
    client = limited(phone="1/minute").test_client()
    login(client)
    resp = login(client, headers={"Accept-Language": "en"})
    assert resp.status_code == 429
    assert resp.get_json()["message"] == "Too many requests; try again later."


def test_retry_after_tracks_the_window(limited):
    client = limited(phone="1/hour").test_client()
    login(client)
    resp = login(client)
    assert resp.status_code == 429
    assert 60 < int(resp.headers["Retry-After"]) <= 3600


def test_retry_after_only_on_answers_that_ask_to_wait(limited):
    """A limited route's answers carry the budget (X-RateLimit-*); Retry-After, which
    tells a client to wait, only the 429."""
    app = limited(phone="2/minute")
    make_user(app, phone="+8613812345678")
    client = app.test_client()
    signed_in = login(client, password=PASSWORD)
    refused_password = login(client)
    assert (signed_in.status_code, refused_password.status_code) == (200, 401)
    for answer in (signed_in, refused_password):
        assert answer.headers["X-RateLimit-Limit"] == "2"
        assert "Retry-After" not in answer.headers
    assert_429(login(client))
    account = make_user(app)
    patched = client.patch("/api/v1/me", json={"display_name": "小王"}, headers=account.headers)
    assert patched.status_code == 200 and patched.headers["X-RateLimit-Limit"]
    assert "Retry-After" not in patched.headers


def test_other_endpoints_are_not_limited(limited):
    app = limited(phone="1/minute", ip="1/minute")
    account = make_user(app)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/v1/me", headers=account.headers).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_limits_are_off_in_the_test_config(app, client):
    assert app.config["RATELIMIT_ENABLED"] is False
    for _ in range(40):
        assert login(client).status_code == 401


# --- configuration from the environment ---------------------------------------------

_PROBE = textwrap.dedent(
    """
    import json
    from app import create_app
    from app.extensions import db, limiter

    app = create_app()
    with app.app_context():
        db.create_all()
    client = app.test_client()
    codes = [
        client.post("/api/v1/auth/login", json={"phone": "13812345678", "password": "wrong-password"}).status_code
        for _ in range(3)
    ]
    print(json.dumps({
        "enabled": app.config["RATELIMIT_ENABLED"],
        "storage_uri": app.config["RATELIMIT_STORAGE_URI"],
        "storage": type(limiter._storage).__name__ if limiter.enabled else None,
        "codes": codes,
    }))
    """
)


def _run_probe(tmp_path, **env_vars) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RATELIMIT_", "DATABASE_URL", "TEST_DATABASE"))}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'probe.sqlite'}",
        ARGON2_TIME_COST="1",
        ARGON2_MEMORY_COST="1024",
        SECRET_KEY=secrets.token_urlsafe(48),
        PYTHONPATH=str(ROOT),
        **env_vars,
    )
    return subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_enabled_and_storage_from_the_environment(tmp_path):
    result = _run_probe(
        tmp_path, RATELIMIT_ENABLED="true", RATELIMIT_STORAGE_URI="memory://", RATELIMIT_AUTH_PHONE="2/minute"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"enabled": True, "storage_uri": "memory://", "storage": "MemoryStorage", "codes": [401, 401, 429]}


@pytest.mark.slow
def test_disabled_from_the_environment(tmp_path):
    result = _run_probe(tmp_path, RATELIMIT_ENABLED="0", RATELIMIT_AUTH_PHONE="1/minute")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["enabled"] is False
    assert report["codes"] == [401, 401, 401]


@pytest.mark.slow
def test_enabled_by_default_outside_tests(tmp_path):
    result = _run_probe(tmp_path, RATELIMIT_AUTH_IP="1/minute")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["enabled"] is True and report["storage_uri"] == "memory://"
    assert report["codes"] == [401, 429, 429]


@pytest.mark.slow
def test_storage_uri_from_the_environment_is_used(tmp_path):
    """An unknown storage scheme fails at start-up: proof the variable is read."""
    result = _run_probe(tmp_path, RATELIMIT_ENABLED="1", RATELIMIT_STORAGE_URI="bogus://nowhere")
    assert result.returncode != 0
    assert "bogus" in result.stderr


# --- Redis storage (production) -------------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_storage():
    """Redis for the limiter's counters, under a key prefix of this test's own: the
    server is shared (other workers, other runs), so nothing is flushed; this test's
    keys are removed afterwards."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"needs Redis at {REDIS_URL} (.ci/run starts one)")
    prefix = f"yz-test-{uuid.uuid4().hex}"
    yield REDIS_URL, prefix
    _forget(client, prefix)
    client.close()


def _forget(client, prefix: str) -> None:
    for key in list(client.scan_iter(match=f"*{prefix}*")):
        client.delete(key)


def test_counters_live_in_redis(limited, redis_storage):
    """With RATELIMIT_STORAGE_URI=redis://… the budget is kept in Redis, where
    every web process sees it: spent there, refused here."""
    import redis

    url, prefix = redis_storage
    app = limited(phone="3/minute", RATELIMIT_STORAGE_URI=url, RATELIMIT_KEY_PREFIX=prefix)
    make_user(app, phone="+8613812345678")
    client = app.test_client()
    for _ in range(3):
        assert login(client).status_code == 401
    assert_429(login(client))
    store = redis.Redis.from_url(url)
    keys = [key.decode() for key in store.scan_iter(match=f"*{prefix}*")]
    assert any("auth-phone" in key for key in keys), keys
    # Another process finds the budget spent: clearing Redis gives it back.
    _forget(store, prefix)
    assert login(client).status_code == 401


# --- per-user budgets for writes ------------------------------------------------------


def test_writes_share_a_per_user_budget_with_retry_after(limited):
    from tests.factories import make_posting, make_volunteer

    app = limited(RATELIMIT_USER_WRITES="3/minute")
    client = app.test_client()
    author = make_user(app)
    first, second = make_volunteer(app), make_volunteer(app)
    wishes = [make_posting(app, author) for _ in range(5)]
    # claims, devices and the profile share one budget
    assert client.post(f"/api/v1/postings/{wishes[0]}/claims", json={}, headers=first.headers).status_code == 201
    device = {"token": "tok-1", "platform": "android"}
    assert client.post("/api/v1/me/devices", json=device, headers=first.headers).status_code == 201
    assert client.patch("/api/v1/me", json={"display_name": "小王"}, headers=first.headers).status_code == 200
    refused = client.post(f"/api/v1/postings/{wishes[1]}/claims", json={}, headers=first.headers)
    assert_429(refused)
    # reading is not writing, and another volunteer has a budget of their own
    assert client.get("/api/v1/me", headers=first.headers).status_code == 200
    assert client.post(f"/api/v1/postings/{wishes[1]}/claims", json={}, headers=second.headers).status_code == 201


def test_a_password_change_has_its_own_tight_budget(limited):
    app = limited(RATELIMIT_PASSWORD="2/minute")
    client = app.test_client()
    user = make_user(app)
    wrong = {"old_password": "not-my-password", "new_password": "brand-new-password"}
    for _ in range(2):
        resp = client.post("/api/v1/me/password", json=wrong, headers=user.headers)
        assert resp.status_code == 422
    assert_429(client.post("/api/v1/me/password", json=wrong, headers=user.headers))


@pytest.mark.slow
def test_with_redis_gone_the_limiter_counts_in_memory_instead_of_failing(tmp_path):
    """RATELIMIT_STORAGE_URI names a Redis nobody listens on: logins still answer
    (never a 500), the limits still hold (counted in the process's memory), and
    the log says so. In a fresh process: the limiter's state is per process."""
    result = _run_probe(
        tmp_path,
        RATELIMIT_ENABLED="1",
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0",
        RATELIMIT_AUTH_PHONE="2/minute",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [401, 401, 429]
    assert "storage unreachable - falling back to in-memory storage" in result.stderr
    # the limiter logs its keys: they never hold the phone number itself
    assert "13812345678" not in result.stderr


# --- headers on every answer -------------------------------------------------------------


def test_security_headers_and_no_store_for_personal_answers(app, client):
    user = make_user(app)
    public = client.get("/api/v1/postings")
    assert public.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in public.headers.get("Cache-Control", "")
    assert client.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"
    personal = client.get("/api/v1/me", headers=user.headers)
    assert personal.headers["Cache-Control"] == "no-store"
    signed_in = client.post(LOGIN, json={"phone": user.phone, "password": PASSWORD})
    assert signed_in.status_code == 200
    assert signed_in.headers["Cache-Control"] == "no-store"
    missing = client.get("/api/v1/nowhere")
    assert missing.headers["X-Content-Type-Options"] == "nosniff"
