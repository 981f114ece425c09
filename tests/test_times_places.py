"""Times carry their offset; one Earth model for the box and the distance."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from app import clock
from app.geo import EARTH_RADIUS_KM, KM_PER_DEG_LAT, bounding_box, geocell_for, geocells_covering, haversine_km
from tests.factories import make_org, make_posting, make_user
from tests.moments import YEAR

CENTRE = (29.87, 121.55)


def project_body(org_id: int, **times) -> dict:
    return {
        "kind": "project",
        "title": "社区义诊",
        "description": "量血压",
        "district": "haishu",
        "org_id": org_id,
        "capacity": 5,
        **times,
    }


@pytest.mark.parametrize(
    "starts_at",
    [f"{YEAR}-12-05T09:00:00", f"{YEAR}-12-05 09:00:00", f"{YEAR}-12-05"],
)
def test_a_time_without_an_offset_is_refused_not_guessed(app, client, starts_at):
    org_id, coordinator = make_org(app)
    body = project_body(org_id, starts_at=starts_at, ends_at=f"{YEAR}-12-05T12:00:00Z")
    resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
    assert resp.status_code == 422, resp.get_json()
    assert "starts_at" in resp.get_json()["errors"]["json"]
    assert client.get("/api/v1/postings").get_json()["items"] == []


def test_beijing_time_is_read_with_its_offset_and_answered_in_utc(app, client):
    org_id, coordinator = make_org(app)
    # nine in the morning, Beijing time, a week from now: 01:00Z that day
    day = (clock.utcnow() + timedelta(days=7)).date().isoformat()
    body = project_body(org_id, starts_at=f"{day}T09:00:00+08:00", ends_at=f"{day}T12:00:00+08:00")
    resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
    assert resp.status_code == 201, resp.get_json()
    assert (resp.get_json()["starts_at"], resp.get_json()["ends_at"]) == (f"{day}T01:00:00Z", f"{day}T04:00:00Z")


@pytest.mark.parametrize("year", [1999, 2101, 1])
def test_years_outside_2000_to_2100_are_refused(app, client, year):
    org_id, coordinator = make_org(app)
    body = project_body(org_id, starts_at=f"{year:04d}-12-05T09:00:00Z", ends_at=f"{YEAR}-12-05T12:00:00Z")
    resp = client.post("/api/v1/postings", json=body, headers=coordinator.headers)
    assert resp.status_code == 422
    assert "starts_at" in resp.get_json()["errors"]["json"]


def test_the_box_and_the_distance_share_one_sphere():
    assert KM_PER_DEG_LAT == pytest.approx(EARTH_RADIUS_KM * math.pi / 180)
    # one degree of latitude, as the distance measures it, is what the box assumes
    assert haversine_km(0, 0, 1, 0) == pytest.approx(KM_PER_DEG_LAT, rel=1e-9)


def _point_at(km: float, bearing_deg: float) -> tuple[float, float]:
    """The point ``km`` from the centre on ``bearing_deg``, on the same sphere."""
    lat1, lng1 = map(math.radians, CENTRE)
    d = km / EARTH_RADIUS_KM
    b = math.radians(bearing_deg)
    lat2 = math.asin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * math.cos(b))
    lng2 = lng1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * math.sin(lat2))
    return math.degrees(lat2), math.degrees(lng2)


@pytest.mark.parametrize("bearing", [0, 45, 90, 135, 180, 270])
def test_a_point_on_the_rim_is_in_the_box_and_its_cells(bearing):
    lat, lng = _point_at(0.9995, bearing)
    assert haversine_km(*CENTRE, lat, lng) == pytest.approx(0.9995, abs=1e-9)
    min_lat, max_lat, min_lng, max_lng = bounding_box(*CENTRE, 1.0)
    assert min_lat <= lat <= max_lat and min_lng <= lng <= max_lng
    assert geocell_for(lat, lng) in geocells_covering(*CENTRE, 1.0)


def test_the_feed_finds_a_posting_at_the_rim_and_not_beyond(app, client):
    clock.freeze(clock.utcnow())
    author = make_user(app)
    # services, at a public venue: searched on their exact point (a wish is searched on
    # its rounded one: tests/test_place_privacy.py)
    inside = [make_posting(app, author, kind="service", title=f"近{b}", lat=p[0], lng=p[1]) for b, p in _rim(0.9995)]
    outside = [make_posting(app, author, kind="service", title=f"远{b}", lat=p[0], lng=p[1]) for b, p in _rim(1.0005)]
    resp = client.get(f"/api/v1/postings?near={CENTRE[0]},{CENTRE[1]}&radius_km=1&sort=distance&limit=100")
    found = {item["id"] for item in resp.get_json()["items"]}
    assert found == set(inside)
    assert not found & set(outside)


def _rim(km: float):
    return [(bearing, _point_at(km, bearing)) for bearing in (0, 90, 180, 270)]
