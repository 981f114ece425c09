"""Notifications API: devices, the inbox, mark read, notification settings."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Device, Notification, User
from app.outbox import notify
from tests.factories import make_user, set_locale

TOKEN = "fcm-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:APA91bH"


def _devices(app, user_id=None) -> list[tuple[int, str, str, str | None]]:
    with app.app_context():
        stmt = sa.select(Device.user_id, Device.token, Device.platform, Device.app_version).order_by(Device.id)
        if user_id is not None:
            stmt = stmt.where(Device.user_id == user_id)
        return [tuple(row) for row in db.session.execute(stmt)]


def _notify(app, user_id, n, kind="claim_confirmed", **context) -> None:
    with app.app_context():
        for i in range(n):
            notify([user_id], kind, dedupe=f"test:{i}", title=f"心愿{i}", posting_id=100 + i, **context)
        db.session.commit()


# --- devices -------------------------------------------------------------------------------


def test_register_device(client, app):
    user = make_user(app)
    resp = client.post(
        "/api/v1/me/devices", json={"token": TOKEN, "platform": "android", "app_version": "2.3.1"}, headers=user.headers
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["token"] == TOKEN
    assert body["platform"] == "android"
    assert body["app_version"] == "2.3.1"
    assert body["last_seen_at"].endswith("Z")
    assert _devices(app) == [(user.id, TOKEN, "android", "2.3.1")]


def test_registering_again_updates_and_another_user_takes_the_token_over(client, app):
    first, second = make_user(app), make_user(app)
    assert (
        client.post("/api/v1/me/devices", json={"token": TOKEN, "platform": "ios"}, headers=first.headers).status_code
        == 201
    )
    resp = client.post(
        "/api/v1/me/devices", json={"token": TOKEN, "platform": "ios", "app_version": "2.4"}, headers=first.headers
    )
    assert resp.status_code == 201
    assert _devices(app) == [(first.id, TOKEN, "ios", "2.4")]

    resp = client.post("/api/v1/me/devices", json={"token": TOKEN, "platform": "ios"}, headers=second.headers)
    assert resp.status_code == 201
    assert _devices(app) == [(second.id, TOKEN, "ios", None)]


def test_a_user_keeps_at_most_ten_devices(client, app):
    from notifications.devices import MAX_DEVICES_PER_USER

    user = make_user(app)
    for i in range(MAX_DEVICES_PER_USER + 2):
        resp = client.post("/api/v1/me/devices", json={"token": f"tok-{i}", "platform": "web"}, headers=user.headers)
        assert resp.status_code == 201
    tokens = {token for _, token, _, _ in _devices(app, user.id)}
    assert len(tokens) == MAX_DEVICES_PER_USER
    assert "tok-11" in tokens


def test_device_validation(client, app):
    user = make_user(app)
    cases = [
        {"token": TOKEN, "platform": "symbian"},
        {"platform": "android"},
        {"token": "", "platform": "android"},
        {"token": "has space", "platform": "android"},
        {"token": TOKEN, "platform": "android", "colour": "red"},
    ]
    for body in cases:
        resp = client.post("/api/v1/me/devices", json=body, headers=user.headers)
        assert resp.status_code == 422, body
        assert resp.get_json()["error"] == "validation_error"
    assert client.post("/api/v1/me/devices", json={"token": TOKEN, "platform": "ios"}).status_code == 401
    assert _devices(app) == []


def test_unregister_device(client, app):
    owner, stranger = make_user(app), make_user(app)
    client.post("/api/v1/me/devices", json={"token": TOKEN, "platform": "android"}, headers=owner.headers)

    resp = client.delete(f"/api/v1/me/devices/{TOKEN}", headers=stranger.headers)
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"
    assert len(_devices(app)) == 1

    resp = client.delete(f"/api/v1/me/devices/{TOKEN}", headers=owner.headers)
    assert resp.status_code == 204
    assert resp.data == b""
    assert _devices(app) == []
    assert client.delete(f"/api/v1/me/devices/{TOKEN}", headers=owner.headers).status_code == 404


# --- inbox ---------------------------------------------------------------------------------


def test_inbox_lists_my_notifications_newest_first(client, app):
    me, other = make_user(app), make_user(app)
    _notify(app, me.id, 3)
    _notify(app, other.id, 2)
    resp = client.get("/api/v1/me/notifications", headers=me.headers)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["next_cursor"] is None
    assert [item["title"] for item in body["items"]] == ["服务已确认"] * 3
    assert [item["body"] for item in body["items"]] == [f"「心愿{i}」已确认完成，感谢您的付出！" for i in (2, 1, 0)]
    first = body["items"][0]
    assert set(first) == {"id", "kind", "title", "body", "data", "created_at", "read_at"}
    assert first["kind"] == "claim_confirmed"
    assert first["data"] == {"kind": "claim_confirmed", "posting_id": "102", "notification_id": str(first["id"])}
    assert first["created_at"].endswith("Z")
    assert first["read_at"] is None


def test_inbox_pages_with_a_cursor(client, app):
    me = make_user(app)
    _notify(app, me.id, 5)
    seen = []
    cursor = None
    for _ in range(3):
        url = "/api/v1/me/notifications?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=me.headers).get_json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
    assert cursor is None
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)
    bad = client.get("/api/v1/me/notifications?cursor=not-a-cursor", headers=me.headers)
    assert (bad.status_code, bad.get_json()["error"]) == (400, "invalid_cursor")


def test_unread_filter_and_mark_read(client, app):
    me, other = make_user(app), make_user(app)
    _notify(app, me.id, 4)
    _notify(app, other.id, 1)
    ids = [item["id"] for item in client.get("/api/v1/me/notifications", headers=me.headers).get_json()["items"]]
    other_id = client.get("/api/v1/me/notifications", headers=other.headers).get_json()["items"][0]["id"]

    resp = client.post("/api/v1/me/notifications/read", json={"ids": [ids[0], ids[1], other_id]}, headers=me.headers)
    assert resp.status_code == 200
    assert resp.get_json() == {"unread": 2}
    unread = client.get("/api/v1/me/notifications?unread=true", headers=me.headers).get_json()["items"]
    assert [item["id"] for item in unread] == ids[2:]
    read = client.get("/api/v1/me/notifications", headers=me.headers).get_json()["items"][0]
    assert read["read_at"].endswith("Z")
    # another user's notification was not touched
    assert client.get("/api/v1/me/notifications?unread=true", headers=other.headers).get_json()["items"][0]["id"] == (
        other_id
    )

    resp = client.post("/api/v1/me/notifications/read", json={}, headers=me.headers)
    assert resp.get_json() == {"unread": 0}
    assert client.get("/api/v1/me/notifications?unread=true", headers=me.headers).get_json()["items"] == []
    assert client.post("/api/v1/me/notifications/read", json={"ids": ["x"]}, headers=me.headers).status_code == 422


def test_inbox_speaks_the_readers_language(client, app):
    """The inbox is shown in the user's language, whatever the phone's Accept-Language;
    switching the language shows the old notifications in the new one."""
    me = make_user(app)
    with app.app_context():
        notify([me.id], "wish_claimed", dedupe="claim:1", title="修水管", volunteer="小陈", posting_id=3, claim_id=1)
        db.session.commit()
    stored = client.get("/api/v1/me/notifications", headers={**me.headers, "Accept-Language": "en"}).get_json()
    assert (stored["items"][0]["title"], stored["items"][0]["body"]) == ("心愿被认领啦", "小陈认领了您的「修水管」。")
    set_locale(client, me, "en")
    english = client.get("/api/v1/me/notifications", headers={**me.headers, "Accept-Language": "zh-CN"}).get_json()[
        "items"
    ][0]
    assert (english["title"], english["body"]) == ("Your wish was claimed", "小陈 claimed “修水管”.")
    assert english["data"] == stored["items"][0]["data"]
    set_locale(client, me, "zh-CN")
    chinese = client.get("/api/v1/me/notifications", headers=me.headers).get_json()
    assert chinese["items"][0]["title"] == "心愿被认领啦"
    # reading in English did not rewrite the stored row
    with app.app_context():
        assert db.session.scalars(sa.select(Notification.title)).one() == "心愿被认领啦"


def test_inbox_needs_a_token(client):
    assert client.get("/api/v1/me/notifications").status_code == 401
    assert client.post("/api/v1/me/notifications/read", json={}).status_code == 401


# --- settings ------------------------------------------------------------------------------


def test_notification_settings_defaults_and_update(client, app):
    me = make_user(app)
    resp = client.get("/api/v1/me/notification-settings", headers=me.headers)
    assert resp.status_code == 200
    assert resp.get_json() == {"muted_kinds": [], "quiet_hours": None, "nearby_alerts": True}

    new = {
        "muted_kinds": ["nearby_posting", "posting_expiring"],
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "nearby_alerts": False,
    }
    resp = client.put("/api/v1/me/notification-settings", json=new, headers=me.headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == new
    assert client.get("/api/v1/me/notification-settings", headers=me.headers).get_json() == new
    with app.app_context():
        user = db.session.get(User, me.id)
        assert (user.quiet_start, user.quiet_end, user.nearby_alerts) == ("22:00", "07:00", False)
    # the profile shows the same quiet hours
    assert client.get("/api/v1/me", headers=me.headers).get_json()["quiet_hours"] == {"start": "22:00", "end": "07:00"}

    # fields left out stay; null turns quiet hours off
    resp = client.put("/api/v1/me/notification-settings", json={"quiet_hours": None}, headers=me.headers)
    assert resp.get_json() == {**new, "quiet_hours": None}


def test_quiet_hours_set_through_patch_me_show_in_settings(client, app):
    me = make_user(app)
    client.patch("/api/v1/me", json={"quiet_hours": {"start": "23:00", "end": "06:30"}}, headers=me.headers)
    body = client.get("/api/v1/me/notification-settings", headers=me.headers).get_json()
    assert body["quiet_hours"] == {"start": "23:00", "end": "06:30"}


def test_quiet_hours_from_a_time_to_itself_are_refused_wherever_they_are_set(client, app):
    """One rule for both ways of setting quiet hours: nothing is changed."""
    me = make_user(app)
    same = {"quiet_hours": {"start": "22:00", "end": "22:00"}}
    answers = []
    for method, url in (("patch", "/api/v1/me"), ("put", "/api/v1/me/notification-settings")):
        resp = getattr(client, method)(url, json=same, headers=me.headers)
        assert resp.status_code == 422, (url, resp.get_json())
        answers.append(resp.get_json()["errors"]["json"]["quiet_hours"])
    assert answers[0] == answers[1] == ["开始和结束时间不能相同。"]
    assert client.get("/api/v1/me", headers=me.headers).get_json()["quiet_hours"] is None


def test_notification_settings_validation(client, app):
    me = make_user(app)
    bad = [
        {"muted_kinds": ["wish_teleported"]},
        {"quiet_hours": {"start": "24:00", "end": "07:00"}},
        {"quiet_hours": {"start": "7:00", "end": "08:00"}},
        {"quiet_hours": {"start": "22:00"}},
        {"quiet_hours": {"start": "22:00", "end": "22:00"}},
        {"nearby_alerts": "sometimes"},
        {"push": True},
    ]
    for body in bad:
        resp = client.put("/api/v1/me/notification-settings", json=body, headers=me.headers)
        assert resp.status_code == 422, body
        assert resp.get_json()["error"] == "validation_error"
    assert client.get("/api/v1/me/notification-settings", headers=me.headers).get_json()["muted_kinds"] == []


def test_openapi_describes_the_notification_routes(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert {"post"} <= set(paths["/api/v1/me/devices"])
    assert "delete" in paths["/api/v1/me/devices/{token}"]
    assert "get" in paths["/api/v1/me/notifications"]
    assert "post" in paths["/api/v1/me/notifications/read"]
    assert {"get", "put"} <= set(paths["/api/v1/me/notification-settings"])
    schemas = spec["components"]["schemas"]
    assert {"Notification", "NotificationSettings", "Device", "DeviceCreate"} <= set(schemas)
