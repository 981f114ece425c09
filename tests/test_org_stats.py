"""An org's dashboard: GET /orgs/{id}/stats, its figures per local week or month."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Claim, ServiceRecord
from app.policy import DONE_CLAIM_STATUSES, PUBLIC_POSTING_STATUSES, hours
from app.services.org_stats import period_start
from tests.factories import ROLES, make_claim, make_posting, make_roles, make_volunteer
from tests.moments import YEAR, monday_on_or_after

NOW = datetime(YEAR, 6, 30, 4, 0, tzinfo=UTC)
ZERO = {"postings_opened": 0, "claims": 0, "wishes_fulfilled": 0, "credit_hours": 0.0, "volunteers_active": 0}


def sh(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Ningbo wall-clock time in YEAR as UTC (UTC+8, no DST)."""
    return datetime(YEAR, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


@pytest.fixture
def roles(app):
    clock.freeze(NOW)
    return make_roles(app)


def stats(client, roles, query: str, role: str = "coordinator"):
    resp = client.get(f"/api/v1/orgs/{roles['org_id']}/stats?{query}", headers=roles["headers"][role])
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["series"]


def record(app, org_id, volunteer_id, ended_at, minutes=60, kind="credit", status="recorded") -> None:
    with app.app_context():
        db.session.add(
            ServiceRecord(
                volunteer_id=volunteer_id,
                org_id=org_id,
                kind=kind,
                status=status,
                activity="活动",
                minutes=minutes,
                started_at=ended_at - timedelta(minutes=minutes),
                ended_at=ended_at,
                created_at=ended_at,
            )
        )
        db.session.commit()


def test_every_period_is_there_with_zeros(client, roles):
    months = stats(client, roles, f"from={YEAR}-01-15&to={YEAR}-04-02&interval=month")
    assert [p["period_start"] for p in months] == [f"{YEAR}-01-01", f"{YEAR}-02-01", f"{YEAR}-03-01", f"{YEAR}-04-01"]
    assert all({k: v for k, v in p.items() if k != "period_start"} == ZERO for p in months)
    monday = monday_on_or_after(date(YEAR, 3, 2))
    wednesday, two_weeks_on = monday + timedelta(days=2), monday + timedelta(days=14)
    weeks = stats(client, roles, f"from={wednesday}&to={two_weeks_on}&interval=week")
    assert [p["period_start"] for p in weeks] == [str(monday + timedelta(weeks=n)) for n in range(3)]  # Mondays


def test_defaults_are_the_last_twelve_months(client, roles):
    series = stats(client, roles, "")
    assert [p["period_start"] for p in series][0] == f"{YEAR - 1}-07-01"
    assert [p["period_start"] for p in series][-1] == f"{YEAR}-06-01"
    assert len(series) == 12
    weeks = stats(client, roles, "interval=week")
    today = NOW.date()  # 30 June, 12:00 in Ningbo
    assert len(weeks) == 12 and weeks[-1]["period_start"] == str(today - timedelta(days=today.weekday()))


def test_local_weeks_start_on_monday_in_ningbo(app, client, roles):
    volunteer = roles["volunteer"].id
    monday = monday_on_or_after(date(YEAR, 3, 9))  # and the Sunday before it, both in March
    record(app, roles["org_id"], volunteer, sh(3, monday.day - 1, 23, 30), minutes=30)  # Sunday night: the week before
    record(app, roles["org_id"], volunteer, sh(3, monday.day, 0, 30), minutes=90)  # Monday 00:30 (Sunday 16:30 UTC)
    record(app, roles["org_id"], volunteer, sh(3, 31, 23, 0), minutes=60)  # the last evening of March
    record(app, roles["org_id"], volunteer, sh(4, 1, 7, 0), minutes=6)  # 1 April in Ningbo, 31 March in UTC
    week_before, sunday = monday - timedelta(days=7), monday + timedelta(days=6)
    weeks = stats(client, roles, f"from={week_before}&to={sunday}&interval=week")
    assert [(p["period_start"], p["credit_hours"], p["volunteers_active"]) for p in weeks] == [
        (str(week_before), 0.5, 1),
        (str(monday), 1.5, 1),
    ]
    months = stats(client, roles, f"from={YEAR}-03-01&to={YEAR}-04-30")
    assert [(p["period_start"], p["credit_hours"]) for p in months] == [(f"{YEAR}-03-01", 3.0), (f"{YEAR}-04-01", 0.1)]
    # the range counts only its own days
    cut = stats(client, roles, f"from={monday}&to={YEAR}-03-31")
    assert [(p["period_start"], p["credit_hours"]) for p in cut] == [(f"{YEAR}-03-01", 2.5)]


def test_each_figure_counts_what_its_definition_says(app, client, roles):
    org_id, coordinator = roles["org_id"], roles["coordinator"]
    volunteer, other = roles["volunteer"], make_volunteer(app)
    clock.freeze(sh(3, 3, 10))
    wish = make_posting(app, coordinator, org_id=org_id)
    project = make_posting(app, coordinator, kind="project", org_id=org_id)
    make_posting(app, coordinator, org_id=org_id, status="cancelled")  # never counted
    make_posting(app, coordinator, org_id=org_id, status="pending_review")  # not public
    make_posting(app, coordinator, org_id=roles["other_org_id"])  # another org's
    clock.freeze(sh(3, 20, 10))
    make_claim(app, project, volunteer)
    make_claim(app, project, other, status="withdrawn")
    clock.freeze(sh(4, 2, 10))
    make_claim(app, wish, other, status="fulfilled")  # fulfilled 2 April
    record(app, org_id, other.id, sh(4, 5, 9), minutes=45)
    record(app, org_id, volunteer.id, sh(4, 6, 9), minutes=30, kind="honor")  # active, but no credit hours
    record(app, roles["other_org_id"], volunteer.id, sh(4, 6, 9), minutes=600)  # another org's
    record(app, org_id, other.id, sh(4, 7, 9), minutes=300, status="pending")  # not the org's record yet
    record(app, org_id, other.id, sh(4, 8, 9), minutes=300, status="rejected")  # never
    clock.freeze(NOW)
    series = stats(client, roles, f"from={YEAR}-03-01&to={YEAR}-04-30")
    assert series == [
        {"period_start": f"{YEAR}-03-01", **ZERO, "postings_opened": 2, "claims": 2},
        {"period_start": f"{YEAR}-04-01", **ZERO, "claims": 1, "wishes_fulfilled": 1, "credit_hours": 0.8,
         "volunteers_active": 2},
    ]  # fmt: skip


def test_the_series_equal_the_sums_of_what_they_summarise(app, client, roles):
    """Random postings, claims and records over half a year; each period's figures
    are recomputed in Python from the rows and must match."""
    rng = random.Random(11)
    org_id, coordinator = roles["org_id"], roles["coordinator"]
    volunteers = [roles["volunteer"], *(make_volunteer(app) for _ in range(4))]
    start = sh(1, 1, 0)
    for _ in range(30):
        clock.freeze(start + timedelta(minutes=rng.randrange(0, 180 * 24 * 60)))
        status = rng.choice(["open", "claimed", "closed", "expired", "cancelled", "pending_review"])
        kind = rng.choice(["wish", "project"])
        posting = make_posting(app, coordinator, kind=kind, org_id=org_id, status=status)
        for claimant in rng.sample(volunteers, rng.randint(0, 1 if kind == "wish" else 3)):
            clock.advance(timedelta(hours=rng.randint(1, 300)))
            status = rng.choice(["active", "fulfilled", "confirmed", "withdrawn"])
            done = {"fulfilled_at": clock.utcnow() - timedelta(hours=2)} if status == "confirmed" else {}
            make_claim(app, posting, claimant, status=status, **done)
    for _ in range(60):
        ended = start + timedelta(minutes=rng.randrange(0, 180 * 24 * 60))
        record(
            app,
            org_id,
            rng.choice(volunteers).id,
            ended,
            minutes=rng.randint(1, 240),
            kind=rng.choice(["credit", "credit", "honor"]),
        )
    clock.freeze(NOW)

    for interval in ("week", "month"):
        series = stats(client, roles, f"from={YEAR}-01-01&to={YEAR}-06-30&interval={interval}")
        expected = _recompute(app, org_id, interval)
        assert {p["period_start"] for p in series} >= set(expected)
        for period in series:
            figures = expected.get(period["period_start"], {})
            assert period["postings_opened"] == figures.get("postings_opened", 0), (interval, period)
            assert period["claims"] == figures.get("claims", 0), (interval, period)
            assert period["wishes_fulfilled"] == figures.get("wishes_fulfilled", 0), (interval, period)
            assert period["credit_hours"] == hours(figures.get("credit_minutes", 0)), (interval, period)
            assert period["volunteers_active"] == len(figures.get("volunteers", ())), (interval, period)
    monthly = stats(client, roles, f"from={YEAR}-01-01&to={YEAR}-06-30")
    with app.app_context():
        total_claims = db.session.scalar(sa.select(sa.func.count()).select_from(Claim))
    assert sum(p["claims"] for p in monthly) == total_claims


def _recompute(app, org_id: int, interval: str) -> dict[str, dict]:
    from app.models import Posting

    def local_period(value: datetime) -> str:
        local = (value.astimezone(UTC) + timedelta(hours=8)).date()
        return period_start(local, interval).isoformat()

    figures: dict[str, dict] = defaultdict(lambda: {"volunteers": set()})
    with app.app_context():
        for posting in db.session.scalars(sa.select(Posting).where(Posting.org_id == org_id)):
            if posting.status in PUBLIC_POSTING_STATUSES:
                bucket = figures[local_period(posting.created_at)]
                bucket["postings_opened"] = bucket.get("postings_opened", 0) + 1
        claims = db.session.execute(
            sa.select(Claim, Posting.kind).join(Posting, Posting.id == Claim.posting_id).where(Posting.org_id == org_id)
        ).all()
        for claim, kind in claims:
            bucket = figures[local_period(claim.claimed_at)]
            bucket["claims"] = bucket.get("claims", 0) + 1
            if kind == "wish" and claim.status in DONE_CLAIM_STATUSES:
                done = figures[local_period(claim.fulfilled_at)]
                done["wishes_fulfilled"] = done.get("wishes_fulfilled", 0) + 1
        for rec in db.session.scalars(sa.select(ServiceRecord).where(ServiceRecord.org_id == org_id)):
            bucket = figures[local_period(rec.ended_at)]
            bucket["volunteers"].add(rec.volunteer_id)
            if rec.kind == "credit":
                bucket["credit_minutes"] = bucket.get("credit_minutes", 0) + rec.minutes
    return dict(figures)


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_the_figures(client, roles, role):
    resp = client.get(f"/api/v1/orgs/{roles['org_id']}/stats", headers=roles["headers"][role])
    if role in ("coordinator", "admin"):
        assert resp.status_code == 200 and len(resp.get_json()["series"]) == 12
    elif role == "anonymous":
        assert (resp.status_code, resp.get_json()["error"]) == (401, "authorization_required")
    else:
        assert (resp.status_code, resp.get_json()["error"]) == (403, "coordinator_required")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("interval=day", "interval"),
        (f"from={YEAR}-13-01", "from"),
        (f"from={YEAR}-03-02&to={YEAR}-03-01", "from"),
        (f"from=2000-01-01&to={YEAR}-01-01&interval=week", "from"),
    ],
)
def test_bad_queries_are_422(client, roles, query, field):
    resp = client.get(f"/api/v1/orgs/{roles['org_id']}/stats?{query}", headers=roles["headers"]["admin"])
    assert resp.status_code == 422, resp.get_json()
    assert resp.get_json()["error"] == "validation_error"
    assert field in resp.get_json()["errors"]["query"]


def test_a_missing_org_is_404(client, roles):
    resp = client.get("/api/v1/orgs/2000000000/stats", headers=roles["headers"]["admin"])
    assert (resp.status_code, resp.get_json()["error"]) == (404, "not_found")


def test_period_start():
    monday = monday_on_or_after(date(YEAR, 3, 9))
    assert period_start(monday - timedelta(days=1), "week") == monday - timedelta(days=7)
    assert period_start(monday, "week") == monday
    assert period_start(date(YEAR, 2, 28), "month") == date(YEAR, 2, 1)
