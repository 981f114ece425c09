"""PUT /me/volunteer — volunteer registration (志愿者注册) — and star levels."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime

import pytest
import sqlalchemy as sa

from app import clock, create_app
from app.config import NINGBO_DISTRICTS
from app.extensions import db
from app.models import Volunteer
from app.policy import STAR_THRESHOLDS_HOURS, star_level
from tests.conftest import _config_dict
from tests.factories import id_number, make_user

URL = "/api/v1/me/volunteer"
VALID_ID = "330203199001011236"
VALID_ID_X = "11010519491231002X"
VOLUNTEER_KEYS = {
    "volunteer_no",
    "real_name",
    "id_number_masked",
    "skills",
    "district",
    "verified",
    "credit_hours",
    "honor_hours",
    "star_level",
    "energy_balance",
    "active_claims",
    "rating",
}


def body(**overrides) -> dict:
    data = {
        "real_name": "陈晓",
        "id_number": VALID_ID,
        "gender": "female",
        "birth_date": "1990-01-01",
        "skills": ["elderly", "repair"],
        "district": "haishu",
        "home": {"lat": 29.874, "lng": 121.546},
        "push_radius_km": 5,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not ...}


def volunteer_rows(app) -> list[Volunteer]:
    with app.app_context():
        rows = db.session.scalars(sa.select(Volunteer).order_by(Volunteer.id)).all()
        db.session.expunge_all()
        return rows


def assert_422(resp, field: str, *, contains: str | None = None) -> None:
    data = resp.get_json()
    assert resp.status_code == 422, data
    assert data["error"] == "validation_error"
    assert list(data["errors"]["json"]) == [field], data["errors"]
    if contains:
        assert any(contains in m for m in data["errors"]["json"][field]), data["errors"]


# --- registration ---------------------------------------------------------------


def test_register_volunteer(app, client):
    user = make_user(app)
    resp = client.put(URL, headers=user.headers, json=body())
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    assert VOLUNTEER_KEYS <= set(data)
    assert data["real_name"] == "陈晓"
    assert data["id_number_masked"] == "3302**********1236"
    assert data["skills"] == ["elderly", "repair"]
    assert data["district"] == "haishu"
    assert data["home"] == {"lat": 29.874, "lng": 121.546}
    assert data["push_radius_km"] == 5.0
    assert data["verified"] is False
    assert (data["credit_hours"], data["honor_hours"], data["star_level"]) == (0, 0, 0)
    assert (data["energy_balance"], data["active_claims"]) == (0, 0)
    assert data["rating"] == {"average": None, "count": 0}
    # with the masked number the full birth date would give the whole number away
    assert data["gender"] == "female" and "birth_date" not in data
    (row,) = volunteer_rows(app)
    assert row.user_id == user.id
    assert data["volunteer_no"] == row.volunteer_no == f"NB{row.id:08d}"
    me = client.get("/api/v1/me", headers=user.headers).get_json()
    assert me["volunteer"] == data
    assert me["roles"] == ["user", "volunteer"]


def test_minimal_registration_uses_defaults(app, client):
    user = make_user(app)
    resp = client.put(URL, headers=user.headers, json={"real_name": "杨帆", "id_number": VALID_ID, "district": "cixi"})
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    assert data["skills"] == [] and data["home"] is None and data["push_radius_km"] == 3.0
    assert "birth_date" not in data
    with app.app_context():
        assert str(volunteer_rows(app)[0].birth_date) == "1990-01-01"  # taken from the ID number


def test_id_number_stored_only_as_keyed_hash_and_mask(app, client):
    user = make_user(app)
    assert (
        client.put(URL, headers=user.headers, json=body(id_number=VALID_ID_X.lower(), birth_date=...)).status_code
        == 200
    )
    (row,) = volunteer_rows(app)
    expected = hmac.new(app.config["ID_HASH_KEY"].encode(), VALID_ID_X.encode(), hashlib.sha256).hexdigest()
    assert row.id_hash == expected
    assert row.id_masked == "1101**********002X"
    # No column of any table holds the clear number, in either case.
    with app.app_context(), db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for record in conn.execute(sa.select(table)):
                text = " ".join(str(v) for v in record)
                assert VALID_ID_X not in text.upper(), table.name
                assert VALID_ID_X[:14] not in text, table.name


def test_response_never_contains_the_clear_number(app, client):
    user = make_user(app)
    resp = client.put(URL, headers=user.headers, json=body())
    assert VALID_ID not in resp.get_data(as_text=True)
    assert VALID_ID not in client.get("/api/v1/me", headers=user.headers).get_data(as_text=True)


def test_registering_twice_updates_and_keeps_volunteer_no(app, client):
    user = make_user(app)
    first = client.put(URL, headers=user.headers, json=body()).get_json()
    resp = client.put(
        URL,
        headers=user.headers,
        json=body(real_name="陈晓晓", skills=["tutoring"], district="yinzhou", home=None, push_radius_km=10),
    )
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["volunteer_no"] == first["volunteer_no"]
    assert (second["real_name"], second["skills"], second["district"]) == ("陈晓晓", ["tutoring"], "yinzhou")
    assert second["home"] is None and second["push_radius_km"] == 10.0
    (row,) = volunteer_rows(app)
    assert row.volunteer_no == first["volunteer_no"]
    assert row.home_lat is None and row.district == "yinzhou"


def test_volunteer_numbers_are_unique_per_volunteer(app, client):
    numbers = set()
    for seq in range(3):
        user = make_user(app)
        resp = client.put(URL, headers=user.headers, json=body(id_number=id_number(seq)))
        assert resp.status_code == 200, resp.get_json()
        numbers.add(resp.get_json()["volunteer_no"])
    assert len(numbers) == 3


def test_same_id_number_on_another_account_is_409(app, client):
    owner = make_user(app)
    other = make_user(app)
    assert client.put(URL, headers=owner.headers, json=body()).status_code == 200
    resp = client.put(URL, headers=other.headers, json=body(real_name="冒名"))
    assert resp.status_code == 409
    assert resp.get_json() == {
        "code": 409,
        "status": "Conflict",
        "error": "id_number_taken",
        "message": "该身份证号已被其他账号使用",
    }
    (row,) = volunteer_rows(app)
    assert row.user_id == owner.id and row.real_name == "陈晓"
    assert client.get("/api/v1/me", headers=other.headers).get_json()["volunteer"] is None


def test_same_id_number_with_lowercase_x_is_the_same_person(app, client):
    owner = make_user(app)
    other = make_user(app)
    assert client.put(URL, headers=owner.headers, json=body(id_number=VALID_ID_X, birth_date=...)).status_code == 200
    resp = client.put(URL, headers=other.headers, json=body(id_number=VALID_ID_X.lower(), birth_date=...))
    assert resp.status_code == 409 and resp.get_json()["error"] == "id_number_taken"


def test_full_width_digits_are_the_same_id_number(app, client):
    """No way round de-duplication by typing the number in full-width digits."""
    owner = make_user(app)
    other = make_user(app)
    assert client.put(URL, headers=owner.headers, json=body()).status_code == 200
    full_width = VALID_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    resp = client.put(URL, headers=other.headers, json=body(id_number=full_width))
    assert resp.status_code == 409 and resp.get_json()["error"] == "id_number_taken"


def test_failed_update_keeps_the_old_profile(app, client):
    owner = make_user(app)
    other = make_user(app)
    client.put(URL, headers=owner.headers, json=body())
    client.put(URL, headers=other.headers, json=body(id_number=VALID_ID_X, birth_date=..., real_name="原来"))
    resp = client.put(URL, headers=other.headers, json=body(real_name="改名"))
    assert resp.status_code == 409
    rows = {r.user_id: r for r in volunteer_rows(app)}
    assert rows[other.id].real_name == "原来" and rows[other.id].id_masked == "1101**********002X"


def test_needs_a_token(client):
    resp = client.put(URL, json=body())
    assert resp.status_code == 401 and resp.get_json()["error"] == "authorization_required"


# --- ID number validation (table-driven) ------------------------------------------


@pytest.mark.parametrize(
    ("id_number", "message"),
    [
        ("33020319900101123", "须为 18 位"),  # 17 characters
        ("3302031990010112", "须为 18 位"),
        ("33020319900101123A", "须为 17 位数字加 1 位数字或 X"),
        ("3302031990O101123X", "须为 17 位数字加 1 位数字或 X"),
        ("330203 9900101123X", "须为 17 位数字加 1 位数字或 X"),
        ("030203199001011230", "地区码无效"),
        ("330203199002301233", "出生日期无效"),  # 30 February
        ("330203199013011233", "出生日期无效"),  # month 13
        ("330203199001001233", "出生日期无效"),  # day 0
        ("330203189912311233", "出生日期无效"),  # before 1900
        ("330203203001011233", "出生日期无效"),  # in the future
        ("330203199001011237", "校验位错误"),
        ("330203199001011230", "校验位错误"),
        ("11010519491231002Y", "须为 17 位数字加 1 位数字或 X"),
        ("110105194912310021", "校验位错误"),  # X expected
    ],
)
def test_invalid_id_numbers(app, client, id_number, message):
    user = make_user(app)
    resp = client.put(URL, headers=user.headers, json=body(id_number=id_number, birth_date=...))
    assert_422(resp, "id_number", contains=message)
    assert volunteer_rows(app) == []


def test_id_number_too_long_is_422(app, client):
    user = make_user(app)
    assert_422(client.put(URL, headers=user.headers, json=body(id_number=VALID_ID + "1")), "id_number")


def test_leap_day_birth_date_is_valid(app, client):
    user = make_user(app)
    # An adult born on a leap day (a child would need a guardian's consent: tests/test_minors.py).
    resp = client.put(
        URL, headers=user.headers, json=body(id_number=id_number(1, born="20000229"), birth_date="2000-02-29")
    )
    assert resp.status_code == 200, resp.get_json()


def test_birth_date_in_the_future_by_the_app_clock(app, client):
    """'The future' is decided by app.clock, so tests can move it."""
    clock.freeze(datetime(2024, 2, 28, 12, 0))
    user = make_user(app)
    resp = client.put(URL, headers=user.headers, json=body(id_number="330203202402290015", birth_date=...))
    assert_422(resp, "id_number", contains="出生日期无效")


def test_birth_date_must_match_the_id_number(app, client):
    user = make_user(app)
    assert_422(client.put(URL, headers=user.headers, json=body(birth_date="1991-01-01")), "birth_date")


# --- other fields ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"district": "shanghai"}, "district"),
        ({"district": ...}, "district"),
        ({"real_name": ""}, "real_name"),
        ({"real_name": ...}, "real_name"),
        ({"id_number": ...}, "id_number"),
        ({"real_name": "名" * 41}, "real_name"),
        ({"gender": "x"}, "gender"),
        ({"skills": ["a", "a"]}, "skills"),
        ({"skills": [f"s{i}" for i in range(21)]}, "skills"),
        ({"skills": [""]}, "skills"),
        ({"skills": "elderly"}, "skills"),
        ({"skills": ["elderly", "陪伴"]}, "skills"),
        ({"skills": ["Elderly"]}, "skills"),
        ({"home": {"lat": 91, "lng": 121}}, "home"),
        ({"home": {"lat": 29}}, "home"),
        ({"home": {"lat": 29, "lng": 121, "alt": 3}}, "home"),
        ({"push_radius_km": 0.1}, "push_radius_km"),
        ({"push_radius_km": 51}, "push_radius_km"),
        ({"push_radius_km": "NaN"}, "push_radius_km"),
        ({"birth_date": "1990-13-01"}, "birth_date"),
        ({"volunteer_no": "NB1"}, "volunteer_no"),
        ({"verified": True}, "verified"),
    ],
)
def test_invalid_fields(app, client, overrides, field):
    user = make_user(app)
    assert_422(client.put(URL, headers=user.headers, json=body(**overrides)), field)
    assert volunteer_rows(app) == []


def test_every_ningbo_district_is_accepted(app, client):
    assert len(NINGBO_DISTRICTS) == 10
    assert tuple(app.config["DISTRICTS"]) == NINGBO_DISTRICTS
    for i, district in enumerate(NINGBO_DISTRICTS):
        user = make_user(app)
        resp = client.put(URL, headers=user.headers, json=body(id_number=id_number(i), district=district))
        assert resp.status_code == 200, (district, resp.get_json())
        assert resp.get_json()["district"] == district


def test_district_list_is_configurable(app, db_url):
    custom = create_app({**_config_dict(), "SQLALCHEMY_DATABASE_URI": db_url, "DISTRICTS": ("lishui", "jinhua")})
    client = custom.test_client()
    user = make_user(custom)
    rejected = client.put(URL, headers=user.headers, json=body(district="haishu"))
    assert_422(rejected, "district", contains="lishui")
    accepted = client.put(URL, headers=user.headers, json=body(district="jinhua"))
    assert accepted.status_code == 200 and accepted.get_json()["district"] == "jinhua"
    with custom.app_context():
        db.engine.dispose()


def test_districts_from_the_environment(monkeypatch):
    from app.config import env_list

    monkeypatch.setenv("DISTRICTS", " lishui , jinhua,,")
    assert env_list("DISTRICTS", NINGBO_DISTRICTS) == ("lishui", "jinhua")
    monkeypatch.setenv("DISTRICTS", "")
    assert env_list("DISTRICTS", NINGBO_DISTRICTS) == NINGBO_DISTRICTS


# --- star level (星级志愿者) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "minutes", "level"),
    [
        (0, 0, 0),
        (99, 59, 0),
        (100, 0, 1),
        (299, 59, 1),
        (300, 0, 2),
        (599, 59, 2),
        (600, 0, 3),
        (999, 59, 3),
        (1000, 0, 4),
        (1499, 59, 4),
        (1500, 0, 5),
        (20000, 0, 5),
    ],
)
def test_star_level_for_minutes(hours, minutes, level):
    assert star_level(hours * 60 + minutes) == level


def test_star_thresholds():
    assert STAR_THRESHOLDS_HOURS == (100, 300, 600, 1000, 1500)


@pytest.mark.parametrize(
    ("credit_minutes", "honor_minutes", "level", "credit_hours", "honor_hours"),
    [
        (0, 0, 0, 0.0, 0.0),
        (99 * 60, 59, 0, 99.0, 1.0),
        (60 * 60, 40 * 60, 1, 60.0, 40.0),  # credit + honor together reach 100 h
        (299 * 60 + 59, 0, 1, 300.0, 0.0),  # rounding for display does not promote
        (200 * 60, 100 * 60, 2, 200.0, 100.0),
        (600 * 60, 0, 3, 600.0, 0.0),
        (0, 1000 * 60, 4, 0.0, 1000.0),
        (1000 * 60, 500 * 60, 5, 1000.0, 500.0),
        (90, 0, 0, 1.5, 0.0),
    ],
)
def test_star_level_in_the_api(app, client, credit_minutes, honor_minutes, level, credit_hours, honor_hours):
    user = make_user(app)
    client.put(URL, headers=user.headers, json=body())
    with app.app_context():
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == user.id)
            .values(credit_minutes=credit_minutes, honor_minutes=honor_minutes)
        )
        db.session.commit()
    data = client.get("/api/v1/me", headers=user.headers).get_json()["volunteer"]
    assert data["star_level"] == level
    assert data["credit_hours"] == credit_hours
    assert data["honor_hours"] == honor_hours


def test_birth_date_is_a_date(app, client):
    user = make_user(app)
    client.put(URL, headers=user.headers, json=body())
    (row,) = volunteer_rows(app)
    assert row.birth_date == date(1990, 1, 1)
