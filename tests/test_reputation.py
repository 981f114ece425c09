"""Reputation: ``volunteer.rating`` from the ratings of confirmed work, shown to the poster on a claim."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import ServiceRecord, Volunteer, VolunteerRating
from tests.database import recorded
from tests.factories import make_claim, make_posting, make_user, make_volunteer


def act(client, account, path, **body):
    resp = client.post(path, json=body, headers=account.headers)
    assert resp.status_code in (200, 201), resp.get_json()
    return resp.get_json()


def done_wish(app, client, poster, volunteer, *, rating: int | None, org_id: int | None = None) -> int:
    """A wish ``volunteer`` took on and marked done (an hour's work); confirmed by
    ``poster`` with ``rating`` (None: left for the scheduler). The clock then moves
    on two hours, so the next one is other time. Returns the claim id."""
    wish = make_posting(app, poster, org_id=org_id)
    claim_id = act(client, volunteer, f"/api/v1/postings/{wish}/claims")["id"]
    act(client, volunteer, f"/api/v1/claims/{claim_id}/fulfil", note="修好了", minutes=60)
    if rating is not None:
        act(client, poster, f"/api/v1/claims/{claim_id}/confirm", rating=rating)
    clock.advance(timedelta(hours=2))
    return claim_id


def rating_on_me(client, account) -> dict:
    return client.get("/api/v1/me", headers=account.headers).get_json()["volunteer"]["rating"]


def test_the_average_is_the_mean_over_raters_each_rater_once(app, client, people):
    coordinator, volunteer, resident = people["coordinator"], people["volunteer"], people["resident"]
    assert rating_on_me(client, volunteer) == {"average": None, "count": 0}
    raters = [coordinator, make_user(app), make_user(app)]
    for rater, rating in zip(raters, (5, 4, 4), strict=True):
        done_wish(app, client, rater, volunteer, rating=rating, org_id=people["org_id"])
    assert rating_on_me(client, volunteer) == {"average": 4.33, "count": 3}
    # the same rater again: their latest rating replaces their earlier one, the count stays
    done_wish(app, client, coordinator, volunteer, rating=2, org_id=people["org_id"])
    assert rating_on_me(client, volunteer) == {"average": 3.33, "count": 3}
    # an auto-confirmed claim carries no rating and does not count
    done_wish(app, client, coordinator, volunteer, rating=None, org_id=people["org_id"])
    clock.advance(timedelta(days=app.config["AUTO_CONFIRM_DAYS"], hours=1))
    assert app.test_cli_runner().invoke(args=["jobs", "run", "release_overdue_claims"]).exit_code == 0
    # a service posted without an org records nothing, yet its booking earns the rating (the provider's)
    service = make_posting(app, volunteer, kind="service", capacity=None)
    booking = act(client, resident, f"/api/v1/postings/{service}/claims")["id"]
    act(client, volunteer, f"/api/v1/claims/{booking}/fulfil", note="理完了", minutes=30)
    act(client, resident, f"/api/v1/claims/{booking}/confirm", rating=5)

    with app.app_context():
        ratings = db.session.execute(
            sa.select(VolunteerRating.rater_id, VolunteerRating.rating).where(
                VolunteerRating.volunteer_id == volunteer.id
            )
        ).all()
        records = db.session.scalar(
            sa.select(sa.func.count()).select_from(ServiceRecord).where(ServiceRecord.volunteer_id == volunteer.id)
        )
    assert sorted(ratings) == sorted([(raters[0].id, 2), (raters[1].id, 4), (raters[2].id, 4), (resident.id, 5)])
    assert records == 5  # four confirmed wishes and the auto-confirmed one; none for the org-less service
    assert rating_on_me(client, volunteer) == {"average": 3.75, "count": 4}


def test_ratings_never_count_for_the_one_who_gave_them(app, client, people):
    coordinator, volunteer = people["coordinator"], people["volunteer"]
    make_volunteer(app, coordinator)
    done_wish(app, client, coordinator, volunteer, rating=1, org_id=people["org_id"])
    assert rating_on_me(client, coordinator) == {"average": None, "count": 0}
    assert rating_on_me(client, volunteer) == {"average": 1.0, "count": 1}


def test_the_poster_sees_the_claimants_rating_and_nobody_else_does(app, client, people):
    org_id, coordinator, volunteer, resident = (people[k] for k in ("org_id", "coordinator", "volunteer", "resident"))
    done_wish(app, client, coordinator, volunteer, rating=4, org_id=org_id)
    done_wish(app, client, make_user(app), volunteer, rating=5, org_id=org_id)
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


def test_counters_equal_the_ratings(app, client, people):
    """The counters on the volunteer's row are the sum and count of the raters' latest ratings."""
    coordinator, volunteer = people["coordinator"], people["volunteer"]
    others = [make_user(app) for _ in range(3)]
    for rater, rating in zip([coordinator, *others, coordinator], (3, 5, 5, 1, 4), strict=True):
        done_wish(app, client, rater, volunteer, rating=rating, org_id=people["org_id"])
    with app.app_context():
        row = db.session.scalar(sa.select(Volunteer).where(Volunteer.user_id == volunteer.id))
        total, count = db.session.execute(
            sa.select(sa.func.sum(VolunteerRating.rating), sa.func.count()).where(
                VolunteerRating.volunteer_id == volunteer.id
            )
        ).one()
        assert (row.rating_total, row.rating_count) == (total, count) == (15, 4)
