"""The outbox dispatcher against the memory sender: outcomes, back-off, leases, concurrency."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import has_app_context

from app import clock
from app.extensions import db
from app.models import Device, Notification, User
from app.outbox import notify, push_payload
from notifications.dispatch import (
    MAX_ATTEMPTS,
    backoff,
    claim_batch,
    current_router,
    dispatch_pending,
    dispatch_until_empty,
)
from notifications.senders import PushResult, Router
from notifications.senders.memory import MemoryProvider
from tests.factories import make_device, make_user
from tests.moments import YEAR
from tests.pushes import device_tokens, outbox_rows

NOW = datetime(YEAR, 11, 26, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


@pytest.fixture
def sender(app) -> MemoryProvider:
    with app.app_context():
        sender = current_router()["memory"]
    assert isinstance(sender, MemoryProvider)
    return sender


def add_device(app, user_id: int, token: str, platform: str = "android", provider: str = "fcm") -> None:
    make_device(app, user_id, token, platform, provider)


def router_of(provider) -> Router:
    """A router whose one provider is ``provider`` (a scripted stand-in)."""
    router = Router({"PUSH_BACKEND": "memory"})
    router.providers = {"memory": provider}
    return router


def enqueue(app, user_ids, kind="wish_claimed", dedupe="claim:1", **context) -> None:
    context = {"title": "帮王奶奶买菜", "volunteer": "小陈", "posting_id": 42, "claim_id": 7, **context}
    with app.app_context():
        notify(user_ids, kind, dedupe=dedupe, **context)
        db.session.commit()


def dispatch(app, **kwargs) -> dict:
    with app.app_context():
        return dispatch_pending(**kwargs)


def test_each_device_of_the_user_gets_one_push(app, sender):
    clock.freeze(NOW)
    poster, bystander = make_user(app), make_user(app)
    add_device(app, poster.id, "phone", "android")
    add_device(app, poster.id, "ipad", "ios")
    add_device(app, bystander.id, "other-phone")
    enqueue(app, [poster.id])

    counts = dispatch(app)

    assert counts == {
        "claimed": 1,
        "sent": 1,
        "retried": 0,
        "failed": 0,
        "skipped": 0,
        "deferred": 0,
        "pushes": 2,
        "tokens_deleted": 0,
    }
    assert sorted(m.token for m in sender.sent) == ["ipad", "phone"]
    row_id = outbox_rows(app)[0].id
    phone, ipad = sender.to("phone")[0], sender.to("ipad")[0]
    for push in (phone, ipad):
        assert push.title == "心愿被认领啦"
        assert push.body == "小陈认领了您的「帮王奶奶买菜」。"
        assert push.data == {
            "kind": "wish_claimed",
            "posting_id": "42",
            "claim_id": "7",
            "notification_id": str(row_id),
        }
        assert push.collapse_key == "posting-42"
        assert push.high_priority is True
    assert ipad.badge == 1 and phone.badge is None
    (row,) = outbox_rows(app)
    assert row.push_status == "sent"
    assert row.sent_at == NOW
    assert row.push_attempts == 1
    assert row.lease_expires_at is None
    assert push_payload(row.id, row.data) == phone.data  # the inbox item carries the push's data
    assert dispatch(app)["claimed"] == 0  # nothing is sent twice


def test_badge_is_the_unread_count_and_ordinary_kinds_are_not_high_priority(app, sender):
    user = make_user(app)
    add_device(app, user.id, "ipad", "ios")
    enqueue(app, [user.id], "claim_confirmed", dedupe="c:1")
    enqueue(app, [user.id], "claim_confirmed", dedupe="c:2")
    dispatch(app)
    assert sorted(m.badge for m in sender.sent) == [2, 2]
    assert all(m.high_priority is False for m in sender.sent)


def test_a_user_without_devices_is_done_and_skipped(app, sender):
    user = make_user(app)
    enqueue(app, [user.id])
    counts = dispatch(app)
    assert counts["skipped"] == 1 and counts["pushes"] == 0
    (row,) = outbox_rows(app)
    assert (row.push_status, row.last_error, row.sent_at) == ("skipped", "no_devices", None)
    assert sender.sent == []


def test_muted_kinds_never_push(app, sender):
    user = make_user(app)
    add_device(app, user.id, "phone")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user.id).values(muted_kinds=["wish_claimed"]))
        db.session.commit()
    enqueue(app, [user.id])
    assert dispatch(app)["claimed"] == 0
    assert outbox_rows(app)[0].push_status == "skipped"
    # muting after the row was queued is honoured when it is sent
    enqueue(app, [user.id], "claim_confirmed", dedupe="c:1")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user.id).values(muted_kinds=["claim_confirmed"]))
        db.session.commit()
    assert dispatch(app)["skipped"] == 1
    assert outbox_rows(app)[1].last_error == "muted"
    assert sender.sent == []


def test_quiet_hours_defer_the_push_until_they_end(app, sender):
    night = datetime(YEAR, 11, 26, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    morning = datetime(YEAR, 11, 26, 23, 0, tzinfo=UTC)  # 07:00 next day in Shanghai
    clock.freeze(night)
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id], dedupe="before")  # queued before quiet hours were set: due now
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user.id).values(quiet_start="22:00", quiet_end="07:00"))
        db.session.commit()
    enqueue(app, [user.id], dedupe="during")  # queued inside quiet hours: due at 07:00

    counts = dispatch(app)
    assert counts["claimed"] == 1 and counts["deferred"] == 1 and counts["pushes"] == 0
    first, second = outbox_rows(app)
    assert (first.push_status, first.next_attempt_at, first.push_attempts) == ("pending", morning, 0)
    assert second.next_attempt_at == morning

    clock.freeze(morning - timedelta(minutes=1))
    assert dispatch(app)["claimed"] == 0
    clock.freeze(morning)
    assert dispatch(app)["sent"] == 2
    assert len(sender.to("phone")) == 2


def test_dead_tokens_are_deleted(app, sender):
    user = make_user(app)
    add_device(app, user.id, "dead")
    add_device(app, user.id, "alive")
    sender.fail("dead", "dead_token", "UnregisteredError: Requested entity was not found.")
    enqueue(app, [user.id])
    counts = dispatch(app)
    assert counts["sent"] == 1 and counts["tokens_deleted"] == 1
    assert device_tokens(app) == {"alive"}
    (row,) = outbox_rows(app)
    assert row.push_status == "sent"
    assert row.last_error.startswith("UnregisteredError")


def test_when_every_token_is_dead_the_row_is_skipped(app, sender):
    user = make_user(app)
    add_device(app, user.id, "dead")
    sender.fail("dead", "dead_token", "SenderIdMismatchError: SenderId mismatch")
    enqueue(app, [user.id])
    assert dispatch(app)["skipped"] == 1
    (row,) = outbox_rows(app)
    assert row.push_status == "skipped"
    assert row.last_error == "no_devices: SenderIdMismatchError: SenderId mismatch"
    assert device_tokens(app) == set()


def test_a_token_registered_again_after_the_claim_is_kept(app, sender):
    """A dead answer for a token the phone re-registered meanwhile must not delete the fresh registration."""
    user = make_user(app)
    add_device(app, user.id, "tok")
    enqueue(app, [user.id])

    class ReRegisteringSender(MemoryProvider):
        def send(self, messages):
            with app.app_context():
                later = clock.utcnow() + timedelta(seconds=1)
                db.session.execute(sa.update(Device).where(Device.token == "tok").values(last_seen_at=later))
                db.session.commit()
            return enumerate([PushResult("dead_token", "UnregisteredError") for _ in messages])

    counts = dispatch(app, router=router_of(ReRegisteringSender()))
    assert counts["tokens_deleted"] == 0
    assert device_tokens(app) == {"tok"}


def test_transient_errors_back_off_and_are_retried_for_24_hours_then_fail(app, sender):
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "flaky")
    sender.fail("flaky", "retry", "UnavailableError: The service is currently unavailable.")
    enqueue(app, [user.id])

    waits, attempt = [], 0
    while True:
        counts = dispatch(app)
        attempt += 1
        (row,) = outbox_rows(app)
        if counts["failed"]:
            break
        assert counts["retried"] == 1, attempt
        assert (row.push_status, row.push_attempts) == ("pending", attempt)
        assert row.last_error == "UnavailableError: The service is currently unavailable."
        wait = (row.next_attempt_at - clock.utcnow()).total_seconds()
        ceiling = min(3600, 30 * 2 ** (attempt - 1))
        give_up = (NOW + timedelta(hours=24) - clock.utcnow()).total_seconds()
        assert min(ceiling / 2, give_up) <= wait <= ceiling
        waits.append(wait)
        assert dispatch(app)["claimed"] == 0  # not due before its time
        clock.freeze(row.next_attempt_at)
    assert clock.utcnow() == NOW + timedelta(hours=24)  # the last retry waits for the horizon
    assert 25 <= attempt < MAX_ATTEMPTS
    assert waits[:6] == sorted(waits[:6]) or max(waits) > 60 * 15
    assert (row.push_status, row.push_attempts) == ("failed", attempt)
    assert row.last_error == "gave up: UnavailableError: The service is currently unavailable."
    assert dispatch(app)["claimed"] == 0


def test_the_retry_horizon_is_configurable(app, sender):
    app.config["PUSH_RETRY_HOURS"] = 0.01  # 36 s
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "flaky")
    sender.fail("flaky", "retry", "UnavailableError: down")
    enqueue(app, [user.id])
    assert dispatch(app)["retried"] == 1
    clock.advance(timedelta(seconds=40))
    assert dispatch(app)["failed"] == 1


def test_a_transient_error_then_success(app, sender):
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "phone")
    sender.fail("phone", "retry", "QuotaExceededError", times=1)
    enqueue(app, [user.id])
    assert dispatch(app)["retried"] == 1
    clock.advance(timedelta(seconds=31))
    assert dispatch(app)["sent"] == 1
    (row,) = outbox_rows(app)
    assert (row.push_status, row.push_attempts, row.last_error) == ("sent", 2, None)
    assert len(sender.to("phone")) == 1


def test_retry_after_is_the_least_wait(app):
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id])

    class Throttled(MemoryProvider):
        def send(self, messages):
            return enumerate([PushResult("retry", "QuotaExceededError", retry_after=600) for _ in messages])

    dispatch(app, router=router_of(Throttled()))
    assert outbox_rows(app)[0].next_attempt_at >= NOW + timedelta(seconds=600)


def test_permanent_errors_fail_with_the_error_kept(app, sender):
    user = make_user(app)
    add_device(app, user.id, "phone")
    sender.fail("phone", "failed", "ThirdPartyAuthError: APNs certificate expired")
    enqueue(app, [user.id])
    assert dispatch(app)["failed"] == 1
    (row,) = outbox_rows(app)
    assert (row.push_status, row.last_error) == ("failed", "ThirdPartyAuthError: APNs certificate expired")


def test_a_broken_sender_makes_the_batch_retry(app):
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id])

    class Broken(MemoryProvider):
        def send(self, messages):
            raise ConnectionError("network is down")

    assert dispatch(app, router=router_of(Broken()))["retried"] == 1
    (row,) = outbox_rows(app)
    assert row.push_status == "pending"
    assert row.last_error == "sender error: ConnectionError: network is down"


def test_no_transaction_is_open_while_sending(app, sender, is_postgres):
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id])
    seen = {}

    class Watching(MemoryProvider):
        def send(self, messages):
            # providers run on threads of their own, outside any app context: no session there
            seen["app_context"] = has_app_context()
            # another connection can update the claimed row at once: no lock is held on it
            with app.app_context(), db.engine.connect() as other:
                if is_postgres:
                    other.execute(sa.text("SET lock_timeout = '1s'"))
                other.execute(sa.update(Notification).values(title=Notification.title))
                other.commit()
            return super().send(messages)

    assert dispatch(app, router=router_of(Watching()))["sent"] == 1
    assert seen == {"app_context": False}


def test_batches_are_bounded_and_drain_until_empty(app, sender):
    users = [make_user(app) for _ in range(3)]
    for user in users:
        add_device(app, user.id, f"phone-{user.id}")
    with app.app_context():
        for i in range(7):
            notify([u.id for u in users], "claim_confirmed", dedupe=f"c:{i}", title="t", posting_id=i)
        db.session.commit()
    assert dispatch(app, batch_size=5)["claimed"] == 5
    with app.app_context():
        total = dispatch_until_empty(batch_size=4)
    assert total["claimed"] == 16 and total["sent"] == 16 and total["batches"] == 4
    assert len(sender.sent) == 21
    assert max(sender.calls) <= 5


def test_the_next_batch_is_claimed_while_one_is_on_the_wire(app, sender, monkeypatch):
    """dispatch_until_empty claims batch n+1 while the last half of batch n is on the
    wire: the first send holds its last answer until a second claim has been made
    (a sequential loop would never make it), and every row still ends sent exactly once."""
    import notifications.dispatch as dispatch_module

    users = [make_user(app) for _ in range(5)]
    for user in users:
        add_device(app, user.id, f"phone-{user.id}")
    enqueue(app, [u.id for u in users], dedupe="wire")
    claims = []
    second_claim = threading.Event()
    original = dispatch_module.claim_batch

    def counting_claim(*args, **kwargs):
        claimed = original(*args, **kwargs)
        claims.append(len(claimed))
        if len(claims) >= 2:
            second_claim.set()
        return claimed

    monkeypatch.setattr(dispatch_module, "claim_batch", counting_claim)
    overlapped = []

    class Waiting(MemoryProvider):
        def send(self, messages):
            answers = list(super().send(messages))
            yield answers[0]
            overlapped.append(second_claim.wait(timeout=30))  # at once when it works; 30 s for a busy machine
            yield from answers[1:]

    waiting = Waiting()
    with app.app_context():
        total = dispatch_until_empty(batch_size=2, router=router_of(waiting))
    assert overlapped[0] is True
    assert total["claimed"] == 5 and total["sent"] == 5 and total["batches"] == 3
    assert sorted(m.token for m in waiting.sent) == sorted(f"phone-{u.id}" for u in users)
    assert {row.push_status for row in outbox_rows(app)} == {"sent"}


def test_a_batch_claimed_ahead_is_still_sent_when_the_limit_is_reached(app, sender):
    """max_batches bounds the claims: no row is left leased and unsent."""
    users = [make_user(app) for _ in range(6)]
    for user in users:
        add_device(app, user.id, f"phone-{user.id}")
    enqueue(app, [u.id for u in users], dedupe="limit")
    with app.app_context():
        total = dispatch_until_empty(batch_size=2, max_batches=2)
    assert total["batches"] == 2 and total["sent"] == 4
    assert Counter(row.push_status for row in outbox_rows(app)) == {"sent": 4, "pending": 2}


# --- crash safety ---------------------------------------------------------------------------


def test_an_abandoned_batch_is_sent_by_a_later_dispatcher_after_the_lease(app, sender):
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id], dedupe="a")
    enqueue(app, [user.id], dedupe="b")
    lease = NOW + timedelta(minutes=5)
    with app.app_context():
        crashed = claim_batch(10, NOW, lease)  # claimed, committed ... and the process died
    assert len(crashed) == 2
    assert {r.push_status for r in outbox_rows(app)} == {"sending"}

    clock.freeze(NOW + timedelta(minutes=4))
    assert dispatch(app)["claimed"] == 0  # the lease still holds
    clock.freeze(lease + timedelta(seconds=1))
    counts = dispatch(app)
    assert counts["claimed"] == 2 and counts["sent"] == 2
    assert [r.push_attempts for r in outbox_rows(app)] == [2, 2]
    assert len(sender.to("phone")) == 2


def test_a_dispatcher_that_lost_its_lease_cannot_overwrite_the_newer_result(app, sender):
    from notifications.dispatch import Outcome, record_results

    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id])
    slow_lease = NOW + timedelta(minutes=5)
    with app.app_context():
        (slow,) = claim_batch(10, NOW, slow_lease)
    clock.freeze(slow_lease + timedelta(seconds=1))
    assert dispatch(app)["sent"] == 1  # a second dispatcher reclaimed and sent it
    with app.app_context():  # the slow one comes back with a stale failure
        record_results([(slow.id, slow_lease, Outcome("failed", "failed", error="late"))], {})
    (row,) = outbox_rows(app)
    assert (row.push_status, row.last_error) == ("sent", None)


def test_a_row_whose_dispatchers_keep_dying_fails_in_the_end(app, sender):
    clock.freeze(NOW)
    user = make_user(app)
    add_device(app, user.id, "phone")
    enqueue(app, [user.id])
    for _ in range(MAX_ATTEMPTS):
        with app.app_context():
            assert len(claim_batch(10, clock.utcnow(), clock.utcnow() + timedelta(minutes=5))) == 1
        clock.advance(timedelta(minutes=6))
    assert dispatch(app)["failed"] == 1
    (row,) = outbox_rows(app)
    assert row.push_status == "failed"
    assert row.last_error == f"gave up after {MAX_ATTEMPTS} attempts"
    assert sender.sent == []


def test_backoff_grows_with_jitter_and_is_capped():
    for attempts in range(1, 12):
        ceiling = min(3600, 30 * 2 ** (attempts - 1))
        samples = {backoff(attempts).total_seconds() for _ in range(50)}
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert len(samples) > 1  # jitter
    assert backoff(1, at_least=900).total_seconds() == 900


def test_two_dispatchers_at_once_never_send_a_row_twice(app, postgres_only):
    """Real threads, real PostgreSQL: FOR UPDATE SKIP LOCKED gives each its own rows."""
    users = [make_user(app) for _ in range(20)]
    for user in users:
        add_device(app, user.id, f"phone-{user.id}")
    with app.app_context():
        for i in range(60):
            notify([u.id for u in users], "claim_confirmed", dedupe=f"c:{i}", title="t", posting_id=i)
        db.session.commit()

    class Slow(MemoryProvider):
        def send(self, messages):
            time.sleep(0.005)  # hold the batch a moment so the dispatchers overlap
            return super().send(messages)

    shared = Slow()
    totals: list[dict] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run():
        try:
            with app.app_context():
                start.wait()
                totals.append(dispatch_until_empty(batch_size=25, router=router_of(shared)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    per_row = Counter(m.notification_id for m in shared.sent)
    assert len(per_row) == 1200
    assert set(per_row.values()) == {1}
    assert sum(t.get("sent", 0) for t in totals) == 1200
    assert sum(1 for t in totals if t.get("claimed")) >= 2  # they really worked side by side
    assert {r.push_status for r in outbox_rows(app)} == {"sent"}
