"""The orgs an admin and a coordinator work with: the list (and the queue of
applications), rejecting an application, the members, who sees an org, and
the notifications of an application's life (org_submitted, org_approved,
org_rejected)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import AuditEntry, Notification, Org, OrgMember, User
from tests.factories import ROLES, add_member, make_org, make_roles, make_user, set_locale
from tests.helpers import assert_error

ORGS = "/api/v1/orgs"


def apply(client, account, name="江北区邻里互助会", district="jiangbei"):
    resp = client.post(ORGS, headers=account.headers, json={"name": name, "kind": "ngo", "district": district})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def notifications(app, kind: str) -> list[Notification]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Notification).where(Notification.kind == kind).order_by(Notification.id))
        rows = list(rows)
        db.session.expunge_all()
        return rows


def ids(resp) -> list[int]:
    assert resp.status_code == 200, resp.get_json()
    return [item["id"] for item in resp.get_json()["items"]]


@pytest.fixture
def roles(app):
    return make_roles(app)


# --- the list -------------------------------------------------------------------------


def test_anyone_lists_approved_orgs_oldest_first(app, client, roles):
    applicant = make_user(app)
    pending = apply(client, applicant)
    expected = [roles["org_id"], roles["other_org_id"], roles["far_org_id"]]
    for role in ROLES:
        listed = ids(client.get(ORGS, headers=roles["headers"][role]))
        if role == "admin":
            assert listed == [*expected, pending]
        else:
            assert listed == expected, role
    # the applicant sees their own application too (they are its member)
    assert ids(client.get(ORGS, headers=applicant.headers)) == [*expected, pending]
    item = client.get(ORGS).get_json()["items"][0]
    assert {"id", "name", "kind", "district", "status", "member_count"} <= set(item)
    assert item["role"] is None


def test_admins_see_the_queue_of_applications(app, client, roles):
    first = apply(client, make_user(app), name="申请一")
    second = apply(client, make_user(app), name="申请二", district="haishu")
    admin = roles["headers"]["admin"]
    assert ids(client.get(f"{ORGS}?status=pending", headers=admin)) == [first, second]
    assert ids(client.get(f"{ORGS}?status=pending&district=haishu", headers=admin)) == [second]
    for role in ("coordinator", "volunteer", "anonymous"):
        assert ids(client.get(f"{ORGS}?status=pending", headers=roles["headers"][role])) == [], role


def test_district_filter_and_pages(app, client, roles):
    more = [make_org(app, district="haishu")[0] for _ in range(3)]
    haishu = [roles["org_id"], roles["other_org_id"], *more]
    seen, cursor = [], None
    while True:
        resp = client.get(f"{ORGS}?district=haishu&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        seen += ids(resp)
        cursor = resp.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == haishu


def test_mine_lists_my_orgs_with_my_role_whatever_their_status(app, client, roles):
    coordinator = roles["coordinator"]
    pending = apply(client, coordinator)
    add_member(app, roles["far_org_id"], coordinator)
    resp = client.get(f"{ORGS}?mine=true", headers=coordinator.headers)
    items = resp.get_json()["items"]
    assert [(i["id"], i["role"], i["status"]) for i in items] == [
        (roles["org_id"], "coordinator", "approved"),
        (roles["far_org_id"], "member", "approved"),
        (pending, "coordinator", "pending"),
    ]
    member = client.get(f"{ORGS}?mine=true", headers=roles["volunteer"].headers).get_json()["items"]
    assert [(i["id"], i["role"]) for i in member] == [(roles["org_id"], "member")]
    assert client.get(f"{ORGS}?mine=true", headers=roles["admin"].headers).get_json()["items"] == []
    assert_error(client.get(f"{ORGS}?mine=true"), 401, "authorization_required")


@pytest.mark.parametrize(
    "query", ["status=closed", "district=pudong", "mine=perhaps", "limit=0", "limit=101", "cursor=!!"]
)
def test_list_query_errors(client, query):
    resp = client.get(f"{ORGS}?{query}")
    # a cursor the list did not give out is 400 invalid_cursor, the rest 422
    expected = (400, "invalid_cursor") if query.startswith("cursor") else (422, "validation_error")
    assert (resp.status_code, resp.get_json()["error"]) == expected, resp.get_json()


# --- one org ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_an_approved_org_is_public(client, roles, role):
    resp = client.get(f"{ORGS}/{roles['org_id']}", headers=roles["headers"][role])
    assert resp.status_code == 200
    assert resp.get_json()["id"] == roles["org_id"] and resp.get_json()["status"] == "approved"


@pytest.mark.parametrize("status", ["pending", "rejected"])
def test_an_application_is_seen_by_admins_and_its_members(app, client, roles, status):
    org_id, applicant = make_org(app, status=status)
    member = make_user(app)
    add_member(app, org_id, member)
    allowed = {"admin": roles["admin"], "applicant": applicant, "member": member}
    for name, account in allowed.items():
        resp = client.get(f"{ORGS}/{org_id}", headers=account.headers)
        assert resp.status_code == 200, name
        assert resp.get_json()["status"] == status
    for role in ("coordinator", "other_coordinator", "far_coordinator", "volunteer", "anonymous"):
        assert_error(client.get(f"{ORGS}/{org_id}", headers=roles["headers"][role]), 404, "not_found")
    assert_error(client.get(f"{ORGS}/2000000000"), 404, "not_found")


# --- reject ----------------------------------------------------------------------------------


def test_admin_rejects_with_a_reason_the_applicant_is_told(app, client, roles):
    applicant = make_user(app)
    org_id = apply(client, applicant)
    resp = client.post(
        f"{ORGS}/{org_id}/reject", headers=roles["admin"].headers, json={"reason": "  材料不全，请补充章程 "}
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert (body["id"], body["status"], body["reject_reason"]) == (org_id, "rejected", "材料不全，请补充章程")
    with app.app_context():
        org = db.session.get(Org, org_id)
        assert (org.status, org.reviewed_by, org.reject_reason) == (
            "rejected",
            roles["admin"].id,
            "材料不全，请补充章程",
        )
        assert org.reviewed_at is not None
        entry = db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "org.reject")).one()
        assert (entry.actor_id, entry.target_id, entry.data) == (
            roles["admin"].id,
            org_id,
            {"reason": "材料不全，请补充章程"},
        )
    [told] = notifications(app, "org_rejected")
    assert told.user_id == applicant.id
    assert told.data == {"kind": "org_rejected", "org_id": str(org_id)}
    assert (told.title, told.body) == ("组织申请未通过", "「江北区邻里互助会」未通过审核：材料不全，请补充章程")
    # the applicant has no coordinator powers, and may read why
    mine = client.get(f"{ORGS}/{org_id}", headers=applicant.headers).get_json()
    assert mine["reject_reason"] == "材料不全，请补充章程"
    me = client.get("/api/v1/me", headers=applicant.headers).get_json()
    assert "coordinator" not in me["roles"]
    set_locale(client, applicant, "en")
    english = client.get("/api/v1/me/notifications", headers=applicant.headers).get_json()["items"][0]
    assert english["title"] == "Organisation not approved"
    assert english["body"] == "“江北区邻里互助会” was not approved: 材料不全，请补充章程"


@pytest.mark.parametrize("role", ROLES)
def test_who_may_reject(app, client, roles, role):
    # the org's own coordinator here is its applicant (an application has no powers)
    org_id, applicant = make_org(app, roles["coordinator"], name="待审组织", status="pending")
    resp = client.post(f"{ORGS}/{org_id}/reject", headers=roles["headers"][role], json={"reason": "不符合条件"})
    if role == "admin":
        assert resp.status_code == 200 and resp.get_json()["status"] == "rejected"
        return
    if role == "anonymous":
        assert_error(resp, 401, "authorization_required")
    else:
        assert_error(resp, 403, "admin_required")
    with app.app_context():
        assert db.session.get(Org, org_id).status == "pending"
    assert notifications(app, "org_rejected") == []


def test_only_a_pending_org_is_rejected(app, client, roles):
    admin = roles["admin"].headers
    org_id = apply(client, make_user(app))
    assert client.post(f"{ORGS}/{org_id}/approve", headers=admin).status_code == 200
    assert_error(client.post(f"{ORGS}/{org_id}/reject", headers=admin, json={"reason": "晚了"}), 409, "org_not_pending")
    assert_error(
        client.post(f"{ORGS}/{roles['org_id']}/reject", headers=admin, json={"reason": "x"}), 409, "org_not_pending"
    )
    assert_error(client.post(f"{ORGS}/2000000000/reject", headers=admin, json={"reason": "x"}), 404, "not_found")
    with app.app_context():
        assert db.session.get(Org, org_id).status == "approved"
    assert notifications(app, "org_rejected") == []


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "长" * 501}, {"reason": 5}])
def test_reject_needs_a_reason(app, client, roles, body):
    org_id = apply(client, make_user(app))
    resp = client.post(f"{ORGS}/{org_id}/reject", headers=roles["admin"].headers, json=body)
    data = assert_error(resp, 422, "validation_error")
    assert "reason" in data["errors"]["json"]
    with app.app_context():
        assert db.session.get(Org, org_id).status == "pending"


# --- notifications of an application ----------------------------------------------------------


def test_every_admin_is_told_of_a_new_application(app, client):
    admins = [make_user(app, admin=True) for _ in range(2)]
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == admins[1].id).values(locale="en"))
        db.session.commit()
    make_org(app)  # a coordinator elsewhere is not told
    org_id = apply(client, make_user(app))
    told = notifications(app, "org_submitted")
    assert sorted(n.user_id for n in told) == sorted(a.id for a in admins)
    by_user = {n.user_id: n for n in told}
    assert by_user[admins[0].id].data == {"kind": "org_submitted", "org_id": str(org_id)}
    assert (by_user[admins[0].id].title, by_user[admins[0].id].body) == (
        "新的组织申请",
        "「江北区邻里互助会」申请成为志愿组织，请审核。",
    )
    assert (by_user[admins[1].id].title, by_user[admins[1].id].body) == (
        "New organisation application",
        "“江北区邻里互助会” applied to become an organisation; please review it.",
    )


def test_an_admin_applying_is_not_told_of_their_own_application(app, client):
    admin, other = make_user(app, admin=True), make_user(app, admin=True)
    apply(client, admin)
    assert [n.user_id for n in notifications(app, "org_submitted")] == [other.id]


def test_the_applicant_is_told_of_the_approval(app, client, roles):
    applicant = make_user(app)
    org_id = apply(client, applicant)
    assert client.post(f"{ORGS}/{org_id}/approve", headers=roles["admin"].headers).status_code == 200
    [told] = notifications(app, "org_approved")
    assert told.user_id == applicant.id
    assert told.data == {"kind": "org_approved", "org_id": str(org_id)}
    assert told.title == "组织申请已通过"
    assert told.body == "「江北区邻里互助会」已通过审核，您现在可以以协调员身份发布和管理活动。"
    set_locale(client, applicant, "en")
    english = client.get("/api/v1/me/notifications", headers=applicant.headers).get_json()["items"][0]
    assert (english["title"], english["body"]) == (
        "Organisation approved",
        "“江北区邻里互助会” was approved; you can now post and manage as its coordinator.",
    )
    with app.app_context():
        org = db.session.get(Org, org_id)
        assert (org.reviewed_by, org.reject_reason) == (roles["admin"].id, None)
        assert db.session.scalar(sa.select(AuditEntry.target_id).where(AuditEntry.action == "org.approve")) == org_id


# --- members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_who_lists_the_members(app, client, roles, role):
    resp = client.get(f"{ORGS}/{roles['org_id']}/members", headers=roles["headers"][role])
    if role in ("coordinator", "admin"):
        assert resp.status_code == 200, resp.get_json()
        items = resp.get_json()["items"]
        assert [(i["user"]["id"], i["role"]) for i in items] == [
            (roles["coordinator"].id, "coordinator"),
            (roles["volunteer"].id, "member"),
        ]
        assert set(items[0]) == {"user", "role", "joined_at"}
        assert set(items[0]["user"]) == {"id", "display_name"}
        assert items[0]["joined_at"].endswith("Z")
    elif role == "anonymous":
        assert_error(resp, 401, "authorization_required")
    else:
        assert_error(resp, 403, "coordinator_required")


def test_members_page_with_a_cursor(app, client, roles):
    for _ in range(4):
        add_member(app, roles["org_id"], make_user(app))
    with app.app_context():
        expected = db.session.scalars(
            sa.select(OrgMember.user_id).where(OrgMember.org_id == roles["org_id"]).order_by(OrgMember.id)
        ).all()
    seen, cursor = [], None
    while True:
        url = f"{ORGS}/{roles['org_id']}/members?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=roles["admin"].headers).get_json()
        seen += [item["user"]["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and len(seen) == 6


def test_members_of_a_missing_org_is_404(client, roles):
    assert_error(client.get(f"{ORGS}/2000000000/members", headers=roles["admin"].headers), 404, "not_found")


def test_responses_match_the_openapi_document(app, client, roles):
    from openapi_schema_validator import OAS30Validator

    spec = client.get("/api/v1/openapi.json").get_json()

    def conforms(name: str, instance) -> None:
        OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]}).validate(instance)

    applicant = make_user(app)
    org_id = apply(client, applicant)
    client.post(f"{ORGS}/{org_id}/reject", headers=roles["admin"].headers, json={"reason": "材料不全"})
    conforms("OrgPage", client.get(ORGS, headers=roles["admin"].headers).get_json())
    conforms("OrgPage", client.get(f"{ORGS}?mine=true", headers=applicant.headers).get_json())
    conforms("Org", client.get(f"{ORGS}/{org_id}", headers=applicant.headers).get_json())
    members = client.get(f"{ORGS}/{roles['org_id']}/members", headers=roles["admin"].headers).get_json()
    conforms("OrgMemberPage", members)
    stats = client.get(f"{ORGS}/{roles['org_id']}/stats?interval=week", headers=roles["admin"].headers).get_json()
    conforms("OrgStats", stats)
    unread = client.get("/api/v1/me/notifications/unread-count", headers=applicant.headers).get_json()
    conforms("Unread", unread)
    assert unread == {"unread": 1}  # org_rejected
