"""微呼百应 — nearby alerts: when a wish opens, the volunteers around it hear of it.

A volunteer is told when all hold:

- they left ``nearby_alerts`` on and did not post the wish themself;
- their home lies within their own ``push_radius_km`` of the wish (at most
  50 km: no search goes beyond a 50 km box around the wish);
- their skills share a tag with the wish, when the wish has tags;
- they have had fewer than 3 such alerts today (midnight in their time zone,
  ``DEFAULT_TIMEZONE`` when they set none).

At most 500 volunteers per wish, nearest first. The search walks outwards in
rings (1, 3, 10, 50 km) and in pages of 1,000 volunteers ordered by distance,
and stops as soon as 500 are found, so a wish in a busy district never reads
the whole city's volunteers; each page is a range of the ``(home_lat,
home_lng)`` index. The alerts go out with one INSERT per 1,000 rows. Each
row's dedupe key names the wish, so calling this again (the scheduler does
when a released wish reopens) never alerts anyone twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import sqlalchemy as sa

from app.clock import local_midnight, utcnow
from app.extensions import db
from app.geo import bounding_box, distance_km_sql
from app.models import Claim, Notification, Posting, User, Volunteer
from app.policy import POLICIES
from notifications import notify_each

KIND = "nearby_posting"
MAX_RADIUS_KM = 50.0
RINGS_KM = (1.0, 3.0, 10.0, MAX_RADIUS_KM)
DAILY_LIMIT = 3
PER_POSTING_LIMIT = 500
_PAGE = 1000


def alert_nearby_volunteers(posting: Posting) -> int:
    """Queue ``nearby_posting`` for the volunteers near an open wish; returns how
    many were queued now. Runs in the caller's transaction: call it last, just
    before the commit (on PostgreSQL it holds a transaction lock so that two
    wishes opening at once cannot push a volunteer past the daily limit).

    Volunteers told of this wish before (it reopened) count towards the 500
    where they come up in the nearest-first walk, and are not told again.
    """
    if not POLICIES[posting.kind].nearby_alerts or posting.status != "open" or posting.lat is None:
        return 0
    _serialise_alerts()
    dedupe = f"posting:{posting.id}"
    tags = set(posting.tag_names)
    # Whoever held a claim on it knows it already (a released claimant lost it
    # for being overdue: "a wish near you" would be noise).
    past_claimants = set(db.session.scalars(sa.select(Claim.user_id).where(Claim.posting_id == posting.id)))
    chosen: dict[int, dict] = {}
    reached = 0  # volunteers this wish has reached, earlier or now
    for page in _nearest_volunteers(posting):
        eligible = [
            (user_id, km, tz)
            for user_id, km, skills, tz, wants_alerts in page
            if wants_alerts and user_id not in past_claimants and (not tags or tags.intersection(skills or ()))
        ]
        if not eligible:
            continue
        already = _already_alerted(dedupe, [user_id for user_id, _, _ in eligible])
        today = _alerts_today({user_id: tz for user_id, _, tz in eligible if user_id not in already})
        for user_id, km, _ in eligible:
            if user_id in already:
                reached += 1
            elif today[user_id] < DAILY_LIMIT:
                chosen[user_id] = {"distance_km": round(km, 1)}
                reached += 1
            if reached >= PER_POSTING_LIMIT:
                break
        if reached >= PER_POSTING_LIMIT:
            break
    if not chosen:
        return 0
    return notify_each(KIND, chosen, dedupe=dedupe, title=posting.title, posting_id=posting.id)


def _serialise_alerts() -> None:
    """PostgreSQL: one alerting transaction at a time, so the daily count each one
    reads includes the rows of the one before. SQLite has a single writer already."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("yz:nearby_alerts"))))


def _nearest_volunteers(posting: Posting) -> Iterator[list[tuple]]:
    """Pages of (user id, distance km, skills, time zone, nearby_alerts) of the
    volunteers whose own radius covers the wish, nearest first (ties by id)."""
    inner_km = 0.0
    for outer_km in RINGS_KM:
        last = None
        while True:
            page = _ring_page(posting, inner_km, outer_km, last)
            if page:
                yield page
            if len(page) < _PAGE:
                break
            last = (page[-1][1], page[-1][0])
        inner_km = outer_km


def _ring_page(posting: Posting, inner_km: float, outer_km: float, last: tuple[float, int] | None) -> list[tuple]:
    """One page of the ring inner_km < distance <= outer_km, after ``last``.

    The inner query reads only the columns of ``ix_volunteers_home`` (an
    index-only scan on PostgreSQL); users and skills are read for the page.
    """
    distance = distance_km_sql(Volunteer.home_lat, Volunteer.home_lng, posting.lat, posting.lng)
    min_lat, max_lat, min_lng, max_lng = bounding_box(posting.lat, posting.lng, outer_km)
    where = [
        Volunteer.home_lat.between(min_lat, max_lat),
        Volunteer.home_lng.between(min_lng, max_lng),
        Volunteer.user_id != posting.author_id,
        distance <= Volunteer.push_radius_km,
        distance <= outer_km,
    ]
    if inner_km:
        # beyond the inner ring only the volunteers with a wider radius qualify
        where += [Volunteer.push_radius_km > inner_km, distance > inner_km]
    if last is not None:
        last_km, last_id = last
        where.append(sa.or_(distance > last_km, sa.and_(distance == last_km, Volunteer.user_id > last_id)))
    page = (
        sa.select(Volunteer.user_id.label("user_id"), distance.label("km"))
        .where(*where)
        .order_by(distance, Volunteer.user_id)
        .limit(_PAGE)
        .subquery("page")
    )
    rows = db.session.execute(
        sa.select(page.c.user_id, page.c.km, Volunteer.skills, User.timezone, User.nearby_alerts)
        .join(Volunteer, Volunteer.user_id == page.c.user_id)
        .join(User, User.id == page.c.user_id)
        .order_by(page.c.km, page.c.user_id)
    )
    return [tuple(row) for row in rows]


def _already_alerted(dedupe: str, user_ids: list[int]) -> set[int]:
    """Users who already have this wish's alert (by its unique dedupe keys)."""
    keys = [f"{KIND}:{dedupe}:{user_id}"[:160] for user_id in user_ids]
    return set(db.session.scalars(sa.select(Notification.user_id).where(Notification.dedupe_key.in_(keys))))


def _alerts_today(zones: dict[int, str | None]) -> Counter[int]:
    """How many nearby alerts each user has had since their local midnight."""
    if not zones:
        return Counter()
    now = utcnow()
    midnights = {user_id: local_midnight(now, tz) for user_id, tz in zones.items()}
    rows = db.session.execute(
        sa.select(Notification.user_id, Notification.created_at).where(
            Notification.user_id.in_(list(zones)),
            Notification.kind == KIND,
            Notification.created_at >= min(midnights.values()),
        )
    )
    return Counter(user_id for user_id, created_at in rows if created_at >= midnights[user_id])
