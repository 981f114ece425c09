"""Notifications of the claims a coordinator runs (claim_withdrawn, claim_no_show)
and the app's badge (GET /me/notifications/unread-count)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Notification, User
from app.outbox import notify
from tests.factories import make_claim, make_org, make_posting, make_user, make_volunteer, set_locale
from tests.moments import YEAR

NOW = datetime(YEAR, 5, 4, 2, 0, tzinfo=UTC)


def told(app, kind: str) -> list[Notification]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Notification).where(Notification.kind == kind)))
        db.session.expunge_all()
        return rows


def inbox_in(client, account, language: str) -> dict:
    """The newest notification, read after the account switched to ``language``."""
    set_locale(client, account, language)
    return client.get("/api/v1/me/notifications", headers=account.headers).get_json()["items"][0]


def named(app, account, name: str) -> None:
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == account.id).values(display_name=name))
        db.session.commit()


@pytest.fixture
def setting(app):
    clock.freeze(NOW)
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    named(app, volunteer, "小陈")
    return {"org_id": org_id, "coordinator": coordinator, "volunteer": volunteer}


# --- claim_withdrawn -------------------------------------------------------------------------------


def test_the_poster_of_a_wish_is_told_when_its_volunteer_withdraws(app, client, setting):
    resident = make_user(app)
    wish = make_posting(app, resident, title="帮王奶奶买菜")
    claim = make_claim(app, wish, setting["volunteer"])
    resp = client.post(f"/api/v1/claims/{claim}/withdraw", headers=setting["volunteer"].headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "withdrawn"
    [row] = told(app, "claim_withdrawn")
    assert row.user_id == resident.id
    assert row.data == {"kind": "claim_withdrawn", "posting_id": str(wish), "claim_id": str(claim)}
    assert (row.title, row.body) == ("志愿者取消了认领", "小陈取消了对「帮王奶奶买菜」的认领。")
    english = inbox_in(client, resident, "en")
    assert (english["title"], english["body"]) == ("A volunteer withdrew", "小陈 withdrew from “帮王奶奶买菜”.")
    assert english["data"] == {**row.data, "notification_id": str(row.id)}


def test_the_coordinator_who_posted_a_project_is_told_of_a_waitlisted_withdrawal(app, client, setting):
    project = make_posting(
        app, setting["coordinator"], kind="project", org_id=setting["org_id"], capacity=1, title="周末环境整治"
    )
    make_claim(app, project, make_volunteer(app))
    waiting = make_claim(app, project, setting["volunteer"], status="waitlisted")
    assert client.post(f"/api/v1/claims/{waiting}/withdraw", headers=setting["volunteer"].headers).status_code == 200
    [row] = told(app, "claim_withdrawn")
    assert (row.user_id, row.data["claim_id"], row.data["posting_id"]) == (
        setting["coordinator"].id,
        str(waiting),
        str(project),
    )


def test_a_refused_withdrawal_tells_nobody(app, client, setting):
    wish = make_posting(app, make_user(app))
    claim = make_claim(app, wish, setting["volunteer"], status="fulfilled")
    resp = client.post(f"/api/v1/claims/{claim}/withdraw", headers=setting["volunteer"].headers)
    assert (resp.status_code, resp.get_json()["error"]) == (409, "claim_not_active")
    assert told(app, "claim_withdrawn") == []


# --- claim_no_show ------------------------------------------------------------------------------------


def test_a_volunteer_marked_absent_is_told(app, client, setting):
    start = NOW - timedelta(hours=5)
    project = make_posting(
        app,
        setting["coordinator"],
        kind="project",
        org_id=setting["org_id"],
        title="爱心义剪",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    claim = make_claim(app, project, setting["volunteer"])
    resp = client.post(f"/api/v1/claims/{claim}/no-show", headers=setting["coordinator"].headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "no_show"
    [row] = told(app, "claim_no_show")
    assert row.user_id == setting["volunteer"].id
    assert row.data == {"kind": "claim_no_show", "posting_id": str(project), "claim_id": str(claim)}
    assert (row.title, row.body) == ("活动缺席", "您报名的「爱心义剪」已结束，您未签到，记为缺席。")
    english = inbox_in(client, setting["volunteer"], "en")
    assert (english["title"], english["body"]) == (
        "Marked absent",
        "“爱心义剪” has ended and you did not check in; you were marked absent.",
    )


# --- the badge ----------------------------------------------------------------------------------------


def test_unread_count_is_the_callers_own(app, client, setting):
    me, other = setting["volunteer"], make_user(app)
    with app.app_context():
        for i in range(3):
            notify([me.id], "posting_expired", dedupe=f"posting:{i}", title="T", posting_id=i)
        notify([other.id], "posting_expired", dedupe="posting:9", title="T", posting_id=9)
        db.session.commit()
    url = "/api/v1/me/notifications/unread-count"
    resp = client.get(url, headers=me.headers)
    assert resp.status_code == 200 and resp.get_json() == {"unread": 3}
    newest = client.get("/api/v1/me/notifications", headers=me.headers).get_json()["items"][0]["id"]
    assert client.post("/api/v1/me/notifications/read", json={"ids": [newest]}, headers=me.headers).get_json() == {
        "unread": 2
    }
    assert client.get(url, headers=me.headers).get_json() == {"unread": 2}
    assert client.post("/api/v1/me/notifications/read", json={}, headers=me.headers).get_json() == {"unread": 0}
    assert client.get(url, headers=me.headers).get_json() == {"unread": 0}
    assert client.get(url, headers=other.headers).get_json() == {"unread": 1}
    resp = client.get(url)
    assert (resp.status_code, resp.get_json()["error"]) == (401, "authorization_required")


def test_unread_count_is_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    op = spec["paths"]["/api/v1/me/notifications/unread-count"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Unread"}
    assert {"bearerAuth": []} in op["security"]
