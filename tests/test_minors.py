"""A volunteer under 14 registers with a guardian's consent (监护人同意)."""

from __future__ import annotations

from datetime import timedelta

from app import clock
from app.clock import local_date
from app.extensions import db
from app.models import Volunteer
from tests.factories import id_number, make_user
from tests.helpers import assert_error, sms_code

URL = "/api/v1/me/volunteer"


def child_id(years: int, days: int = 0) -> str:
    """A valid ID number of someone ``years`` old today (plus ``days``)."""
    today = local_date(clock.utcnow())
    born = today.replace(year=today.year - years) - timedelta(days=days)
    return id_number(7, born=born.strftime("%Y%m%d"))


def profile(number: str, **extra) -> dict:
    return {"real_name": "王小明", "id_number": number, "district": "haishu", **extra}


def test_under_fourteen_needs_a_guardian(app, client):
    child = make_user(app)
    body = assert_error(
        client.put(URL, headers=child.headers, json=profile(child_id(13, 300))), 422, "guardian_required"
    )
    assert body["errors"]["json"]["guardian"]
    with app.app_context():
        assert db.session.query(Volunteer).count() == 0


def test_fourteen_today_needs_none(app, client):
    adult = make_user(app)
    assert client.put(URL, headers=adult.headers, json=profile(child_id(14))).status_code == 200


def test_a_guardians_code_lets_a_child_register(app, client):
    child = make_user(app)
    code = sms_code(app, client, "13700001111", "guardian_consent")
    guardian = {"name": "王大明", "phone": "13700001111", "relation": "父亲", "sms_code": code}
    resp = client.put(URL, headers=child.headers, json=profile(child_id(10), guardian=guardian))
    assert resp.status_code == 200, resp.get_json()
    kept = resp.get_json()["guardian"]
    assert kept["name"] == "王大明" and kept["relation"] == "父亲" and kept["phone_masked"] == "137****1111"
    assert kept["consented_at"]
    # Updating the profile later needs no new code; a new ID number does.
    again = client.put(URL, headers=child.headers, json=profile(child_id(10), skills=["elderly"]))
    assert again.status_code == 200 and again.get_json()["guardian"]["name"] == "王大明"
    other = client.put(URL, headers=child.headers, json=profile(id_number(8, born="20200101")))
    assert_error(other, 422, "guardian_required")


def test_a_guardians_consent_needs_the_right_code_from_another_phone(app, client):
    child = make_user(app, phone="+8613900001234")
    code = sms_code(app, client, "13700001111", "guardian_consent")
    wrong = {"name": "王大明", "phone": "13700001111", "relation": "父亲", "sms_code": "000000"}
    assert_error(
        client.put(URL, headers=child.headers, json=profile(child_id(9), guardian=wrong)), 422, "invalid_sms_code"
    )
    clock.advance(timedelta(seconds=61))
    own_code = sms_code(app, client, "13900001234", "guardian_consent")
    own = {"name": "我自己", "phone": "13900001234", "relation": "监护人", "sms_code": own_code}
    assert_error(
        client.put(URL, headers=child.headers, json=profile(child_id(9), guardian=own)), 422, "validation_error"
    )
    right = {**wrong, "sms_code": code}
    assert client.put(URL, headers=child.headers, json=profile(child_id(9), guardian=right)).status_code == 200
