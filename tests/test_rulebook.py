"""The rulebook as a table: every role × every action × every kind, over HTTP.

The expectations are written out here, not derived from the permission model:
this table is the spec the model is checked against (on SQLite and PostgreSQL).

The world: an approved org in haishu with two coordinators (the one who posts
its projects, charity, rewards, and a fellow ``coordinator``), another org in
haishu (``other_coordinator``), an org in yinzhou (``far_coordinator``), a
resident who posts an org-less wish in haishu, a volunteer who offers an
org-less service, the ``claimant`` who holds the claim, a ``volunteer`` with
nothing to do with any of it, an admin, and nobody (``anonymous``).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, Posting
from app.policy import POSTING_KINDS
from app.services.permissions import reviewers_of
from tests.factories import add_member, make_claim, make_org, make_posting, make_user, make_volunteer

ROLES = ("author", "coordinator", "other_coordinator", "far_coordinator", "claimant", "volunteer", "admin", "anonymous")

# Who manages a posting of each kind (edits, cancels, sees its claims):
# its author, its coordinators, admins. An org-less wish is coordinated by
# every coordinator of its district; an org-less service by nobody but admins.
MANAGERS = {
    "wish": {"author", "coordinator", "other_coordinator", "admin"},
    "project": {"author", "coordinator", "admin"},
    "charity": {"author", "coordinator", "admin"},
    "energy": {"author", "coordinator", "admin"},
    "service": {"author", "admin"},
}

# (action, kind) -> {role: expected status}; roles not listed get ``DENIED[action]``.
EXPECTED: dict[tuple[str, str], dict[str, int]] = {}
for kind in POSTING_KINDS:
    managers = MANAGERS[kind]
    EXPECTED["edit", kind] = dict.fromkeys(managers, 200)
    EXPECTED["cancel", kind] = dict.fromkeys(managers, 200)
    EXPECTED["see_claims", kind] = dict.fromkeys(managers, 200)
    EXPECTED["view_claim", kind] = dict.fromkeys(managers | {"claimant"}, 200)
    # a pending posting: its coordinators review it, never its author (who sees it: 403)
    EXPECTED["review", kind] = {**dict.fromkeys(managers - {"author"}, 200), "author": 403}
    # the beneficiary's phone: managers and the holder of an active claim
    EXPECTED["see_contact", kind] = dict.fromkeys(managers | {"claimant"}, 200) if kind == "wish" else {}
# confirm: nobody confirms their own work; a service is confirmed by the resident who booked it
EXPECTED["confirm", "wish"] = {**dict.fromkeys(MANAGERS["wish"], 200), "claimant": 403}
EXPECTED["confirm", "service"] = {"claimant": 200, "admin": 200, "author": 403}
EXPECTED["confirm", "energy"] = {**dict.fromkeys(MANAGERS["energy"], 200), "claimant": 403}
for kind in ("project", "charity"):  # finished on site, never "confirmed" by a person
    EXPECTED["confirm", kind] = {**dict.fromkeys(MANAGERS[kind], 409), "claimant": 409}
# no-show: an event's managers, after its end
for kind in POSTING_KINDS:
    on_site = kind in ("project", "charity")
    EXPECTED["no_show", kind] = {**dict.fromkeys(MANAGERS[kind], 200 if on_site else 409), "claimant": 403}

# What a role outside the table gets, by action: 401 without a token; 403 where
# the posting is visible but the act is not theirs; 404 where they may not see it.
DENIED = {
    "edit": 403,
    "cancel": 403,
    "see_claims": 403,
    "view_claim": 404,
    "review": 404,
    "see_contact": 200,  # the page is public; the phone is simply absent
    "confirm": 404,
    "no_show": 404,
}
ACTIONS = tuple(DENIED)


@pytest.fixture
def people(app):
    clock.freeze(clock.utcnow().replace(microsecond=0))
    org_id, org_author = make_org(app, district="haishu")
    coordinator = make_user(app)
    add_member(app, org_id, coordinator, "coordinator")
    _, other_coordinator = make_org(app, district="haishu")
    _, far_coordinator = make_org(app, district="yinzhou")
    return {
        "org_id": org_id,
        "org_author": org_author,
        "resident": make_user(app, name="王阿姨"),
        "provider": make_volunteer(app, name="理发师傅"),
        "coordinator": coordinator,
        "other_coordinator": other_coordinator,
        "far_coordinator": far_coordinator,
        "claimant": make_volunteer(app, name="小李"),
        "volunteer": make_volunteer(app, name="路人"),
        "admin": make_user(app, admin=True),
    }


def _author(people, kind):
    return {"wish": people["resident"], "service": people["provider"]}.get(kind, people["org_author"])


def _posting_with_claim(app, people, kind: str, posting_status: str, claim_status: str | None) -> tuple[int, int]:
    """A posting of ``kind`` (org-less for a wish or a service) and the claimant's claim, as rows."""
    author = _author(people, kind)
    org_id = None if kind in ("wish", "service") else people["org_id"]
    now = clock.utcnow()
    times = (
        {"starts_at": now - timedelta(hours=3), "ends_at": now - timedelta(hours=1)}
        if kind
        in (
            "project",
            "charity",
        )
        else {}
    )
    if kind == "wish":
        times.update(beneficiary_name="王阿姨", beneficiary_phone="+8613812340001", beneficiary_address="公园路 18 号")
    posting_id = make_posting(app, author, kind=kind, org_id=org_id, status=posting_status, **times)
    if claim_status is None:
        return posting_id, 0
    return posting_id, make_claim(app, posting_id, people["claimant"], claim_status)


def _act(app, client, people, kind: str, action: str, role: str) -> tuple[int, dict]:
    account = None if role == "anonymous" else people[role] if role != "author" else _author(people, kind)
    headers = account.headers if account is not None else {}
    if action in ("edit", "cancel", "review"):
        status = "pending_review" if action == "review" else "open"
        posting_id, _ = _posting_with_claim(app, people, kind, status, None)
        if action == "edit":
            resp = client.patch(f"/api/v1/postings/{posting_id}", json={"title": "改个标题"}, headers=headers)
        else:
            resp = client.post(
                f"/api/v1/postings/{posting_id}/{'cancel' if action == 'cancel' else 'approve'}", headers=headers
            )
    elif action == "see_contact":
        posting_id, _ = _posting_with_claim(app, people, kind, "open", "active")
        resp = client.get(f"/api/v1/postings/{posting_id}", headers=headers)
        body = resp.get_json()
        if resp.status_code == 200 and kind == "wish" and "phone" not in body["beneficiary"]:
            return 200, {"contact": False}
        return resp.status_code, {"contact": resp.status_code == 200 and kind == "wish"}
    elif action == "see_claims":
        posting_id, _ = _posting_with_claim(app, people, kind, "open", "active")
        resp = client.get(f"/api/v1/postings/{posting_id}/claims", headers=headers)
    elif action == "view_claim":
        _, claim_id = _posting_with_claim(app, people, kind, "open", "active")
        resp = client.get(f"/api/v1/claims/{claim_id}", headers=headers)
    elif action == "confirm":
        claim_status = "fulfilled" if kind in ("wish", "service") else "active"
        _, claim_id = _posting_with_claim(app, people, kind, "open", claim_status)
        resp = client.post(f"/api/v1/claims/{claim_id}/confirm", json={"rating": 5}, headers=headers)
    elif action == "no_show":
        _, claim_id = _posting_with_claim(app, people, kind, "open", "active")
        resp = client.post(f"/api/v1/claims/{claim_id}/no-show", headers=headers)
    else:
        raise AssertionError(action)
    return resp.status_code, resp.get_json() or {}


@pytest.mark.parametrize("kind", POSTING_KINDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_role_action_kind(app, client, people, kind, action):
    expected = EXPECTED[action, kind]
    outcomes, wanted = {}, {}
    for role in ROLES:
        code, body = _act(app, client, people, kind, action, role)
        if action == "see_contact":
            outcomes[role] = (code, body["contact"])
            wanted[role] = (200, role in expected)
            continue
        outcomes[role] = code
        wanted[role] = 401 if role == "anonymous" else expected.get(role, DENIED[action])
        if code in (401, 403, 404, 409):
            assert body["error"], body
    assert outcomes == wanted


@pytest.mark.parametrize(
    ("kind", "role", "slug"),
    [
        ("wish", "claimant", "own_claim"),
        ("service", "author", "own_claim"),
        ("energy", "claimant", "own_claim"),
    ],
)
def test_nobody_confirms_their_own_work_and_nothing_is_written(app, client, people, kind, role, slug):
    code, body = _act(app, client, people, kind, "confirm", role)
    assert (code, body["error"]) == (403, slug)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Claim).where(Claim.status == "confirmed")) == 0


@pytest.mark.parametrize("kind", POSTING_KINDS)
def test_the_review_queue_and_who_is_told_follow_the_review_column(app, client, people, kind):
    """The same rule read three ways: who may approve (the table above), whose
    queue lists the posting, and who is told it waits (``reviewers_of``)."""
    posting_id, _ = _posting_with_claim(app, people, kind, "pending_review", None)
    reviewers = {role for role, code in EXPECTED["review", kind].items() if code == 200}
    for role in ROLES:
        account = None if role == "anonymous" else people[role] if role != "author" else _author(people, kind)
        queue = client.get("/api/v1/postings?status=pending_review", headers=account.headers if account else {})
        listed = posting_id in [item["id"] for item in queue.get_json()["items"]]
        assert listed == (role in reviewers), role
    with app.app_context():
        told = reviewers_of(db.session.get(Posting, posting_id))
    expected = {people[role].id for role in reviewers}
    if kind == "wish":
        expected.add(people["org_author"].id)  # the first org's other coordinator reviews its district's wishes too
    assert told == expected


# A pending record (honor hours the org's first coordinator, ``author``, gave the
# ``claimant``): who approves it and who rejects it. Others do not see it (404).
RECORD_DECISIONS = {
    "approve": {"coordinator": 200, "admin": 200, "author": 403, "claimant": 403},
    "reject": {"coordinator": 200, "admin": 200, "author": 200, "claimant": 403},
}
RECORD_SLUGS = {("approve", "author"): "second_person_required", ("approve", "claimant"): "own_record"}
RECORD_SLUGS[("reject", "claimant")] = "own_record"


@pytest.mark.parametrize("action", RECORD_DECISIONS)
def test_who_decides_a_pending_record(app, client, people, action):
    add_member(app, people["org_id"], people["claimant"])
    outcomes, wanted = {}, {}
    for hours_ago, role in enumerate(ROLES, start=1):
        ended = clock.isoformat(clock.utcnow() - timedelta(hours=2 * hours_ago))
        awarded = client.post(
            f"/api/v1/orgs/{people['org_id']}/records",
            json={"volunteer_id": people["claimant"].id, "minutes": 60, "reason": "表现突出", "ended_at": ended},
            headers=people["org_author"].headers,
        )
        assert awarded.status_code == 201, awarded.get_json()
        account = None if role == "anonymous" else people["org_author"] if role == "author" else people[role]
        body = {"reason": "未到岗"} if action == "reject" else None
        resp = client.post(
            f"/api/v1/records/{awarded.get_json()['id']}/{action}",
            json=body,
            headers=account.headers if account else {},
        )
        outcomes[role] = (resp.status_code, resp.get_json().get("error"))
        code = 401 if role == "anonymous" else RECORD_DECISIONS[action].get(role, 404)
        slug = {401: "authorization_required", 404: "not_found"}.get(code, RECORD_SLUGS.get((action, role)))
        wanted[role] = (code, slug)
    assert outcomes == wanted
