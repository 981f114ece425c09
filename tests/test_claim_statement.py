"""The claim's one statement on PostgreSQL, and what it writes on both databases.

Every test of ``tests/test_claims.py`` and ``tests/test_races.py`` runs the claim
path of the database in use; these check what the two paths must agree on to
the byte (the outbox row) and that PostgreSQL sends one statement for a claim.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Notification, User
from app.outbox import Recipient, encode_params, push_data, push_fields
from app.outbox.templates import render
from tests.database import recorded
from tests.factories import make_org, make_posting, make_user, make_volunteer

WRITES = ("INSERT INTO claims", "UPDATE postings", "UPDATE volunteers", "INSERT INTO notifications", "energy_ledger")


def claim(client, account, posting_id):
    return client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=account.headers)


def set_user(app, user_id, **values):
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user_id).values(**values))
        db.session.commit()


def told_row(app, poster_id) -> Notification:
    with app.app_context():
        row = db.session.scalar(sa.select(Notification).where(Notification.user_id == poster_id))
        db.session.expunge(row)
        return row


def expected_row(app, poster_id, *, volunteer, title, posting_id, claim_id, now):
    """What ``app.outbox.notify`` writes for this claim (the multi-statement path's call)."""
    with app.app_context():
        user = db.session.get(User, poster_id)
        recipient = Recipient(user.id, user.locale, user.timezone, user.quiet_start, user.quiet_end, user.muted_kinds)
        context = {"title": title, "volunteer": volunteer, "posting_id": posting_id, "claim_id": claim_id}
        params = encode_params("wish_claimed", context)
        heading, body = render("wish_claimed", user.locale, params, user.timezone)
        return {
            "title": heading,
            "body": body,
            "data": push_data("wish_claimed", context),
            "params": params,
            "dedupe_key": f"wish_claimed:claim:{claim_id}:{poster_id}",
            **push_fields("wish_claimed", recipient, now),
        }


@pytest.mark.parametrize("setting", ["zh-CN", "en", "muted", "quiet"])
def test_the_poster_is_told_as_notify_tells(app, client, setting):
    poster = make_user(app, locale="en" if setting == "en" else "zh-CN")
    if setting == "muted":
        set_user(app, poster.id, muted_kinds=["wish_claimed"])
    if setting == "quiet":
        local = clock.utcnow().astimezone(clock.zone("Asia/Shanghai"))
        start, end = local - timedelta(hours=1), local + timedelta(hours=2)
        set_user(app, poster.id, quiet_start=start.strftime("%H:%M"), quiet_end=end.strftime("%H:%M"))
    volunteer = make_volunteer(app, name="王小明")
    wish = make_posting(app, poster, kind="wish", title='帮"张阿婆" 买菜 \\ 50% off')
    now = clock.utcnow().replace(microsecond=0)
    clock.freeze(now)
    response = claim(client, volunteer, wish)
    assert response.status_code == 201, response.json
    claim_id = response.json["id"]
    expected = expected_row(
        app,
        poster.id,
        volunteer="王小明",
        title='帮"张阿婆" 买菜 \\ 50% off',
        posting_id=wish,
        claim_id=claim_id,
        now=now,
    )
    row = told_row(app, poster.id)
    written = {name: getattr(row, name) for name in expected}
    assert written == expected
    if setting == "quiet":
        assert row.next_attempt_at > now
    if setting == "muted":
        assert row.push_status == "skipped"


def test_a_claim_is_one_statement_on_postgresql(app, client, is_postgres, monkeypatch):
    """Nothing a claim writes goes through SQLAlchemy: one run of the statement
    (on the driver's own cursor) writes the claim, the counters, the ledger and
    the outbox row."""
    if not is_postgres:
        pytest.skip("SQLite has no data-modifying WITH: the claim there is a few statements")
    from app.services.claims import in_one_statement

    runs = []
    execute = in_one_statement._execute
    monkeypatch.setattr(in_one_statement, "_execute", lambda params: runs.append(params) or execute(params))
    resident = make_user(app)
    org_id, coordinator = make_org(app)
    wish = make_posting(app, resident, kind="wish")
    reward = make_posting(app, coordinator, kind="energy", org_id=org_id, capacity=5, energy_cost=10)
    volunteer = make_volunteer(app)
    with app.app_context():
        db.session.execute(sa.text("UPDATE volunteers SET energy_balance = 50 WHERE user_id = :u"), {"u": volunteer.id})
        db.session.commit()
    for posting_id in (wish, reward):
        runs.clear()
        with recorded(app) as seen:
            assert claim(client, volunteer, posting_id).status_code == 201
        assert [sql for sql, _ in seen if any(marker in sql for marker in WRITES)] == []
        assert len(runs) == 1
    with app.app_context():
        ledger = db.session.execute(sa.text("SELECT delta, balance_after, reason FROM energy_ledger")).all()
        assert [tuple(r) for r in ledger] == [(-10, 40, "redeem")]
        counters = db.session.execute(
            sa.text("SELECT active_wish_claims, energy_balance FROM volunteers WHERE user_id = :u"), {"u": volunteer.id}
        ).one()
        assert tuple(counters) == (1, 40)
        assert db.session.scalar(sa.text("SELECT count(*) FROM notifications WHERE kind = 'wish_claimed'")) == 1
