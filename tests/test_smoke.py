def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}
    assert resp.headers["X-Request-ID"]


def test_register_login_me(client):
    resp = client.post(
        "/api/v1/auth/register", json={"phone": "13812345678", "password": "secret-pass", "display_name": "小王"}
    )
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["user"]["phone_masked"] == "138****5678"
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["roles"] == ["user"]


def test_notify_dedupes(app):
    from app.extensions import db
    from app.models import Notification
    from notifications import notify
    from tests.factories import make_user

    user = make_user(app)
    with app.app_context():
        assert notify([user.id], "wish_claimed", dedupe="claim:1", title="修水管", volunteer="小陈", posting_id=3) == 1
        assert notify([user.id], "wish_claimed", dedupe="claim:1", title="修水管", volunteer="小陈", posting_id=3) == 0
        db.session.commit()
        row = db.session.scalars(db.select(Notification)).one()
        assert row.data == {"kind": "wish_claimed", "posting_id": "3"}
        assert "修水管" in row.body
