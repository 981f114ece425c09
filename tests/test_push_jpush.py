"""JPush through its official client against the fake JPush server, and routing: each
device through its own provider, FCM and JPush in one pass, one's outage never the other's."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Device, PushDelivery
from notifications.dispatch import close_router, dispatch_pending
from notifications.senders import PushMessage
from notifications.senders.jpush import DEFAULT_THIRD_PARTY_CHANNEL, JPushProvider
from tests.factories import make_device, make_user
from tests.fake_fcm import FakeFcm
from tests.fake_jpush import FakeJPush, validate_push
from tests.moments import YEAR
from tests.pushes import claim_wish, device_tokens, outbox_rows

NOW = datetime(YEAR, 11, 26, 4, 0, tzinfo=UTC)  # noon in Shanghai, outside any quiet hours

pytestmark = pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def jp():
    with FakeJPush() as server:
        yield server


@pytest.fixture(scope="module")
def fcm():
    with FakeFcm(project_id="yz-test-route") as server:
        yield server


@pytest.fixture
def push_app(app, jp, fcm):
    """The test app with both real providers enabled, each pointed at its fake."""
    jp.reset()
    fcm.reset()
    app.config.update(
        PUSH_BACKEND="fcm,jpush",
        JPUSH_APP_KEY=jp.app_key,
        JPUSH_MASTER_SECRET=jp.master_secret,
        JPUSH_ENDPOINT=jp.url,
        # generous, so a busy CI machine never turns a scripted answer into a
        # timeout; the test about timeouts sets a short one itself
        JPUSH_TIMEOUT_SECONDS=5,
        FCM_ENDPOINT=fcm.url,
        FIREBASE_CREDENTIALS=json.dumps(fcm.service_account()),
        FCM_TIMEOUT_SECONDS=5,
        FCM_SDK_RETRIES=0,
        FCM_SDK_BACKOFF_SECONDS=0,
    )
    clock.freeze(NOW)
    yield app
    close_router(app)
    jp.release()
    fcm.release()


def dispatch(app) -> dict:
    with app.app_context():
        return dispatch_pending()


def deliveries(app) -> list[tuple[str, str]]:
    with app.app_context():
        return sorted(tuple(r) for r in db.session.execute(sa.select(PushDelivery.provider, PushDelivery.outcome)))


def test_a_jpush_push_carries_the_alert_and_the_same_data_as_fcm_in_extras(push_app, jp, fcm, client):
    user = make_user(push_app)
    make_device(push_app, user.id, "1a0018970a3f2b4c1e2", "android", provider="jpush")
    make_device(push_app, user.id, "120c83f7602d4c7a8f1", "ios", provider="jpush")
    make_device(push_app, user.id, "fcm-token-of-a-pixel", "android", provider="fcm")
    claim_wish(push_app, user.id)

    counts = dispatch(push_app)

    assert (counts["sent"], counts["pushes"]) == (1, 3)
    row_id = str(outbox_rows(push_app)[0].id)
    data = {"kind": "wish_claimed", "posting_id": "42", "claim_id": "7", "notification_id": row_id}
    (android,) = jp.pushes_to("1a0018970a3f2b4c1e2")
    assert android["platform"] == ["android"]
    assert android["audience"] == {"registration_id": ["1a0018970a3f2b4c1e2"]}
    assert android["notification"]["alert"] == "小陈认领了您的「帮王奶奶买菜」。"
    assert android["notification"]["android"] == {
        "alert": "小陈认领了您的「帮王奶奶买菜」。",
        "title": "心愿被认领啦",
        "priority": 2,  # a time-critical kind
        "extras": data,
    }
    assert android["options"]["third_party_channel"] == DEFAULT_THIRD_PARTY_CHANNEL
    assert android["options"]["apns_production"] is True
    (iphone,) = jp.pushes_to("120c83f7602d4c7a8f1")
    assert iphone["platform"] == ["ios"]
    ios = iphone["notification"]["ios"]
    assert (ios["alert"], ios["badge"], ios["extras"]) == (
        {"title": "心愿被认领啦", "body": android["notification"]["alert"]},
        1,
        data,
    )
    assert iphone["options"]["apns_collapse_id"] == "posting-42"
    # the FCM phone got the same data through FCM
    assert fcm.messages_to("fcm-token-of-a-pixel")[0]["data"] == data
    # the inbox item carries it too
    inbox = client.get("/api/v1/me/notifications", headers=user.headers).get_json()["items"]
    assert inbox[0]["data"] == data
    assert dispatch(push_app)["claimed"] == 0


def test_apns_production_and_vendor_channels_come_from_settings(push_app, jp):
    push_app.config.update(
        JPUSH_APNS_PRODUCTION="0", JPUSH_THIRD_PARTY_CHANNEL='{"xiaomi": {"channel_id": "yz_service"}}'
    )
    user = make_user(push_app)
    make_device(push_app, user.id, "reg-1", "ios", provider="jpush")
    claim_wish(push_app, user.id)
    assert dispatch(push_app)["sent"] == 1
    (push,) = jp.pushes_to("reg-1")
    assert push["options"]["apns_production"] is False
    assert push["options"]["third_party_channel"] == {"xiaomi": {"channel_id": "yz_service"}}


def test_an_unknown_registration_id_drops_the_device(push_app, jp):
    user = make_user(push_app)
    make_device(push_app, user.id, "gone", provider="jpush")
    make_device(push_app, user.id, "alive", provider="jpush")
    jp.script("gone", "UNKNOWN")
    claim_wish(push_app, user.id)
    counts = dispatch(push_app)
    assert (counts["sent"], counts["tokens_deleted"]) == (1, 1)
    assert device_tokens(push_app) == {"alive"}
    assert outbox_rows(push_app)[0].last_error.startswith("JPush 400 1011")


def test_an_auth_error_keeps_the_rows_and_the_devices_and_says_so(push_app, jp, caplog):
    user = make_user(push_app)
    make_device(push_app, user.id, "reg-1", provider="jpush")
    claim_wish(push_app, user.id)
    push_app.config["JPUSH_MASTER_SECRET"] = "a-wrong-secret"
    with caplog.at_level(logging.ERROR, logger="notifications.senders.jpush"):
        counts = dispatch(push_app)
    assert counts["retried"] == 1
    (row,) = outbox_rows(push_app)
    assert (row.push_status, row.push_attempts) == ("pending", 1)
    assert row.last_error.startswith("Unauthorized")
    assert device_tokens(push_app) == {"reg-1"}
    assert any("check JPUSH_APP_KEY and JPUSH_MASTER_SECRET" in r.getMessage() for r in caplog.records)
    assert [getattr(r, "provider", None) for r in caplog.records if r.levelno == logging.ERROR] == ["jpush"]

    # the keys are fixed: the row goes out on its next attempt
    close_router(push_app)
    push_app.config["JPUSH_MASTER_SECRET"] = jp.master_secret
    clock.freeze(row.next_attempt_at)
    assert dispatch(push_app)["sent"] == 1
    assert len(jp.pushes_to("reg-1")) == 1


def test_the_rate_limit_stops_calls_until_its_reset(push_app, jp):
    users = [make_user(push_app) for _ in range(4)]
    for user in users:
        make_device(push_app, user.id, f"reg-{user.id}", provider="jpush")
        claim_wish(push_app, user.id, claim_id=user.id)
    jp.fail_all = "RATE_LIMIT"
    push_app.config["JPUSH_CONCURRENCY"] = 1  # one call at a time: the first meets the limit
    counts = dispatch(push_app)
    assert counts["retried"] == 4
    assert jp.calls == 1  # the other three waited for the reset instead of calling
    for row in outbox_rows(push_app):
        assert row.push_status == "pending"
        assert row.next_attempt_at >= NOW + timedelta(seconds=jp.rate_limit_reset)
    jp.fail_all = None
    close_router(push_app)
    clock.freeze(max(row.next_attempt_at for row in outbox_rows(push_app)))
    assert dispatch(push_app)["sent"] == 4


def test_an_answer_that_times_out_is_never_sent_again(push_app, jp):
    user = make_user(push_app)
    make_device(push_app, user.id, "slow", provider="jpush")
    push_app.config["JPUSH_TIMEOUT_SECONDS"] = 0.3
    jp.script("slow", "HANG", times=3)
    claim_wish(push_app, user.id)
    assert dispatch(push_app)["sent"] == 1
    assert outbox_rows(push_app)[0].last_error.startswith("unconfirmed: ReadTimeout")
    clock.advance(timedelta(hours=1))
    assert dispatch(push_app)["claimed"] == 0


def test_a_web_device_is_not_a_jpush_device(push_app):
    provider = JPushProvider("k", "s", "http://127.0.0.1:1")
    try:
        ((_, result),) = provider.send([PushMessage(1, "t", "web", "t", "b")])
    finally:
        provider.close()
    assert (result.outcome, result.error) == ("failed", "JPush does not deliver to web browsers")


# --- routing: both providers in one pass -------------------------------------------------------------


@pytest.fixture
def two_phones(push_app):
    """One user with an Android phone on FCM and a phone in mainland China on JPush."""
    user = make_user(push_app)
    make_device(push_app, user.id, "pixel-fcm-token", provider="fcm")
    make_device(push_app, user.id, "xiaomi-reg-id", provider="jpush")
    return user


def test_one_user_gets_each_notification_on_both_phones(push_app, jp, fcm, two_phones):
    for n in range(3):
        claim_wish(push_app, two_phones.id, claim_id=n)
    counts = dispatch(push_app)
    assert (counts["claimed"], counts["sent"], counts["pushes"]) == (3, 3, 6)
    ids = {str(row.id) for row in outbox_rows(push_app)}
    assert {m["data"]["notification_id"] for m in fcm.messages_to("pixel-fcm-token")} == ids
    assert {p["notification"]["android"]["extras"]["notification_id"] for p in jp.pushes_to("xiaomi-reg-id")} == ids
    assert deliveries(push_app) == []  # settled rows keep no per-device answers


@pytest.mark.parametrize("down", ["fcm", "jpush"])
def test_one_providers_outage_holds_up_only_its_own_devices(push_app, jp, fcm, two_phones, down):
    claim_wish(push_app, two_phones.id)
    if down == "fcm":
        fcm.script("pixel-fcm-token", "UNAVAILABLE")
    else:
        jp.fail_all = "INTERNAL"

    counts = dispatch(push_app)

    # the other provider's phone has it now; the row waits for the one that is down
    assert counts["retried"] == 1
    up_received = fcm.messages_to("pixel-fcm-token") if down == "jpush" else jp.pushes_to("xiaomi-reg-id")
    down_received = jp.pushes_to("xiaomi-reg-id") if down == "jpush" else fcm.messages_to("pixel-fcm-token")
    assert (len(up_received), len(down_received)) == (1, 0)
    (row,) = outbox_rows(push_app)
    assert (row.push_status, row.sent_at) == ("pending", NOW)
    up = "jpush" if down == "fcm" else "fcm"
    assert deliveries(push_app) == [(up, "sent")]

    # the provider comes back: its phone gets it, the other one not a second time
    fcm.reset()
    jp.fail_all = None
    jp.pushes.clear()
    clock.freeze(row.next_attempt_at)
    assert dispatch(push_app)["sent"] == 1
    now_up = fcm.messages_to("pixel-fcm-token") if down == "fcm" else jp.pushes_to("xiaomi-reg-id")
    again = jp.pushes_to("xiaomi-reg-id") if down == "fcm" else fcm.messages_to("pixel-fcm-token")
    assert (len(now_up), len(again)) == (1, 0)
    (row,) = outbox_rows(push_app)
    assert (row.push_status, row.sent_at, row.push_attempts) == ("sent", NOW, 2)
    assert deliveries(push_app) == []


def test_a_device_of_a_provider_not_enabled_waits_and_is_logged(push_app, fcm, caplog):
    push_app.config["PUSH_BACKEND"] = "fcm"
    user = make_user(push_app)
    make_device(push_app, user.id, "pixel", provider="fcm")
    make_device(push_app, user.id, "reg", provider="jpush")
    claim_wish(push_app, user.id)
    with caplog.at_level(logging.INFO, logger="notifications.dispatch"):
        counts = dispatch(push_app)
    assert counts["retried"] == 1
    assert len(fcm.messages_to("pixel")) == 1
    assert outbox_rows(push_app)[0].last_error == "no push provider enabled for jpush devices (PUSH_BACKEND)"
    # the dispatcher's line per provider: FCM's all-sent one is DEBUG, the other says why
    assert [r.getMessage() for r in caplog.records if getattr(r, "provider", None) == "jpush"] == [
        "push provider=jpush misconfigured=1"
    ]


# --- devices say their provider -------------------------------------------------------------------------


def test_a_phone_registers_its_jpush_registration_id(app, client):
    user = make_user(app)
    resp = client.post(
        "/api/v1/me/devices",
        json={"token": "1a0018970a3f2b4c1e2", "platform": "android", "provider": "jpush"},
        headers=user.headers,
    )
    assert resp.status_code == 201
    assert resp.get_json()["provider"] == "jpush"
    resp = client.post("/api/v1/me/devices", json={"token": "fcm-tok", "platform": "ios"}, headers=user.headers)
    assert (resp.status_code, resp.get_json()["provider"]) == (201, "fcm")  # the default
    resp = client.post(
        "/api/v1/me/devices",
        json={"token": "x", "platform": "android", "provider": "pigeon"},
        headers=user.headers,
    )
    assert resp.status_code == 422
    assert "provider" in resp.get_json()["errors"]["json"]
    with app.app_context():
        stored = dict(db.session.execute(sa.select(Device.token, Device.provider)).all())
    assert stored == {"1a0018970a3f2b4c1e2": "jpush", "fcm-tok": "fcm"}


def test_the_fake_checks_auth_and_the_body_like_jpush(jp):
    assert (
        validate_push({"platform": "all", "audience": {"registration_id": ["r"]}, "notification": {"alert": "a"}})
        is None
    )
    assert validate_push({"platform": ["pc"], "audience": {"registration_id": ["r"]}, "notification": {}}) == (
        "platform is invalid"
    )
    assert "registration" in validate_push({"platform": "all", "audience": "all", "notification": {"alert": "a"}})
    extras = {"android": {"alert": "a", "extras": {"posting_id": 42}}}
    body = {"platform": "all", "audience": {"registration_id": ["r"]}, "notification": extras}
    assert validate_push(body) == "notification.android.extras must map names to strings"


def test_a_new_provider_is_one_registered_class(app, client, monkeypatch):
    """The registry is all the dispatcher, the device schema and the checks know:
    a provider declared in one class reaches its devices (here: Huawei Push Kit)."""
    from notifications import senders
    from notifications.senders import PushProvider, PushResult, providers

    monkeypatch.setattr(providers, "by_name", dict(providers.by_name))
    delivered = []

    @providers.register("hms")
    class HuaweiPushKit(PushProvider):
        serves = ("hms",)
        device_provider = True

        def send(self, messages):
            for i, message in enumerate(messages):
                delivered.append(message.token)
                yield i, PushResult("sent")

    router = senders.Router({"PUSH_BACKEND": "hms"})
    user = make_user(app)
    make_device(app, user.id, "hms-token", provider="hms")
    claim_wish(app, user.id)
    with app.app_context():
        counts = dispatch_pending(router=router)
    assert (counts["sent"], delivered) == (1, ["hms-token"])
    assert "hms" in senders.device_providers()
    assert senders.doctor_problems({"PUSH_BACKEND": "hms"}) is None
