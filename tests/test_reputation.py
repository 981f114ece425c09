"""Reputation: ``volunteer.rating`` from the ratings of confirmed work, shown to the poster on a claim."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import ServiceRecord, Volunteer
from tests.database import recorded
from tests.factories import make_claim, make_posting, make_volunteer


def act(client, account, path, **body):
    resp = client.post(path, json=body, headers=account.headers)
    assert resp.status_code in (200, 201), resp.get_json()
    return resp.get_json()


def done_wish(app, client, poster, volunteer, *, rating: int | None, org_id: int | None = None) -> int:
    """A wish ``volunteer`` took on and marked done; confirmed by ``poster`` with
    ``rating`` (None: left for the scheduler). Returns the claim id."""
    wish = make_posting(app, poster, org_id=org_id)
    claim_id = act(client, volunteer, f"/api/v1/postings/{wish}/claims")["id"]
    act(client, volunteer, f"/api/v1/claims/{claim_id}/fulfil", note="修好了", minutes=60)
    if rating is not None:
        act(client, poster, f"/api/v1/claims/{claim_id}/confirm", rating=rating)
    return claim_id


def rating_on_me(client, account) -> dict:
    return client.get("/api/v1/me", headers=account.headers).get_json()["volunteer"]["rating"]


def test_the_average_is_the_mean_of_the_confirmed_ratings(app, client, people):
    coordinator, volunteer, resident = people["coordinator"], people["volunteer"], people["resident"]
    assert rating_on_me(client, volunteer) == {"average": None, "count": 0}
    ratings = [5, 4, 4]
    for rating in ratings:
        done_wish(app, client, coordinator, volunteer, rating=rating, org_id=people["org_id"])
    # an auto-confirmed claim carries no rating and does not count
    done_wish(app, client, coordinator, volunteer, rating=None, org_id=people["org_id"])
    clock.advance(timedelta(days=app.config["AUTO_CONFIRM_DAYS"], hours=1))
    assert app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"]).exit_code == 0
    # a service the volunteer provides, rated by the resident who booked it, counts for the provider
    service = make_posting(app, volunteer, kind="service", capacity=None)
    booking = act(client, resident, f"/api/v1/postings/{service}/claims")["id"]
    act(client, volunteer, f"/api/v1/claims/{booking}/fulfil", note="理完了", minutes=30)
    act(client, resident, f"/api/v1/claims/{booking}/confirm", rating=2)
    ratings.append(2)

    with app.app_context():
        recorded = db.session.scalars(
            sa.select(ServiceRecord.rating).where(
                ServiceRecord.volunteer_id == volunteer.id, ServiceRecord.rating.is_not(None)
            )
        ).all()
        records = db.session.scalar(
            sa.select(sa.func.count()).select_from(ServiceRecord).where(ServiceRecord.volunteer_id == volunteer.id)
        )
    assert sorted(recorded) == sorted(ratings) and records == 5
    assert rating_on_me(client, volunteer) == {"average": round(sum(ratings) / len(ratings), 2), "count": 4}
    assert rating_on_me(client, volunteer)["average"] == 3.75


def test_ratings_never_count_for_the_one_who_gave_them(app, client, people):
    coordinator, volunteer = people["coordinator"], people["volunteer"]
    make_volunteer(app, coordinator)
    done_wish(app, client, coordinator, volunteer, rating=1, org_id=people["org_id"])
    assert rating_on_me(client, coordinator) == {"average": None, "count": 0}
    assert rating_on_me(client, volunteer) == {"average": 1.0, "count": 1}


def test_the_poster_sees_the_claimants_rating_and_nobody_else_does(app, client, people):
    org_id, coordinator, volunteer, resident = (people[k] for k in ("org_id", "coordinator", "volunteer", "resident"))
    done_wish(app, client, coordinator, volunteer, rating=4, org_id=org_id)
    done_wish(app, client, coordinator, volunteer, rating=5, org_id=org_id)
    project = make_posting(app, coordinator, kind="project", org_id=org_id)
    claim_id = act(client, volunteer, f"/api/v1/postings/{project}/claims")["id"]
    booking = make_claim(app, make_posting(app, coordinator, kind="service", org_id=org_id), resident)

    expected = {"average": 4.5, "count": 2}
    seen = client.get(f"/api/v1/claims/{claim_id}", headers=coordinator.headers).get_json()
    assert seen["volunteer"] == {"id": volunteer.id, "display_name": "小李", "rating": expected}
    listed = client.get(f"/api/v1/postings/{project}/claims", headers=coordinator.headers).get_json()
    assert [item["volunteer"]["rating"] for item in listed["items"]] == [expected]
    # a claimant who is no volunteer has no reputation yet
    theirs = client.get(f"/api/v1/claims/{booking}", headers=coordinator.headers).get_json()
    assert theirs["volunteer"]["rating"] == {"average": None, "count": 0}

    own = client.get(f"/api/v1/claims/{claim_id}", headers=volunteer.headers).get_json()
    assert own["volunteer"] == {"id": volunteer.id, "display_name": "小李"}
    mine = client.get("/api/v1/me/claims", headers=volunteer.headers).get_json()
    assert all("rating" not in item["volunteer"] for item in mine["items"])
    assert client.get(f"/api/v1/claims/{claim_id}", headers=resident.headers).status_code == 404


def test_the_list_of_claims_reads_the_ratings_in_a_fixed_number_of_queries(app, client, people):
    org_id, coordinator = people["org_id"], people["coordinator"]
    project = make_posting(app, coordinator, kind="project", org_id=org_id)

    def statements() -> int:
        with recorded(app) as seen:
            body = client.get(f"/api/v1/postings/{project}/claims", headers=coordinator.headers).get_json()
        assert all("rating" in item["volunteer"] for item in body["items"])
        return len(seen)

    for _ in range(2):
        make_claim(app, project, make_volunteer(app))
    few = statements()
    for _ in range(6):
        make_claim(app, project, make_volunteer(app))
    assert statements() == few


def test_counters_equal_the_records(app, client, people):
    """The counters on the volunteer's row are the sum and count of the rated records."""
    coordinator, volunteer = people["coordinator"], people["volunteer"]
    for rating in (3, 5, 5, 1):
        done_wish(app, client, coordinator, volunteer, rating=rating, org_id=people["org_id"])
    with app.app_context():
        row = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == volunteer.id))
        total, count = db.session.execute(
            sa.select(sa.func.sum(ServiceRecord.rating), sa.func.count(ServiceRecord.rating)).where(
                ServiceRecord.volunteer_id == volunteer.id
            )
        ).one()
        assert (row.rating_total, row.rating_count) == (total, count) == (14, 4)
