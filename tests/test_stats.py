"""GET /api/v1/stats: public figures for the city and per district."""

from __future__ import annotations

from datetime import timedelta

from app import clock
from tests.factories import make_org, make_posting, make_user, make_volunteer
from tests.helpers import decide

EMPTY_KINDS = {"wish": 0, "project": 0, "charity": 0, "service": 0, "energy": 0}


def act(client, account, claim_id, action, **body):
    return client.post(f"/api/v1/claims/{claim_id}/{action}", json=body, headers=account.headers)


def claim(client, account, posting_id):
    resp = client.post(f"/api/v1/postings/{posting_id}/claims", json={}, headers=account.headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def test_stats_of_an_empty_city(client):
    resp = client.get("/api/v1/stats")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "district": None,
        "volunteers": 0,
        "wishes_posted": 0,
        "wishes_claimed": 0,
        "wishes_fulfilled": 0,
        "credit_hours": 0.0,
        "postings_by_kind": EMPTY_KINDS,
    }
    assert "max-age" in resp.headers["Cache-Control"]


def test_stats_count_per_district(app, client):
    resident = make_user(app)
    haishu = [make_volunteer(app, district="haishu") for _ in range(3)]
    make_volunteer(app, district="jiangbei")
    org_id, coordinator = make_org(app, district="haishu")

    claimed, fulfilled, open_wish = (make_posting(app, resident, kind="wish") for _ in range(3))
    # approved by the org's coordinator: that org records the service done on it
    confirmed = make_posting(app, resident, kind="wish", recording_org_id=org_id)
    make_posting(app, resident, kind="wish", status="pending_review")  # not public yet
    make_posting(app, resident, kind="wish", status="rejected")
    make_posting(app, resident, kind="wish", district="jiangbei")
    start = clock.utcnow() + timedelta(hours=1)
    project = make_posting(
        app, coordinator, kind="project", org_id=org_id, starts_at=start, ends_at=start + timedelta(hours=3)
    )
    make_posting(app, coordinator, kind="energy", org_id=org_id)

    claim(client, haishu[0], claimed)
    done = claim(client, haishu[1], fulfilled)
    act(client, haishu[1], done, "fulfil", note="ok", minutes=30)
    finished = claim(client, haishu[2], confirmed)
    act(client, haishu[2], finished, "fulfil", note="ok", minutes=60)
    act(client, resident, finished, "confirm", rating=5)
    withdrawn = claim(client, haishu[0], open_wish)
    act(client, haishu[0], withdrawn, "withdraw")  # given up: not claimed any more

    on_site = claim(client, haishu[0], project)
    clock.advance(timedelta(hours=1))
    assert act(client, haishu[0], on_site, "check-in", lat=29.87, lng=121.55).status_code == 200
    clock.advance(timedelta(hours=1, minutes=40))
    assert act(client, haishu[0], on_site, "check-out", lat=29.87, lng=121.55).status_code == 200

    # the check-out counts at once; the resident's confirmation waits for the org
    assert client.get("/api/v1/stats?district=haishu").get_json()["credit_hours"] == 1.7
    [pending] = client.get(f"/api/v1/orgs/{org_id}/records?status=pending", headers=coordinator.headers).get_json()[
        "items"
    ]
    assert decide(client, coordinator, pending["id"]).status_code == 200
    resp = client.get("/api/v1/stats?district=haishu")
    assert resp.status_code == 200
    assert resp.get_json() == {
        "district": "haishu",
        "volunteers": 3,
        "wishes_posted": 4,
        "wishes_claimed": 3,
        "wishes_fulfilled": 2,
        "credit_hours": 2.7,  # 1 h confirmed wish + 1 h 40 min on site
        "postings_by_kind": {**EMPTY_KINDS, "wish": 4, "project": 1, "energy": 1},
    }
    city = client.get("/api/v1/stats").get_json()
    assert (city["volunteers"], city["wishes_posted"], city["postings_by_kind"]["wish"]) == (4, 5, 5)
    jiangbei = client.get("/api/v1/stats?district=jiangbei").get_json()
    assert (jiangbei["volunteers"], jiangbei["wishes_posted"], jiangbei["wishes_claimed"]) == (1, 1, 0)


def test_unknown_district_is_refused(client):
    resp = client.get("/api/v1/stats?district=atlantis")
    assert resp.status_code == 422
    assert "district" in resp.get_json()["errors"]["query"]
