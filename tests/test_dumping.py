"""Responses dumped through BaseSchema's direct field reads are exactly what
marshmallow's own lookup chain gives (mobile_api.fields.BaseSchema._serialize)."""

from __future__ import annotations

from marshmallow import Schema

from mobile_api.fields import BaseSchema
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
