"""A wish's place is for its contacts: no sequence of queries finds the door.

The attack this guards against: many anonymous ``GET /postings?near=…&radius_km=…``
from three probe points, each a binary search on the radius at which the wish
first appears, then trilateration from the three distances. Filtering on the
exact point gave it back to the metre; filtering on the rounded point gives at
best the rounded point (about 100 m), which is public anyway.
"""

from __future__ import annotations

import math

import pytest
from icalendar import Calendar

from app.geo import KM_PER_DEG_LAT, approximate, haversine_km
from app.services.posting_place import cut_address
from tests.factories import make_claim, make_posting, make_user, make_volunteer

# A wish whose door lies far (about 60 m) from its rounded point.
DOOR = (29.87042, 121.55041)
ADDRESS = "海曙区秘密路8号602"


def _appears(client, headers, probe, radius_km: float, wish: int) -> bool:
    url = f"/api/v1/postings?kind=wish&near={probe[0]},{probe[1]}&radius_km={radius_km:.6f}&limit=100"
    resp = client.get(url, headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return wish in [item["id"] for item in resp.get_json()["items"]]


def _smallest_radius(client, headers, probe, wish: int) -> float:
    """The radius at which the wish first appears from ``probe``: a binary search (20 GETs)."""
    low, high = 0.5, 5.0
    assert _appears(client, headers, probe, high, wish) and not _appears(client, headers, probe, low, wish)
    for _ in range(18):
        middle = (low + high) / 2
        if _appears(client, headers, probe, middle, wish):
            high = middle
        else:
            low = middle
    return high


def _trilaterate(probes, distances) -> tuple[float, float]:
    """The point at those distances from the probes (least squares on a local plane)."""
    lat0, lng0 = probes[0]
    kx = KM_PER_DEG_LAT * math.cos(math.radians(lat0))

    def plane(point):
        return (point[1] - lng0) * kx, (point[0] - lat0) * KM_PER_DEG_LAT

    (x1, y1), *others = [plane(p) for p in probes]
    d1 = distances[0]
    rows, rhs = [], []
    for (xi, yi), di in zip(others, distances[1:], strict=True):
        rows.append((2 * (xi - x1), 2 * (yi - y1)))
        rhs.append(d1**2 - di**2 + xi**2 - x1**2 + yi**2 - y1**2)
    (a, b), (c, d) = rows
    det = a * d - b * c
    x = (rhs[0] * d - b * rhs[1]) / det
    y = (a * rhs[1] - c * rhs[0]) / det
    return lat0 + y / KM_PER_DEG_LAT, lng0 + x / kx


@pytest.fixture
def wish(app):
    resident = make_user(app)
    return resident, make_posting(app, resident, lat=DOOR[0], lng=DOOR[1], address=ADDRESS)


@pytest.mark.parametrize("viewer", ["anonymous", "volunteer"])
def test_trilateration_finds_no_more_than_the_rounded_point(app, client, wish, viewer):
    _, wish_id = wish
    headers = make_volunteer(app).headers if viewer == "volunteer" else {}
    probes = [(29.8834, 121.5502), (29.8604, 121.5381), (29.8612, 121.5649)]
    distances = [_smallest_radius(client, headers, probe, wish_id) for probe in probes]
    guess = _trilaterate(probes, distances)
    rounded = approximate(*DOOR)
    rounding_m = haversine_km(*DOOR, *rounded) * 1000
    assert rounding_m > 50
    # the attack works (it finds what is searched on: the rounded point) ...
    assert haversine_km(*guess, *rounded) * 1000 < 5
    # ... and gets no closer to the door than the rounding
    assert haversine_km(*guess, *DOOR) * 1000 > rounding_m - 5

    # and the distances shown are of the rounded point, to 0.1 km
    for probe in probes:
        url = f"/api/v1/postings?kind=wish&near={probe[0]},{probe[1]}&radius_km=5&sort=distance"
        item = next(i for i in client.get(url, headers=headers).get_json()["items"] if i["id"] == wish_id)
        assert item["distance_km"] == round(haversine_km(*probe, *rounded), 1)
        assert item["location"] == {"lat": rounded[0], "lng": rounded[1]}
        assert item["address"] == "海曙区秘密路"


def test_radius_below_half_a_kilometre_is_refused(client):
    resp = client.get("/api/v1/postings?near=29.87,121.55&radius_km=0.49")
    assert resp.status_code == 422
    assert "radius_km" in resp.get_json()["errors"]["query"]
    assert client.get("/api/v1/postings?near=29.87,121.55&radius_km=0.5").status_code == 200


def test_contacts_see_the_door_and_everyone_else_the_street(app, client, wish):
    resident, wish_id = wish
    stranger = make_volunteer(app)
    helper = make_volunteer(app)
    make_claim(app, wish_id, helper)
    for account, exact in ((None, False), (stranger, False), (resident, True), (helper, True)):
        headers = account.headers if account else {}
        page = client.get(f"/api/v1/postings/{wish_id}", headers=headers).get_json()
        listed = client.get(
            "/api/v1/postings?status=open&status=claimed&near=29.87,121.55&radius_km=3", headers=headers
        ).get_json()["items"]
        item = next(i for i in listed if i["id"] == wish_id)
        if exact:
            assert page["address"] == item["address"] == ADDRESS
            assert page["location"] == item["location"] == {"lat": DOOR[0], "lng": DOOR[1]}
            assert item["distance_km"] == round(haversine_km(29.87, 121.55, *DOOR), 3)
        else:
            assert page["address"] == item["address"] == "海曙区秘密路"
            assert page["location"] == {"lat": 29.87, "lng": 121.55}
            assert item["distance_km"] == 0.0


def test_a_withdrawn_volunteers_calendar_shows_the_street_not_the_door(app, client, wish):
    _, wish_id = wish
    volunteer = make_volunteer(app)
    make_claim(app, wish_id, volunteer, status="withdrawn")
    url = client.post("/api/v1/me/calendar", headers=volunteer.headers).get_json()["url"]
    resp = client.get(url.removeprefix("http://localhost"))
    assert resp.status_code == 200
    (event,) = Calendar.from_ical(resp.data).walk("VEVENT")
    assert str(event["LOCATION"]) == "海曙区秘密路"
    assert (event["GEO"].latitude, event["GEO"].longitude) == approximate(*DOOR)
    assert ADDRESS not in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    ("address", "cut"),
    [
        ("海曙区秘密路8号602", "海曙区秘密路"),
        ("江北区人民路十五号3单元", "江北区人民路"),
        ("鄞州区幸福小区3栋201", "鄞州区"),
        ("海曙区鼓楼街道", "海曙区鼓楼街道"),
        ("8 Secret Road", None),
        ("天一广场", None),
        ("", None),
        (None, None),
    ],
)
def test_an_address_is_cut_to_the_street(address, cut):
    assert cut_address(address) == cut


def test_a_district_coordinator_sees_the_door_in_the_feed_until_removed(app, client):
    """The feed reads the viewer's coordinator roles with the token's check
    (``User.coordinated_orgs``), on every request: a coordinator of the wish's
    district sees its exact point; removed, the next page shows it rounded."""
    import sqlalchemy as sa

    from app.extensions import db
    from app.models import OrgMember
    from tests.factories import make_org

    resident = make_user(app)
    wish = make_posting(app, resident, kind="wish", lat=DOOR[0], lng=DOOR[1], beneficiary_address=ADDRESS)
    org_id, coordinator = make_org(app, district="haishu")
    _, elsewhere = make_org(app, district="yinzhou")
    url = f"/api/v1/postings?kind=wish&near={DOOR[0]},{DOOR[1]}&radius_km=1"

    def location(account) -> dict:
        resp = client.get(url, headers=account.headers)
        assert resp.status_code == 200, resp.get_json()
        (item,) = [item for item in resp.get_json()["items"] if item["id"] == wish]
        return item["location"]

    assert location(coordinator) == {"lat": DOOR[0], "lng": DOOR[1]}
    rounded = dict(zip(("lat", "lng"), approximate(*DOOR), strict=True))
    assert location(elsewhere) == rounded
    with app.app_context():
        db.session.execute(sa.update(OrgMember).where(OrgMember.org_id == org_id).values(role="member"))
        db.session.commit()
    assert location(coordinator) == rounded
