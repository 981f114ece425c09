"""HTTP helpers shared by the tests: SMS codes as a phone app gets them, the
sign-up over HTTP, the error assertion, acting on claims, awarding and deciding
records, requests raced at one moment, and ports for the servers tests start."""

from __future__ import annotations

import itertools
import os
import random
import secrets
import socket
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from flask import Flask

from app.sms import provider_for
from app.validators import normalize_cn_mobile
from tests.factories import Account, add_member, make_posting, make_user

REGISTER = "/api/v1/auth/register"
# What a production app needs to say about SMS to start (nothing is sent in the tests that use it).
PRODUCTION_SMS = {
    "SMS_BACKEND": "aliyun",
    "ALIYUN_ACCESS_KEY_ID": "test-access-key-id",
    "ALIYUN_ACCESS_KEY_SECRET": "test-access-key-secret",
    "SMS_SIGN_NAME": "甬志愿",
    "SMS_TEMPLATE_CODE": "SMS_000000001",
}
SMS_CODES = "/api/v1/auth/sms-codes"


def sent_code(app: Flask, phone: str, purpose: str | None = None) -> str | None:
    """The newest code the (memory) provider delivered to ``phone`` (for ``purpose``)."""
    return provider_for(app).last_code(normalize_cn_mobile(phone), purpose)


def sms_code(app: Flask, client, phone: str, purpose: str, **request) -> str:
    """Ask for a code (202) and read it from the provider, as the phone's owner would
    (``request``: more arguments of the request, ``headers``, ``environ_base``)."""
    resp = client.post(SMS_CODES, json={"phone": phone, "purpose": purpose}, **request)
    assert resp.status_code == 202, resp.get_json()
    code = sent_code(app, phone, purpose)
    assert code is not None
    return code


def register(
    app: Flask,
    client,
    phone: str = "13812345678",
    password: str = "long-enough-pw",
    display_name: str = "小王",
    *,
    headers: dict | None = None,
    **extra,
):
    """Sign up over HTTP as the app does: a code for ``register``, then the account
    with the current privacy version. ``extra`` adds or overrides body fields."""
    body = {
        "phone": phone,
        "sms_code": sms_code(app, client, phone, "register"),
        "password": password,
        "display_name": display_name,
        "privacy_version": app.config["PRIVACY_VERSION"],
        **extra,
    }
    return client.post(REGISTER, json=body, headers=headers or {})


def assert_error(resp, code: int, slug: str) -> dict:
    """The answer is the error envelope with ``code`` and ``slug``; its body."""
    body = resp.get_json()
    assert resp.status_code == code, body
    assert body["code"] == code and body["error"] == slug, body
    return body


# Where the helpers' events take place, and where their volunteers check in.
SITE = {"lat": 29.87, "lng": 121.55}


def claim(client, account: Account, posting_id: int, **body):
    return client.post(f"/api/v1/postings/{posting_id}/claims", json=body, headers=account.headers)


def act(client, account: Account, claim_id: int, action: str, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def make_event(app: Flask, coordinator: Account, org_id: int, start: datetime, hours: float) -> int:
    """The org's project at ``SITE`` from ``start``, ``hours`` long: its id."""
    return make_posting(
        app,
        coordinator,
        kind="project",
        org_id=org_id,
        starts_at=start,
        ends_at=start + timedelta(hours=hours),
        **SITE,
    )


def award(client, coordinator: Account, org_id: int, volunteer: Account, minutes: int, **body):
    """``POST /orgs/{id}/records``: honor hours (pending until a second person approves)."""
    return client.post(
        f"/api/v1/orgs/{org_id}/records",
        json={"volunteer_id": volunteer.id, "minutes": minutes, "reason": body.pop("reason", "表现突出"), **body},
        headers=coordinator.headers,
    )


def decide(client, account: Account, record_id: int, action: str = "approve", **body):
    """``POST /records/{id}/approve`` (or ``reject``)."""
    return client.post(f"/api/v1/records/{record_id}/{action}", json=body or None, headers=account.headers)


def second_coordinator(app: Flask, org_id: int) -> Account:
    """Another coordinator of the org: the second person who approves."""
    account = make_user(app, name="副站长")
    add_member(app, org_id, account, "coordinator")
    return account


def approved(client, approver: Account, response) -> dict:
    """Approve the record a response (201/200 with a record) carries; the approved record."""
    assert response.status_code in (200, 201), response.get_json()
    record = response.get_json()
    resp = decide(client, approver, record["id"])
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "recorded"
    return resp.get_json()


def at_once(app: Flask, calls):
    """Run ``calls`` — (method, path, headers, json) — all at the same moment,
    one thread and one client each; returns [(status, body)] in call order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        method, path, headers, body = call
        client = app.test_client()
        barrier.wait()
        resp = client.open(path, method=method, headers=headers, json=body)
        return resp.status_code, resp.get_json()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def outcomes(results) -> Counter:
    """(status, the answer's status or its error slug) of each result, counted."""
    return Counter((status, body.get("status") if status < 400 else body["error"]) for status, body in results)


def fresh_keys() -> dict[str, str]:
    """The three keys, each its own random value made now (no key is written in the repository)."""
    from app.secrets import KEYS

    return {name: secrets.token_urlsafe(48) for name in KEYS}


# Ports for the servers the tests start (gunicorn, flask run, nginx, make run). Asking
# the kernel for a free one (bind to port 0) and closing it leaves a window, while the
# server starts, in which the same port is handed out again: to another xdist worker
# asking the same, or as the source port of any outgoing connection (the suite opens
# thousands), since both draw from the ephemeral range (32768-60999 on Linux,
# 49152-65535 elsewhere). These come from below it instead, from a block of each xdist
# worker's own, starting at a random place in it (another suite on the same machine),
# and are checked free when handed out.
_PORT_BASE, _PORT_BLOCK = 20_000, 500
_next_port = itertools.count(random.randrange(_PORT_BLOCK))


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    block = _PORT_BASE + (int(worker) % 24 if worker.isdigit() else 0) * _PORT_BLOCK
    for _ in range(_PORT_BLOCK):
        port = block + next(_next_port) % _PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {block}-{block + _PORT_BLOCK - 1}")
