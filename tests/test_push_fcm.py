"""The real firebase-admin client against the fake FCM server on loopback.

Each test runs notify() → dispatch_pending() with PUSH_BACKEND=fcm,
FCM_ENDPOINT at the fake and a freshly generated service-account key whose
token_uri points at the fake. The SDK's own retries are made fast
(FCM_SDK_BACKOFF_SECONDS=0), its timeout generous (FCM_TIMEOUT_SECONDS), and the
tests about timeouts set a short one themselves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Notification
from notifications.dispatch import close_router, current_router, dispatch_pending
from notifications.senders import PushMessage, Router
from notifications.senders.fcm import FcmProvider
from tests.factories import make_device, make_posting, make_user, make_volunteer
from tests.fake_fcm import GOOGLE_TOKEN_AUDIENCE, FakeFcm, validate_message
from tests.moments import YEAR
from tests.pushes import claim_wish, device_tokens

NOW = datetime(YEAR, 11, 26, 4, 0, tzinfo=UTC)  # noon in Shanghai, outside any quiet hours

# firebase-admin 7.7 deprecates Message.token for fid; see notifications/senders/fcm.py
# firebase-admin against a local fake FCM server: `make test-fast` leaves them out.
pytestmark = [pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning"), pytest.mark.slow]


@pytest.fixture(scope="module")
def fake():
    with FakeFcm(project_id="yz-test-push") as server:
        yield server


@pytest.fixture
def fcm_app(app, fake):
    """The test app switched to the fcm backend, pointed at the fake."""
    fake.reset()
    app.config.update(
        PUSH_BACKEND="fcm",
        FCM_ENDPOINT=fake.url,
        FIREBASE_CREDENTIALS=json.dumps(fake.service_account()),
        # generous, so a busy CI machine never turns a scripted answer into a
        # timeout; the tests about timeouts set a short one themselves
        FCM_TIMEOUT_SECONDS=5,
        FCM_SDK_RETRIES=2,
        FCM_SDK_BACKOFF_SECONDS=0,
    )
    yield app
    close_router(app)
    fake.release()


def add_device(app, user_id: int, token: str, platform: str = "android") -> None:
    make_device(app, user_id, token, platform, provider="fcm")


def dispatch(app) -> dict:
    with app.app_context():
        return dispatch_pending()


def the_row(app) -> Notification:
    with app.app_context():
        row = db.session.scalars(sa.select(Notification)).one()
        db.session.expunge(row)
        return row


def test_claimed_wish_reaches_each_of_the_posters_devices_once(fcm_app, fake, client):
    clock.freeze(NOW)
    poster, volunteer = make_user(fcm_app), make_user(fcm_app)
    add_device(fcm_app, poster.id, "poster-android", "android")
    add_device(fcm_app, poster.id, "poster-iphone", "ios")
    add_device(fcm_app, volunteer.id, "volunteer-phone", "android")
    claim_wish(fcm_app, poster.id)

    counts = dispatch(fcm_app)

    assert counts["sent"] == 1 and counts["pushes"] == 2
    assert sorted(m["token"] for m in fake.messages) == ["poster-android", "poster-iphone"]
    android, iphone = fake.messages_to("poster-android")[0], fake.messages_to("poster-iphone")[0]
    row_id = str(the_row(fcm_app).id)
    for message in (android, iphone):
        assert message["notification"] == {"title": "心愿被认领啦", "body": "小陈认领了您的「帮王奶奶买菜」。"}
        assert message["data"] == {
            "kind": "wish_claimed",
            "posting_id": "42",
            "claim_id": "7",
            "notification_id": row_id,
        }
    assert android["android"] == {"priority": "high", "collapse_key": "posting-42"}
    assert iphone["apns"]["headers"] == {"apns-priority": "10", "apns-collapse-id": "posting-42"}
    assert iphone["apns"]["payload"]["aps"]["badge"] == 1
    assert "apns" not in android and "android" not in iphone
    # one OAuth exchange, then the bearer token on every send
    assert fake.token_exchanges == 1
    assert all(r.headers["authorization"].startswith("Bearer ya29.fake-") for r in fake.requests)
    row = the_row(fcm_app)
    assert (row.push_status, row.sent_at, row.last_error) == ("sent", NOW, None)
    inbox = client.get("/api/v1/me/notifications", headers=poster.headers).get_json()["items"]
    assert [(i["title"], i["data"]) for i in inbox] == [("心愿被认领啦", android["data"])]
    assert dispatch(fcm_app)["claimed"] == 0


def test_claiming_a_wish_through_the_api_pushes_to_the_poster(fcm_app, fake, client):
    """The whole path: POST /claims writes the row in the claim's transaction; the dispatcher pushes it."""
    clock.freeze(NOW)
    poster = make_user(fcm_app, name="王奶奶")
    volunteer = make_volunteer(fcm_app, name="小陈")
    posting_id = make_posting(fcm_app, poster, title="帮忙买菜")
    for token, platform in (("poster-android", "android"), ("poster-iphone", "ios")):
        resp = client.post("/api/v1/me/devices", json={"token": token, "platform": platform}, headers=poster.headers)
        assert resp.status_code == 201
    client.post(
        "/api/v1/me/devices", json={"token": "volunteer-phone", "platform": "android"}, headers=volunteer.headers
    )

    resp = client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=volunteer.headers)
    assert resp.status_code == 201, resp.get_json()
    claim_id = resp.get_json()["id"]
    assert dispatch(fcm_app)["sent"] == 1

    inbox_id = client.get("/api/v1/me/notifications", headers=poster.headers).get_json()["items"][0]["id"]
    expected = {
        "kind": "wish_claimed",
        "posting_id": str(posting_id),
        "claim_id": str(claim_id),
        "notification_id": str(inbox_id),
    }
    assert sorted(m["token"] for m in fake.messages) == ["poster-android", "poster-iphone"]
    for message in fake.messages:
        assert message["notification"] == {"title": "心愿被认领啦", "body": "小陈认领了您的「帮忙买菜」。"}
        assert message["data"] == expected
    assert dispatch(fcm_app)["claimed"] == 0
    assert len(fake.messages) == 2  # exactly one push per device
    inbox = client.get("/api/v1/me/notifications", headers=poster.headers).get_json()["items"]
    assert [(item["kind"], item["data"]) for item in inbox] == [("wish_claimed", expected)]


def test_the_inbox_row_exists_even_when_push_fails(fcm_app, fake, client):
    poster = make_user(fcm_app)
    add_device(fcm_app, poster.id, "poster-phone")
    fake.script("poster-phone", "UNAVAILABLE")
    claim_wish(fcm_app, poster.id)
    assert dispatch(fcm_app)["retried"] == 1
    assert fake.messages == []
    inbox = client.get("/api/v1/me/notifications?unread=true", headers=poster.headers).get_json()["items"]
    assert len(inbox) == 1 and inbox[0]["kind"] == "wish_claimed"


@pytest.mark.parametrize("error", ["UNREGISTERED", "SENDER_ID_MISMATCH", "INVALID_ARGUMENT"])
def test_dead_tokens_are_deleted(fcm_app, fake, error):
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "dead-token")
    add_device(fcm_app, user.id, "live-token")
    fake.script("dead-token", error)
    claim_wish(fcm_app, user.id)
    counts = dispatch(fcm_app)
    assert counts["tokens_deleted"] == 1 and counts["sent"] == 1
    assert device_tokens(fcm_app) == {"live-token"}
    assert [r.error for r in fake.requests_for("dead-token")] == [error]  # not retried by anyone
    assert len(fake.messages_to("live-token")) == 1


def test_a_user_whose_only_token_is_dead_is_skipped(fcm_app, fake):
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "dead-token")
    fake.script("dead-token", "UNREGISTERED")
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["skipped"] == 1
    row = the_row(fcm_app)
    assert row.push_status == "skipped"
    assert row.last_error.startswith("no_devices: UnregisteredError")
    assert device_tokens(fcm_app) == set()


def test_quota_exceeded_retries_after_retry_after(fcm_app, fake):
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "busy")
    fake.script("busy", "QUOTA_EXCEEDED", times=1, retry_after=120)
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["retried"] == 1
    row = the_row(fcm_app)
    assert (row.push_status, row.push_attempts) == ("pending", 1)
    assert row.last_error.startswith("QuotaExceededError")
    assert row.next_attempt_at >= NOW + timedelta(seconds=120)
    assert len(fake.requests_for("busy")) == 1  # the SDK does not retry 429 itself

    clock.freeze(row.next_attempt_at)
    assert dispatch(fcm_app)["sent"] == 1
    assert len(fake.messages_to("busy")) == 1


def test_the_sdk_retries_a_503_itself_and_quickly(fcm_app, fake):
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fake.script("phone", "UNAVAILABLE", times=1)
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["sent"] == 1
    assert [r.status for r in fake.requests_for("phone")] == [503, 200]
    assert the_row(fcm_app).push_attempts == 1


def test_internal_errors_exhaust_the_sdk_retries_then_back_off(fcm_app, fake):
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fake.script("phone", "INTERNAL")
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["retried"] == 1
    assert [r.status for r in fake.requests_for("phone")] == [500, 500, 500]  # 1 + FCM_SDK_RETRIES
    row = the_row(fcm_app)
    assert row.push_status == "pending"
    assert row.last_error == "InternalError: Internal error encountered."
    assert NOW + timedelta(seconds=15) <= row.next_attempt_at <= NOW + timedelta(seconds=30)


def test_an_answer_that_times_out_is_never_sent_again(fcm_app, fake):
    """A request FCM received but did not answer in time was most likely delivered:
    neither the SDK nor the dispatcher sends it a second time."""
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fcm_app.config["FCM_TIMEOUT_SECONDS"] = 0.3
    fake.script("phone", "HANG", times=5)
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["sent"] == 1
    row = the_row(fcm_app)
    assert row.push_status == "sent"
    assert row.last_error.startswith("unconfirmed: DeadlineExceededError")
    clock.advance(timedelta(hours=1))
    assert dispatch(fcm_app)["claimed"] == 0
    assert len(fake.requests_for("phone")) == 1


def test_fcm_slower_than_the_timeout_delivers_each_message_once(fcm_app, fake):
    clock.freeze(NOW)
    users = [make_user(fcm_app) for _ in range(6)]
    for user in users:
        add_device(fcm_app, user.id, f"phone-{user.id}")
        claim_wish(fcm_app, user.id, claim_id=user.id)
    fcm_app.config["FCM_TIMEOUT_SECONDS"] = 0.3
    fake.delay = 0.8  # every answer comes too late
    assert dispatch(fcm_app)["sent"] == 6
    fake.delay = 0
    clock.advance(timedelta(hours=2))
    assert dispatch(fcm_app)["claimed"] == 0
    delivered = Counter(m["token"] for m in fake.messages)
    assert sorted(delivered.values()) == [1] * 6


def test_a_connection_that_never_opens_is_retried(fcm_app, fake):
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fcm_app.config["FCM_ENDPOINT"] = "http://127.0.0.1:1"
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["retried"] == 1
    assert the_row(fcm_app).push_status == "pending"


@pytest.mark.parametrize("header", ["inf", "1e308", "99999999999", "nan", "-5"])
def test_an_absurd_retry_after_is_bounded(fcm_app, fake, header):
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fake.script("phone", "QUOTA_EXCEEDED", times=1, retry_after=header)
    claim_wish(fcm_app, user.id)
    assert dispatch(fcm_app)["retried"] == 1
    wait = (the_row(fcm_app).next_attempt_at - NOW).total_seconds()
    assert 0 <= wait <= 3600


def test_still_failing_after_the_retry_horizon_is_failed_with_the_error_kept(fcm_app, fake):
    clock.freeze(NOW)
    user = make_user(fcm_app)
    add_device(fcm_app, user.id, "phone")
    fake.script("phone", "INTERNAL")
    claim_wish(fcm_app, user.id)
    for _ in range(14):  # every 2 hours: 26 h in all
        dispatch(fcm_app)
        clock.advance(timedelta(hours=2))
    row = the_row(fcm_app)
    assert row.push_status == "failed" and row.push_attempts == 13
    assert row.last_error == "gave up: InternalError: Internal error encountered."
    assert dispatch(fcm_app)["claimed"] == 0
    assert fake.messages == []


def test_an_invalid_argument_about_the_payload_fails_without_deleting_the_token(fcm_app, fake):
    with fcm_app.app_context():
        sender = current_router()["fcm"]
    huge = PushMessage(1, "phone", "android", "t", "b", {"blob": "x" * 5000})
    ((_, result),) = sender.send([huge])
    assert result.outcome == "failed"
    assert result.error.startswith("InvalidArgumentError: Message is too big")


def test_each_answer_is_handed_over_as_it_arrives_on_a_kept_pool(fake):
    """One request per message on the provider's own pool: answers come back as they
    arrive (a slow one does not hold up the others), and an empty batch sends nothing."""
    fake.reset()
    fake.script("slow", "HANG", times=1)
    # The hanging answer is let go once the twenty others are in, not by a timeout: on a
    # busy machine twenty answers may take longer than a short one (the timeout is
    # generous: it only ends the test if a slow answer does hold up the others).
    sender = FcmProvider(fake.service_account(), fake.url, timeout=30, sdk_backoff=0, concurrency=8)
    try:
        assert list(sender.send([])) == []
        messages = [PushMessage(i, f"tok-{i}", "android", "t", "b") for i in range(20)]
        messages.insert(0, PushMessage(99, "slow", "android", "t", "b"))
        order = []
        for i, _ in sender.send(messages):
            order.append(i)
            if len(order) == 20:
                fake.release()
        results = dict(sender.send([PushMessage(i, f"again-{i}", "android", "t", "b") for i in range(3)]))
    finally:
        fake.release()
        sender.close()
    assert sorted(order) == list(range(21))
    assert order[-1] == 0  # the hanging one answered last, the others did not wait for it
    assert [r.outcome for r in results.values()] == ["sent"] * 3
    assert sorted(m["token"] for m in fake.messages if m["token"].startswith("tok-")) == sorted(
        f"tok-{i}" for i in range(20)
    )


def test_credentials_may_be_a_file_path(fake, tmp_path):
    fake.reset()
    key = tmp_path / "service-account.json"
    key.write_text(json.dumps(fake.service_account()))
    router = Router({"PUSH_BACKEND": "fcm", "FCM_ENDPOINT": fake.url + "/", "FIREBASE_CREDENTIALS": str(key)})
    try:
        sender = router["fcm"]
        assert isinstance(sender, FcmProvider)
        assert sender.messages_url == f"{fake.url}/v1/projects/yz-test-push/messages:send"
        message = PushMessage(1, "phone", "web", "t", "b", {"kind": "claim_confirmed"}, None, False)
        ((_, result),) = sender.send([message])
        assert result.outcome == "sent"
        assert fake.messages_to("phone")[0]["webpush"] == {"headers": {"Urgency": "normal"}}
    finally:
        router.close()


def test_fcm_without_credentials_fails_loudly():
    with pytest.raises(ValueError, match="FIREBASE_CREDENTIALS"):
        Router({"PUSH_BACKEND": "fcm"})
    with pytest.raises(ValueError, match="unknown PUSH_BACKEND carrier-pigeon"):
        Router({"PUSH_BACKEND": "carrier-pigeon"})


# --- the fake itself -----------------------------------------------------------------------


def test_the_fake_checks_the_jwt_grant_and_the_bearer_token(fake):
    def post(path, data: bytes, headers=None):
        request = urllib.request.Request(fake.url + path, data=data, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    message = json.dumps({"message": {"token": "t", "notification": {"title": "x"}}}).encode()
    send_path = "/v1/projects/yz-test-push/messages:send"
    status, body = post(send_path, message, {"Authorization": "Bearer made-up"})
    assert (status, body["error"]["status"]) == (401, "UNAUTHENTICATED")

    # an assertion signed with some other key is refused
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = fake.service_account()["client_email"]
    claims = {  # on the wall clock, as google-auth signs it (not app.clock: Google checks it)
        "iss": email,
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "scope": "https://www.googleapis.com/auth/firebase.messaging",
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": int(datetime.now(UTC).timestamp()) + 600,
    }
    forged = jwt.encode(claims, stranger, algorithm="RS256")
    grant = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="
    status, body = post("/token", (grant + forged).encode())
    assert (status, body["error"]) == (400, "invalid_grant")

    from cryptography.hazmat.primitives import serialization

    own_key = serialization.load_pem_private_key(fake.service_account()["private_key"].encode(), password=None)
    status, body = post("/token", (grant + jwt.encode(claims, own_key, algorithm="RS256")).encode())
    assert status == 200 and body["token_type"] == "Bearer"
    status, body = post(send_path, message, {"Authorization": f"Bearer {body['access_token']}"})
    assert status == 200 and body["name"].startswith("projects/yz-test-push/messages/")


def test_the_fake_validates_messages_like_fcm():
    assert validate_message({"token": "t", "data": {"a": "1"}}) is None
    assert validate_message({"token": "t", "topic": "news"})[0] == "message"
    assert validate_message({"data": {"a": "1"}})[0] == "message"
    assert validate_message({"token": "t", "data": {"posting_id": 42}}) == (
        "message.data[0].value",
        "Invalid value at 'message.data[0].value' (TYPE_STRING)",
    )
    assert validate_message({"token": "t", "data": {"from": "x"}})[0] == "message.data[0].key"
    assert validate_message({"token": "t", "android": {"priority": "urgent"}})[0] == "message.android.priority"
    assert validate_message({"token": "t", "apns": {"payload": {"aps": {"badge": "3"}}}})[0] == (
        "message.apns.payload.aps.badge"
    )
    assert validate_message({"token": "t", "data": {"b": "x" * 4090}}) == ("message", "Message is too big")
