"""Party members serve where they live (党员志愿者, 双报到): joining an org on request,
a branch's members as party members, the community they report to, who sees the
``party`` block, and the branch's and the community's lists and CSV report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app import clock
from app.clock import utcnow
from app.extensions import db
from app.models import AuditEntry, CommunityReport, Notification, OrgMember
from tests.factories import add_member, make_claim, make_org, make_posting, make_record, make_user, make_volunteer
from tests.helpers import assert_error
from tests.moments import YEAR

ORGS = "/api/v1/orgs"


def kinds_told(app, user_id: int) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
        )
        return [(n.kind, n.data) for n in rows]


def join(client, account, org_id, **body):
    return client.post(f"{ORGS}/{org_id}/join", headers=account.headers, json=body)


def decide(client, account, org_id, user_id, action="approve", **body):
    return client.post(f"{ORGS}/{org_id}/join-requests/{user_id}/{action}", headers=account.headers, json=body)


def party_member(app, client, branch, branch_coordinator, community=None, **volunteer):
    """A volunteer who joined ``branch`` on request (and reports to ``community``)."""
    member = make_volunteer(app, **volunteer)
    assert join(client, member, branch).status_code == 201
    assert decide(client, branch_coordinator, branch, member.id).status_code == 200
    if community is not None:
        resp = client.put("/api/v1/me/community", headers=member.headers, json={"org_id": community})
        assert resp.status_code == 200, resp.get_json()
    return member


# --- joining on request ----------------------------------------------------------------------------------------


def test_a_volunteer_asks_the_coordinators_approve_and_everyone_is_told(app, client):
    org_id, coordinator = make_org(app, kind="ngo")
    volunteer = make_volunteer(app)
    resp = join(client, volunteer, org_id, message="我想加入")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["org_id"] == org_id and resp.get_json()["status"] == "pending"
    assert kinds_told(app, coordinator.id) == [("join_requested", {"kind": "join_requested", "org_id": str(org_id)})]

    queue = client.get(f"{ORGS}/{org_id}/join-requests", headers=coordinator.headers).get_json()["items"]
    assert [(i["user"]["id"], i["message"], i["status"]) for i in queue] == [(volunteer.id, "我想加入", "pending")]

    resp = decide(client, coordinator, org_id, volunteer.id)
    assert resp.status_code == 200 and resp.get_json()["status"] == "approved"
    assert kinds_told(app, volunteer.id) == [
        ("membership_approved", {"kind": "membership_approved", "org_id": str(org_id)})
    ]
    me = client.get("/api/v1/me", headers=volunteer.headers).get_json()
    assert {"id": org_id, "name": me["orgs"][0]["name"], "role": "member"} in me["orgs"]
    assert client.get(f"{ORGS}/{org_id}", headers=volunteer.headers).get_json()["member_count"] == 2
    assert client.get(f"{ORGS}/{org_id}/join-requests", headers=coordinator.headers).get_json()["items"] == []
    with app.app_context():
        assert db.session.scalar(sa.select(AuditEntry.action).where(AuditEntry.target_id == org_id)) == (
            "org.join.approve"
        )
    # decided once: a second decision is a conflict; asking again as a member too
    assert_error(
        decide(client, coordinator, org_id, volunteer.id, "reject", reason="晚了"), 409, "join_request_not_pending"
    )
    assert_error(join(client, volunteer, org_id), 409, "already_member")


def test_a_refused_volunteer_is_told_why_and_may_ask_again(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    join(client, volunteer, org_id)
    assert_error(join(client, volunteer, org_id), 409, "join_request_pending")
    resp = decide(client, coordinator, org_id, volunteer.id, "reject", reason="请先到服务站登记")
    assert resp.status_code == 200 and resp.get_json()["reject_reason"] == "请先到服务站登记"
    [(kind, data)] = kinds_told(app, volunteer.id)
    assert (kind, data["org_id"]) == ("membership_rejected", str(org_id))
    with app.app_context():
        assert db.session.scalar(sa.select(OrgMember).where(OrgMember.user_id == volunteer.id)) is None
    # asking again makes it pending anew and tells the coordinators again
    assert join(client, volunteer, org_id).status_code == 201
    assert [k for k, _ in kinds_told(app, coordinator.id)] == ["join_requested", "join_requested"]


def test_who_may_ask_and_who_may_decide(app, client):
    org_id, coordinator = make_org(app)
    pending_org, _ = make_org(app, status="pending")
    resident = make_user(app)
    volunteer = make_volunteer(app)
    admin = make_user(app, admin=True)
    assert_error(join(client, resident, org_id), 403, "volunteer_required")
    assert join(client, volunteer, pending_org).status_code == 404  # an application is not seen by outsiders
    assert_error(join(client, coordinator, org_id), 403, "volunteer_required")
    assert client.post(f"{ORGS}/{org_id}/join", json={}).status_code == 401
    assert client.post(f"{ORGS}/999999/join", headers=volunteer.headers, json={}).status_code == 404
    join(client, volunteer, org_id)
    other = make_volunteer(app)
    # neither another volunteer, nor an admin who does not coordinate the org, decides
    for outsider in (other, admin):
        assert_error(decide(client, outsider, org_id, volunteer.id), 403, "coordinator_required")
        assert_error(
            client.get(f"{ORGS}/{org_id}/join-requests", headers=outsider.headers), 403, "coordinator_required"
        )
    assert decide(client, coordinator, org_id, other.id).status_code == 404  # never asked
    assert decide(client, coordinator, org_id, volunteer.id, "reject", reason=" ").status_code == 422


def test_adding_by_id_still_works_and_settles_a_pending_request(app, client):
    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    join(client, volunteer, org_id)
    resp = client.post(
        f"{ORGS}/{org_id}/members", headers=coordinator.headers, json={"user_id": volunteer.id, "role": "member"}
    )
    assert resp.status_code == 201
    assert client.get(f"{ORGS}/{org_id}/join-requests", headers=coordinator.headers).get_json()["items"] == []
    assert_error(decide(client, coordinator, org_id, volunteer.id), 409, "join_request_not_pending")


# --- party membership, the community, who sees it ----------------------------------------------------------------


def test_reporting_to_a_community_needs_a_party_member_and_a_community(app, client):
    branch, branch_coordinator = make_org(app, kind="party_branch")
    community, _ = make_org(app, kind="community")
    pending_community, _ = make_org(app, kind="community", status="pending")
    school, _ = make_org(app, kind="school")
    plain = make_volunteer(app)
    assert_error(
        client.put("/api/v1/me/community", headers=plain.headers, json={"org_id": community}),
        403,
        "party_member_required",
    )
    member = party_member(app, client, branch, branch_coordinator)
    assert client.get("/api/v1/me", headers=member.headers).get_json()["volunteer"]["party"]["community"] is None
    for org in (school, 999999):
        resp = client.put("/api/v1/me/community", headers=member.headers, json={"org_id": org})
        assert resp.status_code == 422
    put = client.put("/api/v1/me/community", headers=member.headers, json={"org_id": pending_community})
    assert_error(put, 409, "org_not_approved")
    resp = client.put("/api/v1/me/community", headers=member.headers, json={"org_id": community})
    assert resp.status_code == 200
    assert resp.get_json()["community"]["id"] == community and resp.get_json()["branch"]["id"] == branch
    # a new one replaces the old
    other_community, _ = make_org(app, kind="community")
    client.put("/api/v1/me/community", headers=member.headers, json={"org_id": other_community})
    party = client.get("/api/v1/me", headers=member.headers).get_json()["volunteer"]["party"]
    assert party["community"]["id"] == other_community
    assert client.delete("/api/v1/me/community", headers=member.headers).status_code == 204
    assert client.get("/api/v1/me", headers=member.headers).get_json()["volunteer"]["party"]["community"] is None


def test_leaving_the_branch_ends_party_membership_and_reporting(app, client):
    branch, branch_coordinator = make_org(app, kind="party_branch")
    community, _ = make_org(app, kind="community")
    member = party_member(app, client, branch, branch_coordinator, community)
    assert client.delete(f"{ORGS}/{branch}/members/{member.id}", headers=member.headers).status_code == 204
    assert client.get("/api/v1/me", headers=member.headers).get_json()["volunteer"]["party"] is None
    with app.app_context():
        assert db.session.get(CommunityReport, member.id) is None


def test_the_party_block_is_seen_by_the_member_and_their_two_sets_of_coordinators_only(app, client):
    """Every viewer: the member, the branch's and the community's coordinators see it;
    another volunteer, another org's coordinator, an admin and anonymous callers do not."""
    branch, branch_coordinator = make_org(app, kind="party_branch")
    community, community_coordinator = make_org(app, kind="community")
    ngo, ngo_coordinator = make_org(app, kind="ngo")
    member = party_member(app, client, branch, branch_coordinator, community)
    add_member(app, ngo, member)
    admin = make_user(app, admin=True)
    other = make_volunteer(app)
    expected = {
        "branch": {"id": branch, "name": _name(client, branch)},
        "community": {"id": community, "name": _name(client, community)},
    }

    assert client.get("/api/v1/me", headers=member.headers).get_json()["volunteer"]["party"] == expected
    assert client.get("/api/v1/me", headers=other.headers).get_json()["volunteer"]["party"] is None

    def member_row(viewer, org_id):
        items = client.get(f"{ORGS}/{org_id}/members", headers=viewer.headers).get_json()["items"]
        return next(i for i in items if i["user"]["id"] == member.id)

    assert member_row(branch_coordinator, branch)["party"] == expected
    assert "party" not in member_row(admin, branch)  # admins are not named
    assert "party" not in member_row(ngo_coordinator, ngo)  # another org of theirs
    assert "party" not in member_row(admin, ngo)

    # on claims: a community's wish the member holds, and an ngo project
    wish = make_posting(app, community_coordinator, org_id=community)
    claim_id = make_claim(app, wish, member)
    project = make_posting(app, ngo_coordinator, kind="project", org_id=ngo)
    project_claim = make_claim(app, project, member)

    def claim_volunteer(viewer, claim):
        resp = client.get(f"/api/v1/claims/{claim}", headers=viewer.headers)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["volunteer"]

    assert claim_volunteer(member, claim_id)["party"] == expected
    assert claim_volunteer(community_coordinator, claim_id)["party"] == expected
    assert "party" not in claim_volunteer(admin, claim_id)
    assert "party" not in claim_volunteer(ngo_coordinator, project_claim)
    assert "party" not in claim_volunteer(admin, project_claim)
    listed = client.get(f"/api/v1/postings/{wish}/claims", headers=community_coordinator.headers).get_json()["items"]
    assert listed[0]["volunteer"]["party"] == expected
    for viewer in (other, ngo_coordinator):
        assert client.get(f"/api/v1/claims/{claim_id}", headers=viewer.headers).status_code in (403, 404)
    assert client.get(f"/api/v1/claims/{claim_id}").status_code == 401
    # the lists themselves
    for viewer in (other, ngo_coordinator, admin):
        assert_error(client.get(f"{ORGS}/{branch}/party-members", headers=viewer.headers), 403, "coordinator_required")
        assert_error(
            client.get(f"{ORGS}/{community}/party-members", headers=viewer.headers), 403, "coordinator_required"
        )
    assert client.get(f"{ORGS}/{branch}/party-members").status_code == 401
    assert client.get(f"{ORGS}/{ngo}/party-members", headers=ngo_coordinator.headers).status_code == 404


def _name(client, org_id):
    return client.get(f"{ORGS}/{org_id}").get_json()["name"]


# --- the lists and the report ------------------------------------------------------------------------------------


def test_a_party_member_serves_in_their_community_and_both_see_it(app, client):
    """The journey: join the branch, report to the community, claim and fulfil its wish;
    the community lists them, the branch sees the recorded hours in its list and CSV."""
    branch, branch_coordinator = make_org(app, kind="party_branch", name="鼓楼街道第一党支部")
    community, community_coordinator = make_org(app, kind="community", name="孝闻社区", district="haishu")
    member = party_member(app, client, branch, branch_coordinator, community)
    resident = make_user(app)
    wish = client.post(
        "/api/v1/postings",
        headers=community_coordinator.headers,
        json={
            "kind": "wish",
            "title": "帮王奶奶换灯泡",
            "description": "厨房灯坏了",
            "org_id": community,
            "district": "haishu",
            "location": {"lat": 29.87, "lng": 121.55},
            "beneficiary": {"name": "王奶奶"},
        },
    )
    assert wish.status_code == 201, wish.get_json()
    claim = client.post(f"/api/v1/postings/{wish.get_json()['id']}/claims", headers=member.headers, json={})
    assert claim.status_code == 201, claim.get_json()
    claim_id = claim.get_json()["id"]
    done = client.post(
        f"/api/v1/claims/{claim_id}/fulfil", headers=member.headers, json={"note": "换好了", "minutes": 90}
    )
    assert done.status_code == 200, done.get_json()
    confirmed = client.post(
        f"/api/v1/claims/{claim_id}/confirm", headers=community_coordinator.headers, json={"rating": 5}
    )
    assert confirmed.status_code == 200, confirmed.get_json()
    del resident

    for viewer, org in ((community_coordinator, community), (branch_coordinator, branch)):
        resp = client.get(f"{ORGS}/{org}/party-members", headers=viewer.headers)
        assert resp.status_code == 200, resp.get_json()
        [row] = [i for i in resp.get_json()["items"] if i["user"]["id"] == member.id]
        assert row["branch"] == {"id": branch, "name": "鼓楼街道第一党支部"}
        assert row["community"] == {"id": community, "name": "孝闻社区"}
        assert (row["recorded_hours"], row["wishes_fulfilled"], row["claims"]) == (1.5, 1, 1)
        assert row["last_served_at"] is not None and row["volunteer_no"]

    resp = client.get(f"{ORGS}/{branch}/party-members.csv", headers=branch_coordinator.headers)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.data.startswith("\ufeff".encode())
    assert resp.headers["Content-Disposition"].startswith(f'attachment; filename="party-members-{branch}-')
    header, *rows = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig"), newline="")))
    assert header[:5] == ["志愿者编号", "姓名", "党支部", "报到社区", "社区所在区"]
    mine = [r for r in rows if r[1] == "张三丰" and r[3] == "孝闻社区"]
    assert len(mine) == 1 and mine[0][2:8] == ["鼓楼街道第一党支部", "孝闻社区", "海曙区", "1.5", "1", "1"]
    # the community's coordinators do not get the branch's report; the branch's list is no community's
    assert_error(
        client.get(f"{ORGS}/{branch}/party-members.csv", headers=community_coordinator.headers),
        403,
        "coordinator_required",
    )
    assert client.get(f"{ORGS}/{community}/party-members.csv", headers=community_coordinator.headers).status_code == 404


def test_the_figures_count_recorded_hours_of_any_org_in_the_period_only(app, client):
    branch, branch_coordinator = make_org(app, kind="party_branch")
    elsewhere, _ = make_org(app, kind="ngo")
    member = party_member(app, client, branch, branch_coordinator)
    clock.freeze(datetime(YEAR, 5, 20, 4, 0, tzinfo=UTC))
    try:
        in_may = datetime(YEAR, 5, 10, 2, 0, tzinfo=UTC)
        make_record(app, member, elsewhere, minutes=120, ended_at=in_may)  # another org's: counts
        make_record(app, member, elsewhere, minutes=60, ended_at=in_may - timedelta(days=2), status="pending")
        make_record(app, member, elsewhere, minutes=45, ended_at=in_may - timedelta(days=3), status="rejected")
        april = datetime(YEAR, 4, 30, 15, 0, tzinfo=UTC)  # 23:00 on 30 April in Ningbo: April's
        make_record(app, member, None, minutes=30, ended_at=april, kind="honor")

        def row(query=""):
            resp = client.get(f"{ORGS}/{branch}/party-members{query}", headers=branch_coordinator.headers)
            assert resp.status_code == 200, resp.get_json()
            return next(i for i in resp.get_json()["items"] if i["user"]["id"] == member.id)

        may = row()  # default: the current month in Asia/Shanghai
        assert may["recorded_hours"] == 2.0 and may["last_served_at"] == in_may.isoformat().replace("+00:00", "Z")
        april_row = row(f"?from={YEAR}-04-01&to={YEAR}-04-30")
        assert april_row["recorded_hours"] == 0.5
        assert april_row["last_served_at"] == april.isoformat().replace("+00:00", "Z")
        assert row(f"?from={YEAR}-04-01&to={YEAR}-05-31")["recorded_hours"] == 2.5
        assert (
            client.get(
                f"{ORGS}/{branch}/party-members?from={YEAR}-05-31&to={YEAR}-05-01", headers=branch_coordinator.headers
            ).status_code
            == 422
        )
    finally:
        clock.reset()


def test_the_community_lists_only_party_members_reporting_to_it_and_pages(app, client):
    branch, branch_coordinator = make_org(app, kind="party_branch")
    community, community_coordinator = make_org(app, kind="community")
    members = [party_member(app, client, branch, branch_coordinator, community) for _ in range(3)]
    party_member(app, client, branch, branch_coordinator)  # reports nowhere
    first = client.get(f"{ORGS}/{community}/party-members?limit=2", headers=community_coordinator.headers).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        f"{ORGS}/{community}/party-members?limit=2&cursor={first['next_cursor']}", headers=community_coordinator.headers
    ).get_json()
    assert [i["user"]["id"] for i in first["items"] + rest["items"]] == [m.id for m in members]
    branch_list = client.get(f"{ORGS}/{branch}/party-members?limit=100", headers=branch_coordinator.headers).get_json()
    assert len(branch_list["items"]) == 5  # the coordinator is a member too
    assert utcnow()


def test_a_copy_of_ones_data_holds_the_requests_and_the_erase_removes_them(app, client):
    branch, branch_coordinator = make_org(app, kind="party_branch")
    community, _ = make_org(app, kind="community")
    ngo, _ = make_org(app, kind="ngo")
    member = party_member(app, client, branch, branch_coordinator, community)
    join(client, member, ngo, message="想参加活动")
    copy = client.get("/api/v1/me/export", headers=member.headers).get_json()
    assert [(r["org"]["id"], r["status"]) for r in copy["join_requests"]] == [(branch, "approved"), (ngo, "pending")]
    assert copy["volunteer"]["party"]["community"]["id"] == community
    with app.app_context():
        from app.models import JoinRequest, User
        from app.services import personal_data

        counts = personal_data.erase(db.session.get(User, member.id))
        db.session.commit()
        assert counts["join_requests"] == 2 and counts["community_report"] == 1
        assert db.session.scalar(sa.select(JoinRequest.id).where(JoinRequest.user_id == member.id)) is None
        assert db.session.get(CommunityReport, member.id) is None


def test_two_coordinators_deciding_at_once_one_wins(app, client, postgres_only):
    """One conditional UPDATE decides: the other coordinator gets 409, the member is added once."""
    from tests.helpers import at_once, second_coordinator

    for _ in range(5):
        org_id, coordinator = make_org(app)
        deputy = second_coordinator(app, org_id)
        volunteer = make_volunteer(app)
        join(client, volunteer, org_id)
        base = f"{ORGS}/{org_id}/join-requests/{volunteer.id}"
        results = at_once(
            app,
            [
                ("POST", f"{base}/approve", coordinator.headers, None),
                ("POST", f"{base}/reject", deputy.headers, {"reason": "名额已满"}),
            ],
        )
        codes = sorted(status for status, _ in results)
        assert codes == [200, 409], results
        approved = results[0][0] == 200
        with app.app_context():
            rows = db.session.scalars(
                sa.select(OrgMember.role).where(OrgMember.org_id == org_id, OrgMember.user_id == volunteer.id)
            ).all()
        assert rows == (["member"] if approved else [])
        before = 1  # the factory's coordinator; the deputy was added behind the counter's back
        org = client.get(f"{ORGS}/{org_id}", headers=coordinator.headers).get_json()
        assert org["member_count"] == before + approved
        told = [kind for kind, _ in kinds_told(app, volunteer.id)]
        assert told == (["membership_approved"] if approved else ["membership_rejected"])


def test_asking_twice_at_once_makes_one_request(app, postgres_only):
    from tests.helpers import at_once

    org_id, coordinator = make_org(app)
    volunteer = make_volunteer(app)
    results = at_once(app, [("POST", f"{ORGS}/{org_id}/join", volunteer.headers, {})] * 2)
    assert sorted(status for status, _ in results) == [201, 409]
    assert {body.get("error") for status, body in results if status == 409} == {"join_request_pending"}
    assert [kind for kind, _ in kinds_told(app, coordinator.id)] == ["join_requested"]
