"""Organisations (志愿组织): apply, approve, members."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Org, OrgMember
from tests.factories import add_member, make_org, make_user
from tests.helpers import assert_error

ORGS = "/api/v1/orgs"
ORG_KEYS = {"id", "name", "kind", "district", "status", "member_count"}


def apply(client, account, name="鼓楼街道志愿服务站", kind="community", district="haishu"):
    return client.post(ORGS, headers=account.headers, json={"name": name, "kind": kind, "district": district})


def members_of(app, org_id: int) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(sa.select(OrgMember.user_id, OrgMember.role).where(OrgMember.org_id == org_id))
        return dict(rows.all())


def org_row(app, org_id: int) -> Org:
    with app.app_context():
        org = db.session.get(Org, org_id)
        db.session.expunge(org)
        return org


# --- apply -------------------------------------------------------------------------


def test_apply_creates_a_pending_org_with_the_applicant_as_coordinator(app, client):
    applicant = make_user(app)
    resp = apply(client, applicant)
    assert resp.status_code == 201, resp.get_json()
    org = resp.get_json()
    assert ORG_KEYS <= set(org)
    assert org["name"] == "鼓楼街道志愿服务站"
    assert (org["kind"], org["district"], org["status"], org["member_count"]) == ("community", "haishu", "pending", 1)
    row = org_row(app, org["id"])
    assert row.status == "pending" and row.applicant_id == applicant.id
    assert members_of(app, org["id"]) == {applicant.id: "coordinator"}
    me = client.get("/api/v1/me", headers=applicant.headers).get_json()
    assert me["orgs"] == [{"id": org["id"], "name": "鼓楼街道志愿服务站", "role": "coordinator"}]
    assert "coordinator" not in me["roles"]  # no powers until approved


@pytest.mark.parametrize("kind", ["community", "school", "enterprise", "party_branch", "ngo", "government"])
def test_every_kind(app, client, kind):
    resp = apply(client, make_user(app), name=f"组织-{kind}", kind=kind)
    assert resp.status_code == 201 and resp.get_json()["kind"] == kind


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "community", "district": "haishu"}, "name"),
        ({"name": "名" * 81, "kind": "community", "district": "haishu"}, "name"),
        ({"name": "鼓楼", "kind": "club", "district": "haishu"}, "kind"),
        ({"name": "鼓楼", "kind": "community", "district": "pudong"}, "district"),
        ({"name": "鼓楼", "kind": "community"}, "district"),
        ({"name": "鼓楼", "kind": "community", "district": "haishu", "status": "approved"}, "status"),
    ],
)
def test_apply_invalid(app, client, body, field):
    resp = client.post(ORGS, headers=make_user(app).headers, json=body)
    data = assert_error(resp, 422, "validation_error")
    assert list(data["errors"]["json"]) == [field]
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Org)) == 0


def test_duplicate_name_is_409(app, client):
    assert apply(client, make_user(app)).status_code == 201
    other = make_user(app)
    assert_error(apply(client, other, name="  鼓楼街道志愿服务站 "), 409, "org_name_taken")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Org)) == 1
        assert db.session.scalar(sa.select(sa.func.count()).select_from(OrgMember)) == 1


def test_apply_needs_a_token(client):
    assert_error(
        client.post(ORGS, json={"name": "鼓楼", "kind": "ngo", "district": "haishu"}), 401, "authorization_required"
    )


# --- approve -------------------------------------------------------------------------


def test_admin_approves(app, client):
    applicant = make_user(app)
    admin = make_user(app, admin=True)
    org_id = apply(client, applicant).get_json()["id"]
    resp = client.post(f"{ORGS}/{org_id}/approve", headers=admin.headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "approved" and resp.get_json()["id"] == org_id
    assert org_row(app, org_id).status == "approved"
    me = client.get("/api/v1/me", headers=applicant.headers).get_json()
    assert "coordinator" in me["roles"]


def test_non_admin_cannot_approve(app, client):
    applicant = make_user(app)
    org_id = apply(client, applicant).get_json()["id"]
    for account in (applicant, make_user(app)):
        assert_error(client.post(f"{ORGS}/{org_id}/approve", headers=account.headers), 403, "admin_required")
    assert org_row(app, org_id).status == "pending"


def test_approve_twice_is_409(app, client):
    admin = make_user(app, admin=True)
    org_id = apply(client, make_user(app)).get_json()["id"]
    assert client.post(f"{ORGS}/{org_id}/approve", headers=admin.headers).status_code == 200
    assert_error(client.post(f"{ORGS}/{org_id}/approve", headers=admin.headers), 409, "org_not_pending")


def test_approve_unknown_org_is_404(app, client):
    admin = make_user(app, admin=True)
    assert_error(client.post(f"{ORGS}/999999/approve", headers=admin.headers), 404, "not_found")


def test_approve_with_a_body_is_refused(app, client):
    admin = make_user(app, admin=True)
    org_id = apply(client, make_user(app)).get_json()["id"]
    resp = client.post(f"{ORGS}/{org_id}/approve", headers=admin.headers, data="x", content_type="text/plain")
    assert_error(resp, 415, "unsupported_media_type")
    assert org_row(app, org_id).status == "pending"


# --- get ----------------------------------------------------------------------------------


def test_get_org(app, client):
    org_id, coordinator = make_org(app, name="江北社区", kind="school", district="jiangbei")
    add_member(app, org_id, make_user(app))
    with app.app_context():
        db.session.execute(sa.update(Org).where(Org.id == org_id).values(member_count=2))
        db.session.commit()
    resp = client.get(f"{ORGS}/{org_id}", headers=make_user(app).headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert {k: body[k] for k in ORG_KEYS} == {
        "id": org_id,
        "name": "江北社区",
        "kind": "school",
        "district": "jiangbei",
        "status": "approved",
        "member_count": 2,
    }


def test_get_unknown_org_is_404(app, client):
    assert_error(client.get(f"{ORGS}/424242", headers=make_user(app).headers), 404, "not_found")


def test_org_id_must_be_an_integer(app, client):
    assert_error(client.get(f"{ORGS}/abc", headers=make_user(app).headers), 404, "not_found")


# --- members ------------------------------------------------------------------------------


def add(client, actor, org_id, user_id, role="member"):
    return client.post(f"{ORGS}/{org_id}/members", headers=actor.headers, json={"user_id": user_id, "role": role})


def remove(client, actor, org_id, user_id):
    return client.delete(f"{ORGS}/{org_id}/members/{user_id}", headers=actor.headers)


@pytest.mark.parametrize("role", ["member", "coordinator"])
def test_coordinator_adds_a_member(app, client, role):
    org_id, coordinator = make_org(app)
    newcomer = make_user(app)
    resp = add(client, coordinator, org_id, newcomer.id, role)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["org_id"], body["user_id"], body["role"]) == (org_id, newcomer.id, role)
    assert members_of(app, org_id) == {coordinator.id: "coordinator", newcomer.id: role}
    assert org_row(app, org_id).member_count == 2
    me = client.get("/api/v1/me", headers=newcomer.headers).get_json()
    assert me["orgs"] == [{"id": org_id, "name": org_row(app, org_id).name, "role": role}]
    assert ("coordinator" in me["roles"]) == (role == "coordinator")


def test_added_coordinator_can_manage(app, client):
    org_id, coordinator = make_org(app)
    deputy = make_user(app)
    assert add(client, coordinator, org_id, deputy.id, "coordinator").status_code == 201
    newcomer = make_user(app)
    assert add(client, deputy, org_id, newcomer.id).status_code == 201
    assert remove(client, deputy, org_id, newcomer.id).status_code == 204


def test_admin_adds_a_member(app, client):
    org_id, _ = make_org(app)
    admin = make_user(app, admin=True)
    newcomer = make_user(app)
    assert add(client, admin, org_id, newcomer.id).status_code == 201
    assert newcomer.id in members_of(app, org_id)


def test_member_and_outsider_cannot_add(app, client):
    org_id, _ = make_org(app)
    member = make_user(app)
    add_member(app, org_id, member)
    outsider = make_user(app)
    target = make_user(app)
    for actor in (member, outsider):
        assert_error(add(client, actor, org_id, target.id), 403, "coordinator_required")
    assert target.id not in members_of(app, org_id)


def test_coordinator_of_another_org_cannot_add(app, client):
    org_id, _ = make_org(app)
    _, other_coordinator = make_org(app)
    assert_error(add(client, other_coordinator, org_id, make_user(app).id), 403, "coordinator_required")


def test_coordinator_of_pending_org_cannot_add(app, client):
    applicant = make_user(app)
    org_id = apply(client, applicant).get_json()["id"]
    assert_error(add(client, applicant, org_id, make_user(app).id), 403, "coordinator_required")


def test_add_existing_member_is_409(app, client):
    org_id, coordinator = make_org(app)
    member = make_user(app)
    assert add(client, coordinator, org_id, member.id).status_code == 201
    assert_error(add(client, coordinator, org_id, member.id, "coordinator"), 409, "already_member")
    assert members_of(app, org_id)[member.id] == "member"
    assert org_row(app, org_id).member_count == 2


def test_add_unknown_user_is_422(app, client):
    org_id, coordinator = make_org(app)
    body = assert_error(add(client, coordinator, org_id, 987654), 422, "validation_error")
    assert list(body["errors"]["json"]) == ["user_id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": 1, "role": "owner"}, "role"),
        ({"user_id": "1", "role": "member"}, "user_id"),
        ({"role": "member"}, "user_id"),
        ({"user_id": 1}, "role"),
    ],
)
def test_add_member_invalid(app, client, payload, field):
    org_id, coordinator = make_org(app)
    resp = client.post(f"{ORGS}/{org_id}/members", headers=coordinator.headers, json=payload)
    assert list(assert_error(resp, 422, "validation_error")["errors"]["json"]) == [field]


def test_add_to_unknown_org_is_404(app, client):
    admin = make_user(app, admin=True)
    assert_error(add(client, admin, 31337, admin.id), 404, "not_found")


def test_coordinator_removes_a_member(app, client):
    org_id, coordinator = make_org(app)
    member = make_user(app)
    add(client, coordinator, org_id, member.id)
    resp = remove(client, coordinator, org_id, member.id)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert members_of(app, org_id) == {coordinator.id: "coordinator"}
    assert org_row(app, org_id).member_count == 1
    assert client.get("/api/v1/me", headers=member.headers).get_json()["orgs"] == []


def test_member_may_leave(app, client):
    org_id, coordinator = make_org(app)
    member = make_user(app)
    add(client, coordinator, org_id, member.id)
    assert remove(client, member, org_id, member.id).status_code == 204
    assert member.id not in members_of(app, org_id)


def test_member_cannot_remove_another(app, client):
    org_id, coordinator = make_org(app)
    member, other = make_user(app), make_user(app)
    add(client, coordinator, org_id, member.id)
    add(client, coordinator, org_id, other.id)
    assert_error(remove(client, member, org_id, other.id), 403, "coordinator_required")
    assert_error(remove(client, member, org_id, coordinator.id), 403, "coordinator_required")
    assert set(members_of(app, org_id)) == {coordinator.id, member.id, other.id}


def test_remove_non_member_is_404(app, client):
    org_id, coordinator = make_org(app)
    assert_error(remove(client, coordinator, org_id, make_user(app).id), 404, "not_found")
    assert_error(remove(client, coordinator, 999999, coordinator.id), 404, "not_found")


def test_last_coordinator_cannot_be_removed(app, client):
    org_id, coordinator = make_org(app)
    admin = make_user(app, admin=True)
    assert_error(remove(client, coordinator, org_id, coordinator.id), 409, "last_coordinator")
    assert_error(remove(client, admin, org_id, coordinator.id), 409, "last_coordinator")
    assert members_of(app, org_id) == {coordinator.id: "coordinator"}
    assert org_row(app, org_id).member_count == 1


def test_one_of_two_coordinators_can_go(app, client):
    org_id, coordinator = make_org(app)
    deputy = make_user(app)
    add(client, coordinator, org_id, deputy.id, "coordinator")
    assert remove(client, deputy, org_id, coordinator.id).status_code == 204
    assert members_of(app, org_id) == {deputy.id: "coordinator"}
    assert_error(remove(client, deputy, org_id, deputy.id), 409, "last_coordinator")


def _race_removals(app, moves) -> tuple[int, list[int], dict[int, str]]:
    """Two coordinators; ``moves(first, second)`` gives two (actor, target)
    removals, run at once from two threads. Returns codes and what is left."""
    org_id, first = make_org(app)
    second = make_user(app)
    add_member(app, org_id, second, role="coordinator")
    with app.app_context():
        db.session.execute(sa.update(Org).where(Org.id == org_id).values(member_count=2))
        db.session.commit()
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def go(actor, target):
        client = app.test_client()
        barrier.wait()
        codes.append(remove(client, actor, org_id, target.id).status_code)

    threads = [threading.Thread(target=go, args=pair) for pair in moves(first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return org_id, sorted(codes), members_of(app, org_id)


def test_two_coordinators_leaving_at_once_leave_one(app, postgres_only):
    """The org row is locked before the count, so the two removals serialise."""
    for _ in range(10):
        org_id, codes, left = _race_removals(app, lambda a, b: [(a, a), (b, b)])
        assert codes == [204, 409]
        assert list(left.values()) == ["coordinator"]
        assert org_row(app, org_id).member_count == 1


def test_two_coordinators_removing_each_other_at_once_leave_one(app, postgres_only):
    """Whoever is removed first has lost the right to remove the other."""
    for _ in range(10):
        org_id, codes, left = _race_removals(app, lambda a, b: [(a, b), (b, a)])
        assert codes == [204, 403]
        assert list(left.values()) == ["coordinator"]
        assert org_row(app, org_id).member_count == 1


def test_an_org_id_beyond_the_integer_range_is_404(app, client):
    account = make_user(app)
    resp = client.get(f"/api/v1/orgs/{2**40}", headers=account.headers)
    assert (resp.status_code, resp.get_json()["error"]) == (404, "not_found")
