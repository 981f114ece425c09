"""Scheduler jobs with the clock moved: what each changes, whom it tells, and that
running it again (or early) changes and sends nothing."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock, jobs
from app.extensions import db
from app.models import (
    Claim,
    Device,
    IdempotencyKey,
    Notification,
    Posting,
    RefreshToken,
    SmsCode,
    SmsCounter,
    User,
    Volunteer,
)
from app.outbox import notify, notify_many
from app.services import claims, lifecycle
from app.services.permissions import Actor
from tests.factories import make_posting, make_user, make_volunteer
from tests.moments import YEAR

T0 = datetime(YEAR, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    clock.freeze(T0)
    yield
    jobs.clear_stop()


def run(app, job: str, **options) -> dict[str, int]:
    with app.app_context():
        return getattr(jobs, job)(**options)


def claim(app, account, posting_id: int) -> int:
    with app.app_context():
        return claims.claim_posting(Actor(db.session.get(User, account.id)), posting_id).id


def notes(app, kind: str) -> list[tuple[int, dict]]:
    """(user id, data) of every notification of ``kind``, oldest first."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Notification.user_id, Notification.data)
            .where(Notification.kind == kind)
            .order_by(Notification.id)
        )
        return [(user_id, data) for user_id, data in rows]


def posting_row(app, posting_id: int) -> Posting:
    with app.app_context():
        posting = db.session.get(Posting, posting_id)
        db.session.expunge(posting)
        return posting


def claim_row(app, claim_id: int) -> Claim:
    with app.app_context():
        row = db.session.get(Claim, claim_id)
        db.session.expunge(row)
        return row


def wish_allowance(app, account) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Volunteer.active_wish_claims).where(Volunteer.user_id == account.id))


# --- expire_postings ---------------------------------------------------------------------------------------------


def test_expired_wish_becomes_expired_and_the_poster_is_told_once(app):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(days=2))

    clock.freeze(T0 + timedelta(days=2))  # exactly at expires_at: not past it yet
    assert run(app, "expire_postings")["expired"] == 0
    assert posting_row(app, wish).status == "open"

    clock.advance(timedelta(seconds=1))
    result = run(app, "expire_postings")
    assert result["expired"] == 1
    expired = posting_row(app, wish)
    assert expired.status == "expired"
    assert expired.updated_at == T0 + timedelta(days=2, seconds=1)
    assert notes(app, "posting_expired") == [(poster.id, {"kind": "posting_expired", "posting_id": str(wish)})]

    again = run(app, "expire_postings")
    assert again["expired"] == 0
    assert len(notes(app, "posting_expired")) == 1


def test_only_postings_nobody_holds_expire(app):
    poster = make_user(app)
    volunteer = make_volunteer(app, home=None)
    deadline = T0 + timedelta(days=1)
    open_wish = make_posting(app, poster, expires_at=deadline)
    in_review = make_posting(app, poster, status="pending_review", expires_at=deadline)
    claimed_wish = make_posting(app, poster, expires_at=deadline)
    signed_up_project = make_posting(app, poster, kind="project", expires_at=deadline, starts_at=T0 + timedelta(days=3))
    cancelled = make_posting(app, poster, status="cancelled", expires_at=deadline)
    no_deadline = make_posting(app, poster, expires_at=None)
    claim(app, volunteer, claimed_wish)
    claim(app, volunteer, signed_up_project)

    clock.freeze(deadline + timedelta(minutes=1))
    assert run(app, "expire_postings")["expired"] == 2

    statuses = {pid: posting_row(app, pid).status for pid in (open_wish, in_review, claimed_wish, signed_up_project)}
    assert statuses == {
        open_wish: "expired",
        in_review: "expired",
        claimed_wish: "claimed",
        signed_up_project: "open",
    }
    assert posting_row(app, cancelled).status == "cancelled"
    assert posting_row(app, no_deadline).status == "open"
    told = sorted(int(data["posting_id"]) for _, data in notes(app, "posting_expired"))
    assert told == sorted([open_wish, in_review])


def test_expiry_warning_goes_out_once_per_deadline_and_again_after_an_extension(app):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(hours=30))

    clock.freeze(T0 + timedelta(hours=5, minutes=59))  # 24 h 1 min before: too early
    assert run(app, "expire_postings")["warned"] == 0
    assert notes(app, "posting_expiring") == []

    clock.freeze(T0 + timedelta(hours=6))  # exactly 24 h before
    assert run(app, "expire_postings")["warned"] == 1
    assert run(app, "expire_postings")["warned"] == 0
    assert notes(app, "posting_expiring") == [(poster.id, {"kind": "posting_expiring", "posting_id": str(wish)})]

    # The poster extends the wish by two days (PATCH expires_at).
    new_deadline = T0 + timedelta(days=3, hours=6)
    with app.app_context():
        db.session.execute(sa.update(Posting).where(Posting.id == wish).values(expires_at=new_deadline))
        db.session.commit()
    clock.freeze(T0 + timedelta(hours=31))  # past the old deadline, far from the new one
    result = run(app, "expire_postings")
    assert (result["expired"], result["warned"]) == (0, 0)
    assert posting_row(app, wish).status == "open"

    clock.freeze(new_deadline - timedelta(hours=23))
    assert run(app, "expire_postings")["warned"] == 1
    assert run(app, "expire_postings")["warned"] == 0
    assert len(notes(app, "posting_expiring")) == 2

    clock.freeze(new_deadline + timedelta(seconds=1))
    assert run(app, "expire_postings")["expired"] == 1
    assert len(notes(app, "posting_expired")) == 1


def test_expiry_warning_leaves_updated_at_alone(app):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(hours=10))
    before = posting_row(app, wish).updated_at
    clock.advance(timedelta(hours=1))
    assert run(app, "expire_postings")["warned"] == 1
    after = posting_row(app, wish)
    assert after.updated_at == before
    assert after.expiry_warned_for == T0 + timedelta(hours=10)


# --- release_overdue_claims --------------------------------------------------------------------------------------


def test_overdue_claim_is_released_the_wish_reopens_and_both_are_told_once(app):
    poster = make_user(app)
    volunteer = make_volunteer(app)  # lives next to the wish too, but let it lapse
    neighbour = make_volunteer(app)  # lives next to the wish, alerts on
    wish = make_posting(app, poster, claim_ttl_hours=72)
    claim_id = claim(app, volunteer, wish)
    assert wish_allowance(app, volunteer) == 1
    due = T0 + timedelta(hours=72)
    assert claim_row(app, claim_id).due_at == due

    clock.freeze(due)  # due, not overdue
    assert run(app, "release_overdue_claims")["released"] == 0
    assert claim_row(app, claim_id).status == "active"

    clock.advance(timedelta(seconds=1))
    result = run(app, "release_overdue_claims")
    assert (result["released"], result["reopened"]) == (1, 1)
    released = claim_row(app, claim_id)
    assert (released.status, released.ended_at) == ("released", due + timedelta(seconds=1))
    reopened = posting_row(app, wish)
    assert (reopened.status, reopened.claimed_count) == ("open", 0)
    assert wish_allowance(app, volunteer) == 0
    data = {"kind": "claim_released", "posting_id": str(wish), "claim_id": str(claim_id)}
    assert sorted(notes(app, "claim_released")) == sorted([(poster.id, data), (volunteer.id, data)])
    # Back on the board: its alerts are requested, and the alert_nearby job sends
    # them — the neighbour hears of it (微呼百应); the poster never does, nor the
    # volunteer whose claim lapsed.
    assert notes(app, "nearby_posting") == []
    alerted = run(app, "alert_nearby")
    assert (alerted["postings"], alerted["alerted"]) == (1, 1)
    assert [user_id for user_id, _ in notes(app, "nearby_posting")] == [neighbour.id]
    assert run(app, "alert_nearby")["postings"] == 0

    again = run(app, "release_overdue_claims")
    assert (again["released"], again["reopened"]) == (0, 0)
    assert len(notes(app, "claim_released")) == 2
    assert len(notes(app, "nearby_posting")) == 1
    assert wish_allowance(app, volunteer) == 0
    assert posting_row(app, wish).claimed_count == 0

    # The wish can be claimed again, by someone else or the same volunteer.
    assert claim_row(app, claim(app, volunteer, wish)).status == "active"


def test_claimant_is_reminded_once_24_hours_before_due_and_not_earlier(app):
    poster = make_user(app)
    volunteer = make_volunteer(app, home=None)
    wish = make_posting(app, poster, claim_ttl_hours=48)
    claim_id = claim(app, volunteer, wish)
    due = T0 + timedelta(hours=48)

    clock.freeze(due - timedelta(hours=24, seconds=1))
    assert run(app, "release_overdue_claims")["reminded"] == 0
    assert notes(app, "claim_due_soon") == []

    clock.freeze(due - timedelta(hours=24))
    assert run(app, "release_overdue_claims")["reminded"] == 1
    clock.advance(timedelta(hours=12))
    assert run(app, "release_overdue_claims")["reminded"] == 0
    assert notes(app, "claim_due_soon") == [
        (volunteer.id, {"kind": "claim_due_soon", "posting_id": str(wish), "claim_id": str(claim_id)})
    ]
    assert claim_row(app, claim_id).due_reminded_at == due - timedelta(hours=24)


def test_fulfilled_and_withdrawn_claims_are_never_released(app):
    poster = make_user(app)
    volunteer = make_volunteer(app, home=None)
    other = make_volunteer(app, home=None)
    fulfilled_wish = make_posting(app, poster, claim_ttl_hours=1)
    withdrawn_wish = make_posting(app, poster, claim_ttl_hours=1)
    fulfilled = claim(app, volunteer, fulfilled_wish)
    withdrawn = claim(app, other, withdrawn_wish)
    with app.app_context():
        claims.fulfil_claim(Actor(db.session.get(User, volunteer.id)), fulfilled, "修好了", minutes=60)
        claims.withdraw_claim(Actor(db.session.get(User, other.id)), withdrawn)

    clock.advance(timedelta(hours=2))
    result = run(app, "release_overdue_claims")
    assert (result["released"], result["reminded"]) == (0, 0)
    assert claim_row(app, fulfilled).status == "fulfilled"
    assert posting_row(app, fulfilled_wish).status == "claimed"
    assert claim_row(app, withdrawn).status == "withdrawn"
    assert notes(app, "claim_released") == []


def test_a_wish_released_after_its_deadline_expires_at_once_unadvertised(app):
    poster = make_user(app)
    volunteer = make_volunteer(app, home=None)
    make_volunteer(app)  # a neighbour who would be alerted
    wish = make_posting(app, poster, claim_ttl_hours=24, expires_at=T0 + timedelta(hours=12))
    claim(app, volunteer, wish)

    clock.advance(timedelta(hours=25))
    result = run(app, "release_overdue_claims")
    assert (result["released"], result["reopened"]) == (1, 0)
    assert posting_row(app, wish).status == "expired"
    assert notes(app, "nearby_posting") == []
    assert [user_id for user_id, _ in notes(app, "posting_expired")] == [poster.id]
    assert run(app, "expire_postings")["expired"] == 0


# --- remind_upcoming ---------------------------------------------------------------------------------------------


def test_event_reminders_go_out_once_24_hours_and_once_1_hour_before_the_start(app):
    coordinator = make_user(app)
    starts = T0 + timedelta(days=3)
    project = make_posting(
        app, coordinator, kind="project", capacity=2, starts_at=starts, ends_at=starts + timedelta(hours=3)
    )
    first, second, waiting, quitter = (make_volunteer(app, home=None) for _ in range(4))
    first_claim = claim(app, first, project)
    second_claim = claim(app, second, project)
    waiting_claim = claim(app, waiting, project)
    assert claim_row(app, waiting_claim).status == "waitlisted"
    charity = make_posting(app, coordinator, kind="charity", starts_at=starts, ends_at=starts + timedelta(hours=2))
    quitter_claim = claim(app, quitter, charity)
    with app.app_context():
        claims.withdraw_claim(Actor(db.session.get(User, quitter.id)), quitter_claim)

    clock.freeze(starts - timedelta(hours=24, minutes=1))
    assert run(app, "remind_upcoming")["reminded_24h"] == 0
    assert notes(app, "event_reminder") == []

    clock.freeze(starts - timedelta(hours=24))
    result = run(app, "remind_upcoming")
    assert (result["reminded_24h"], result["reminded_1h"]) == (2, 0)
    assert sorted(notes(app, "event_reminder")) == sorted(
        [
            (first.id, {"kind": "event_reminder", "posting_id": str(project), "claim_id": str(first_claim)}),
            (second.id, {"kind": "event_reminder", "posting_id": str(project), "claim_id": str(second_claim)}),
        ]
    )
    clock.freeze(starts - timedelta(hours=1, seconds=1))
    result = run(app, "remind_upcoming")
    assert (result["reminded_24h"], result["reminded_1h"]) == (0, 0)

    clock.freeze(starts - timedelta(hours=1))
    assert run(app, "remind_upcoming")["reminded_1h"] == 2
    clock.freeze(starts - timedelta(minutes=10))
    result = run(app, "remind_upcoming")
    assert (result["reminded_24h"], result["reminded_1h"]) == (0, 0)
    clock.freeze(starts + timedelta(minutes=10))
    assert run(app, "remind_upcoming")["reminded_1h"] == 0

    reminded = [user_id for user_id, _ in notes(app, "event_reminder")]
    assert sorted(reminded) == sorted([first.id, second.id, first.id, second.id])
    assert waiting.id not in reminded and quitter.id not in reminded
    with app.app_context():
        bodies = db.session.scalars(sa.select(Notification.body).where(Notification.kind == "event_reminder")).all()
    assert all("帮独居老人修水龙头" in body for body in bodies)


def test_a_late_signup_gets_only_the_reminder_still_due(app):
    coordinator = make_user(app)
    starts = T0 + timedelta(hours=5)
    charity = make_posting(app, coordinator, kind="charity", starts_at=starts, ends_at=starts + timedelta(hours=2))
    clock.freeze(starts - timedelta(minutes=50))
    volunteer = make_volunteer(app, home=None)
    claim_id = claim(app, volunteer, charity)

    result = run(app, "remind_upcoming")
    assert (result["reminded_24h"], result["reminded_1h"]) == (0, 1)
    assert notes(app, "event_reminder") == [
        (volunteer.id, {"kind": "event_reminder", "posting_id": str(charity), "claim_id": str(claim_id)})
    ]
    assert claim_row(app, claim_id).reminder_stage == 2
    assert run(app, "remind_upcoming")["reminded_1h"] == 0


# --- purge -------------------------------------------------------------------------------------------------------


def test_purge_deletes_only_what_has_outlived_its_use(app):
    user = make_user(app)
    now = T0
    with app.app_context():
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            db.session.add(
                IdempotencyKey(
                    user_id=user.id, key=key, method="POST", path="/x", request_hash="h", created_at=now - age
                )
            )
        for jti, expires in (("expired", now - timedelta(seconds=1)), ("live", now + timedelta(days=1))):
            db.session.add(RefreshToken(jti=jti, family_id="f", user_id=user.id, expires_at=expires))
        for token, seen in (("idle", now - timedelta(days=271)), ("recent", now - timedelta(days=269))):
            db.session.add(Device(user_id=user.id, token=token, platform="android", provider="fcm", last_seen_at=seen))
        for dedupe, created, read in (
            ("old-read", now - timedelta(days=181), now - timedelta(days=181)),
            ("old-unread", now - timedelta(days=181), None),
            ("young-read", now - timedelta(days=179), now - timedelta(days=179)),
        ):
            db.session.add(
                Notification(
                    user_id=user.id,
                    kind="posting_expired",
                    title="t",
                    body="b",
                    data={},
                    dedupe_key=dedupe,
                    created_at=created,
                    read_at=read,
                    push_status="sent",
                    next_attempt_at=created,
                )
            )
        for key, reserved in (("old-code", now - timedelta(days=2, seconds=1)), ("new-code", now - timedelta(days=1))):
            db.session.add(
                SmsCode(
                    phone_key=key, purpose="login", code_hash="h", nonce="n", reserved_at=reserved, expires_at=reserved
                )
            )
        for key, window in (("old-window", now - timedelta(days=3)), ("today", now - timedelta(hours=1))):
            db.session.add(SmsCounter(scope="phone_day", key=key, window_start=window, count=1))
        db.session.commit()
        keys_before = db.session.scalar(sa.select(sa.func.count()).select_from(RefreshToken))

    result = run(app, "purge")
    kinds = ("idempotency_keys", "refresh_tokens", "devices", "notifications", "sms_codes", "sms_counters")
    assert {k: result[k] for k in kinds} == dict.fromkeys(kinds, 1)
    with app.app_context():
        assert db.session.scalars(sa.select(IdempotencyKey.key)).all() == ["fresh"]
        jtis = set(db.session.scalars(sa.select(RefreshToken.jti)))
        assert "expired" not in jtis and "live" in jtis
        assert len(jtis) == keys_before - 1
        assert db.session.scalars(sa.select(Device.token)).all() == ["recent"]
        assert sorted(db.session.scalars(sa.select(Notification.dedupe_key))) == ["old-unread", "young-read"]
        assert db.session.scalars(sa.select(SmsCode.phone_key)).all() == ["new-code"]
        assert db.session.scalars(sa.select(SmsCounter.key)).all() == ["today"]
    assert run(app, "purge")["batches"] == 6  # one empty batch per kind, nothing deleted
    assert sum(run(app, "purge")[k] for k in kinds) == 0


# --- dispatch_push -----------------------------------------------------------------------------------------------


def test_dispatch_push_drains_the_outbox_to_the_sender(app):
    user = make_user(app)
    with app.app_context():
        db.session.add(Device(user_id=user.id, token="tok-1", platform="android", provider="fcm"))
        for n in range(3):
            notify([user.id], "posting_expired", dedupe=f"posting:{n}", title=f"心愿{n}", posting_id=n + 1)
        db.session.commit()

    result = run(app, "dispatch_push", batch_size=2)
    assert (result["claimed"], result["sent"], result["batches"]) == (3, 3, 2)
    sender = app.extensions["push_router"]["memory"]
    assert len(sender.to("tok-1")) == 3
    with app.app_context():
        assert set(db.session.scalars(sa.select(Notification.push_status))) == {"sent"}
    assert run(app, "dispatch_push")["claimed"] == 0
    assert len(sender.sent) == 3


# --- batched notifications ---------------------------------------------------------------------------------------


def test_a_batch_of_events_writes_the_rows_notify_would(app):
    """Jobs queue a batch's notifications with notify_many(); each row must be what
    notify() writes for that event: language, time zone, quiet hours, mutes, key."""
    from app.models import User as UserModel

    zh, en, quiet, muted = (make_user(app) for _ in range(4))
    with app.app_context():
        db.session.get(UserModel, en.id).locale = "en"
        db.session.get(UserModel, en.id).timezone = "Europe/London"
        db.session.get(UserModel, quiet.id).quiet_start = "09:00"  # T0 is 10:00 in Shanghai
        db.session.get(UserModel, quiet.id).quiet_end = "12:00"
        db.session.get(UserModel, muted.id).muted_kinds = ["event_reminder"]
        db.session.commit()
    starts = T0 + timedelta(hours=5)
    events = [
        ([zh.id, en.id], "claim:1:1h", {"title": "义务理发", "when": starts, "posting_id": 7, "claim_id": 1}),
        ([quiet.id, muted.id, zh.id], "claim:2:1h", {"title": "社区清洁", "when": starts, "posting_id": 8}),
    ]
    columns = (
        "user_id",
        "kind",
        "title",
        "body",
        "data",
        "params",
        "dedupe_key",
        "created_at",
        "push_status",
        "last_error",
        "next_attempt_at",
    )

    def rows() -> list[tuple]:
        with app.app_context():
            found = db.session.scalars(sa.select(Notification).order_by(Notification.dedupe_key)).all()
            return [tuple(getattr(n, c) for c in columns) for n in found]

    with app.app_context():
        assert notify_many("event_reminder", events) == 5
        assert notify_many("event_reminder", events) == 0
        db.session.commit()
    batched = rows()
    with app.app_context():
        db.session.execute(sa.delete(Notification))
        for user_ids, dedupe, context in events:
            notify(user_ids, "event_reminder", dedupe=dedupe, **context)
        db.session.commit()
    assert batched == rows()
    by_user = {row[0]: row for row in batched if row[6].startswith("event_reminder:claim:2:")}
    assert by_user[muted.id][8:10] == ("skipped", "muted")
    assert by_user[quiet.id][10] > T0  # held until the quiet hours end
    assert "“义务理发” starts" in next(row[3] for row in batched if row[0] == en.id)


# --- how a run works ---------------------------------------------------------------------------------------------


def test_batches_are_bounded_and_a_run_stops_on_its_budget_or_a_stop_request(app):
    poster = make_user(app)
    wishes = [make_posting(app, poster, expires_at=T0 + timedelta(hours=1)) for _ in range(5)]
    clock.advance(timedelta(hours=2))

    assert run(app, "expire_postings", time_budget=0)["expired"] == 0
    jobs.request_stop()
    assert run(app, "expire_postings")["expired"] == 0
    jobs.clear_stop()

    result = run(app, "expire_postings", batch_size=2)
    # one (empty) batch closing events, 2 + 2 + 1 expired, one (empty) batch for the warnings
    assert (result["expired"], result["batches"]) == (5, 5)
    assert {posting_row(app, pid).status for pid in wishes} == {"expired"}
    assert len(notes(app, "posting_expired")) == 5


def test_a_failing_batch_rolls_back_whole(app, monkeypatch):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(hours=1))
    clock.advance(timedelta(hours=2))

    def broken(*args, **kwargs):
        raise RuntimeError("push outbox unavailable")

    monkeypatch.setattr(lifecycle, "notify_many", broken)
    with pytest.raises(RuntimeError):
        run(app, "expire_postings")
    assert posting_row(app, wish).status == "open"
    monkeypatch.undo()
    assert run(app, "expire_postings")["expired"] == 1
    assert len(notes(app, "posting_expired")) == 1


def test_each_run_logs_one_line_with_its_counts(app, caplog):
    poster = make_user(app)
    make_posting(app, poster, expires_at=T0 + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    with caplog.at_level(logging.DEBUG, logger="app.jobs"):
        run(app, "expire_postings")
        run(app, "expire_postings")
    lines = [r for r in caplog.records if r.name == "app.jobs"]
    assert len(lines) == 2
    busy, idle = lines
    assert busy.levelno == logging.INFO
    assert "closed=0 expired=1 warned=0 batches=3" in busy.getMessage()
    assert (busy.job, busy.rows, busy.counts["expired"], busy.lease_busy) == ("expire_postings", 1, 1, False)
    assert isinstance(busy.duration_ms, int)
    assert idle.levelno == logging.DEBUG
    assert "expired=0" in idle.getMessage() and idle.rows == 0


def test_lease_keys_are_stable_and_distinct():
    names = ("expire_postings", "release_overdue_claims", "remind_upcoming", "dispatch_push", "purge")
    keys = {jobs.lease_key(name) for name in names}
    assert len(keys) == len(names)
    assert all(-(2**63) <= key < 2**63 for key in keys)
    assert jobs.lease_key("expire_postings") == jobs.lease_key("expire_postings")


# --- the CLI -----------------------------------------------------------------------------------------------------


def test_jobs_list_shows_every_job_and_its_interval(app):
    result = app.test_cli_runner().invoke(args=["jobs", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == [
        "expire_postings",
        "release_overdue_claims",
        "remind_upcoming",
        "alert_nearby",
        "dispatch_push",
        "erase_accounts",
        "purge",
        "purge_photos",
    ]
    assert "every     60s  JOB_EXPIRE_POSTINGS_SECONDS" in lines[0]
    assert "every      5s  JOB_ALERT_NEARBY_SECONDS" in lines[3]
    assert "every      2s  JOB_DISPATCH_PUSH_SECONDS" in lines[4]
    assert "every    600s  JOB_ERASE_ACCOUNTS_SECONDS" in lines[5]
    assert "every  86400s  JOB_PURGE_SECONDS" in lines[6]
    assert "every    300s  JOB_PURGE_PHOTOS_SECONDS" in lines[7]


def test_jobs_run_runs_one_job_once(app):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    runner = app.test_cli_runner()

    result = runner.invoke(args=["jobs", "run", "expire_postings"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "expire_postings closed=0 expired=1 warned=0 batches=3 lease_busy=0"
    assert posting_row(app, wish).status == "expired"
    assert runner.invoke(args=["jobs", "run", "expire_postings"]).stdout.startswith(
        "expire_postings closed=0 expired=0 "
    )

    unknown = runner.invoke(args=["jobs", "run", "feed_the_cat"])
    assert unknown.exit_code == 2
    assert "feed_the_cat" in unknown.output


# --- two schedulers at once (PostgreSQL) -------------------------------------------------------------------------


def test_a_run_that_misses_the_lease_does_nothing(app, postgres_only):
    poster = make_user(app)
    wish = make_posting(app, poster, expires_at=T0 + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    with app.app_context():
        with db.engine.connect() as other_scheduler:
            other_scheduler.execute(sa.select(sa.func.pg_advisory_lock(jobs.lease_key("expire_postings"))))
            result = jobs.expire_postings()
            assert (result["lease_busy"], result["expired"], result["batches"]) == (1, 0, 0)
            # another job's lease is another key
            assert jobs.release_overdue_claims()["lease_busy"] == 0
            other_scheduler.execute(sa.select(sa.func.pg_advisory_unlock(jobs.lease_key("expire_postings"))))
    assert posting_row(app, wish).status == "open"
    assert run(app, "expire_postings")["expired"] == 1


@pytest.mark.parametrize("lease", [True, False], ids=["with-lease", "without-lease"])
def test_two_schedulers_at_once_change_each_row_once_and_notify_once(app, postgres_only, monkeypatch, lease):
    """Two threads run every job at the same moment in small batches. With the lease
    one of them does the work; without it (the lease switched off) the conditional
    updates alone must still move each row once."""
    if not lease:
        monkeypatch.setattr(jobs, "take_lease", lambda job: True)
    poster = make_user(app)
    volunteers = [make_volunteer(app, home=None) for _ in range(4)]
    expiring = [make_posting(app, poster, expires_at=T0 + timedelta(hours=1)) for _ in range(20)]
    warned = [make_posting(app, poster, expires_at=T0 + timedelta(hours=20)) for _ in range(6)]
    claimed = [make_posting(app, poster, claim_ttl_hours=1) for _ in range(8)]
    wish_claims = [claim(app, volunteers[i % 4], posting_id) for i, posting_id in enumerate(claimed)]
    starts = T0 + timedelta(hours=2, minutes=30)
    project = make_posting(
        app, poster, kind="project", capacity=10, starts_at=starts, ends_at=starts + timedelta(hours=2)
    )
    event_claims = [claim(app, v, project) for v in volunteers]
    clock.freeze(T0 + timedelta(hours=2))

    barrier = threading.Barrier(2)

    def scheduler() -> Counter[str]:
        done: Counter[str] = Counter()
        with app.app_context():
            for job in (jobs.expire_postings, jobs.release_overdue_claims, jobs.remind_upcoming):
                barrier.wait(timeout=30)
                done.update(job(batch_size=3))
            db.session.remove()
        return done

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(scheduler) for _ in range(2)]
        both = sum((future.result(timeout=60) for future in futures), Counter())  # re-raises a thread's error
    # Each row was moved by exactly one of them (the dedupe keys would hide a second move).
    moved = {k: both[k] for k in ("expired", "warned", "released", "reopened", "reminded_24h", "reminded_1h")}
    assert moved == {"expired": 20, "warned": 6, "released": 8, "reopened": 8, "reminded_24h": 0, "reminded_1h": 4}

    assert {posting_row(app, pid).status for pid in expiring} == {"expired"}
    assert {posting_row(app, pid).status for pid in claimed} == {"open"}
    assert {posting_row(app, pid).claimed_count for pid in claimed} == {0}
    assert {claim_row(app, cid).status for cid in wish_claims} == {"released"}
    assert [wish_allowance(app, v) for v in volunteers] == [0, 0, 0, 0]
    assert {claim_row(app, cid).reminder_stage for cid in event_claims} == {2}

    def events(kind: str) -> list[tuple[int, str | None]]:
        return sorted((user_id, data.get("claim_id") or data.get("posting_id")) for user_id, data in notes(app, kind))

    assert events("posting_expired") == sorted((poster.id, str(pid)) for pid in expiring)
    assert events("posting_expiring") == sorted((poster.id, str(pid)) for pid in warned)
    assert events("claim_released") == sorted(
        [(poster.id, str(cid)) for cid in wish_claims]
        + [(volunteers[i % 4].id, str(cid)) for i, cid in enumerate(wish_claims)]
    )
    assert events("event_reminder") == sorted((v.id, str(cid)) for v, cid in zip(volunteers, event_claims, strict=True))

    with app.app_context():
        before = db.session.scalar(sa.select(sa.func.count()).select_from(Notification))
    for job in ("expire_postings", "release_overdue_claims", "remind_upcoming"):
        result = run(app, job)
        assert sum(v for k, v in result.items() if k not in ("batches", "lease_busy")) == 0, (job, result)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == before
