"""Responses dumped through BaseSchema's direct field reads are exactly what
marshmallow's own lookup chain gives (mobile_api.fields.BaseSchema._serialize)."""

from __future__ import annotations

import json

from marshmallow import Schema

import mobile_api.postings
from app.extensions import db
from app.geo import approximate
from app.models import Photo, Posting
from app.policy import POSTING_KINDS
from mobile_api.fields import BaseSchema
from mobile_api.schemas import PostingSchema
from tests.factories import make_claim, make_posting, make_roles, make_user, make_volunteer


def test_every_response_is_what_marshmallow_would_dump(app, client, monkeypatch):
    roles = make_roles(app)
    volunteer, coordinator = roles["volunteer"], roles["coordinator"]
    resident = make_user(app)
    other = make_volunteer(app, skills=["elderly"])
    wish = make_posting(app, resident, tags=["助老", "社区"])
    project = make_posting(app, coordinator, kind="project", org_id=roles["org_id"], capacity=5)
    make_posting(app, resident, kind="service", lat=None, lng=None)
    claim = make_claim(app, wish, volunteer)
    make_claim(app, project, other)
    near = "near=29.87,121.55&radius_km=5"
    requests = [
        ("/api/v1/postings", {}),
        (f"/api/v1/postings?{near}&sort=distance", {}),
        (f"/api/v1/postings?{near}&sort=distance", volunteer.headers),
        (f"/api/v1/postings?{near}&status=open&status=claimed", resident.headers),
        ("/api/v1/postings?for_me=true", other.headers),
        (f"/api/v1/postings/{wish}", resident.headers),
        (f"/api/v1/postings/{wish}", volunteer.headers),
        (f"/api/v1/postings/{project}", coordinator.headers),
        (f"/api/v1/postings/{wish}/claims", resident.headers),
        (f"/api/v1/postings/{project}/claims", coordinator.headers),
        (f"/api/v1/claims/{claim}", volunteer.headers),
        ("/api/v1/me", volunteer.headers),
        ("/api/v1/me/claims", volunteer.headers),
        ("/api/v1/me/notifications", resident.headers),
        ("/api/v1/orgs", coordinator.headers),
        (f"/api/v1/orgs/{roles['org_id']}/members", coordinator.headers),
        ("/api/v1/skills", {}),
    ]

    def answers():
        out = []
        for url, headers in requests:
            resp = client.get(url, headers=headers)
            assert resp.status_code == 200, (url, resp.get_json())
            out.append(resp.get_json())
        return out

    direct = answers()
    monkeypatch.setattr(BaseSchema, "_serialize", Schema._serialize)
    assert answers() == direct
    assert any(page.get("items") for page in direct if isinstance(page, dict))


DOOR = (29.87042, 121.55041)


def test_the_hot_reads_answer_what_the_posting_schema_dumps(app, client, monkeypatch):
    """The feed, for_me and a posting's page are dumped by hand
    (``mobile_api.schemas.postings.dump_posting``) from rows: byte for byte what
    marshmallow's own ``PostingSchema`` dump gives, for every kind, for
    anonymous, volunteer, poster and coordinator viewers, with and without a
    distance, a wish's place rounded or exact, photos, a story, a claim, a match."""
    roles = make_roles(app)
    volunteer, coordinator, org_id = roles["volunteer"], roles["coordinator"], roles["org_id"]
    resident = make_user(app)
    other = make_volunteer(app, skills=["elderly"], push_radius_km=10.0)
    beneficiary = {
        "address": "海曙区秘密路8号602",
        "beneficiary_name": "王阿姨",
        "beneficiary_phone": "13800000000",
        "beneficiary_address": "海曙区秘密路8号602室",
    }
    claimed = make_posting(app, resident, lat=DOOR[0], lng=DOOR[1], tags=["助老", "社区"], **beneficiary)
    rounded = make_posting(app, resident, lat=DOOR[0] + 0.004, lng=DOOR[1], tags=["elderly"], **beneficiary)
    project = make_posting(app, coordinator, kind="project", org_id=org_id, capacity=5, tags=["助老"], address="鼓楼")
    charity = make_posting(app, coordinator, kind="charity", org_id=org_id, lat=29.88, lng=121.56)
    service = make_posting(app, resident, kind="service", lat=None, lng=None)
    energy = make_posting(app, coordinator, kind="energy", org_id=org_id)
    closed = make_posting(app, resident, **beneficiary)
    rejected = make_posting(app, resident, status="rejected", review_note="不清楚")
    cancelled = make_posting(app, resident, status="cancelled", cancel_reason="不需要了")
    make_claim(app, claimed, volunteer)
    make_claim(app, project, other, status="waitlisted")
    story = make_claim(app, closed, other, status="confirmed", note="修好了", photos_private=False)
    with app.app_context():
        db.session.get(Posting, closed).status = "closed"  # confirmed: its story is public
        for n, (owner, link) in enumerate([(coordinator, {"posting_id": project}), (other, {"claim_id": story})]):
            db.session.add(
                Photo(
                    owner_id=owner.id,
                    purpose="posting" if "posting_id" in link else "fulfil",
                    content_type="image/jpeg",
                    size=1000,
                    key=f"dumping-{n}",
                    status="ready",
                    width=800,
                    height=600,
                    **link,
                )
            )
        db.session.commit()

    near = f"near={DOOR[0]},{DOOR[1] + 0.01}&radius_km=5"
    every = "&".join(f"status={status}" for status in ("open", "claimed", "closed", "rejected", "cancelled"))
    lists = [
        "/api/v1/postings",
        "/api/v1/postings?limit=3",
        f"/api/v1/postings?{near}&sort=distance",
        f"/api/v1/postings?{near}&sort=distance&limit=2",
        f"/api/v1/postings?{near}",
        f"/api/v1/postings?{every}",
        f"/api/v1/postings?{every}&sort=ending_soon&limit=4",
        "/api/v1/postings?tag=助老&district=haishu",
        f"/api/v1/postings?org_id={org_id}&kind=project&kind=charity&kind=energy",
        f"/api/v1/postings?status=rejected&author_id={resident.id}",
    ]
    pages = [f"/api/v1/postings/{posting}" for posting in (claimed, rounded, project, charity, service, energy)]
    pages += [f"/api/v1/postings/{posting}" for posting in (closed, rejected, cancelled)]
    viewers = [{}, volunteer.headers, resident.headers, coordinator.headers, other.headers]

    def answers():
        out = []
        for headers in viewers:
            for url in [*lists, *pages]:
                out.append((url, client.get(url, headers=headers)))
                cursor = out[-1][1].get_json().get("next_cursor")
                if cursor:  # the next page, from the cursor
                    out.append((url, client.get(f"{url}&cursor={cursor}", headers=headers)))
        for account in (other, volunteer):
            out.append(("for_me", client.get("/api/v1/postings?for_me=true", headers=account.headers)))
        return [(url, resp.status_code, resp.data) for url, resp in out]

    by_hand = answers()
    monkeypatch.setattr(BaseSchema, "_serialize", Schema._serialize)
    monkeypatch.setattr(mobile_api.postings, "dump_posting", PostingSchema().dump)
    assert answers() == by_hand

    items = []
    for _, status, data in by_hand:
        assert status in (200, 404)
        body = json.loads(data) if status == 200 else {}
        items += body.get("items", [body] if "id" in body else [])
    assert {item["kind"] for item in items} == set(POSTING_KINDS)
    assert all(set(item) == set(PostingSchema().fields) for item in items)
    for what in ("photos", "story", "my_claim", "match", "org", "distance_km", "reject_reason", "cancel_reason"):
        assert any(item[what] for item in items), what
    assert any("phone" in item["beneficiary"] for item in items)
    wishes = [item for item in items if item["id"] == claimed and item["location"]]
    assert {(item["location"]["lat"], item["location"]["lng"]) for item in wishes} == {DOOR, approximate(*DOOR)}
