"""微呼百应 — nearby alerts: when a posting that needs people opens, the volunteers around it hear of it.

The kinds matched to volunteers (``matched_to_volunteers`` in the rulebook:
wish, project, charity) alert when they open — a project or charity only with
places free: a full one is not ``open``. One that opens again because a place
was given back (app.services.claims.places) alerts again, and only those not
told before hear of it.

A volunteer is told when all hold:

- they left ``nearby_alerts`` on, did not post it, and never held a claim on it;
- their home lies within their own ``push_radius_km`` of it (at most 50 km: no
  search goes beyond a 50 km box around it);
- they have had fewer than 3 such alerts today (midnight in their time zone,
  ``DEFAULT_TIMEZONE`` when they set none).

At most 500 volunteers per posting, skills first: those holding a skill the
posting's tags name (app.skills), nearest first, then everyone else in reach,
nearest first. Each pass walks outwards in rings (1, 3, 10, 50 km) and in pages
of 1,000 volunteers ordered by distance, and stops as soon as 500 are reached,
so a posting in a busy district never reads the whole city's volunteers: the
skilled pass is ranges of ``ix_volunteer_skills_skill_home`` (one per skill),
the other ranges of ``ix_volunteers_home``. The alerts go out with one INSERT
per 1,000 rows, muted ones and quiet hours as ``notify`` handles them. Each
row's dedupe key names the posting, so calling this again (a posting that
reopens) never alerts anyone twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from itertools import chain

import sqlalchemy as sa

from app.clock import local_midnight, utcnow
from app.extensions import db
from app.geo import RINGS_KM, bounding_box, distance_km_sql
from app.models import Claim, Notification, Posting, User, Volunteer, VolunteerSkill
from app.policy import POLICIES
from app.skills import vocabulary
from notifications import notify_each

KIND = "nearby_posting"
DAILY_LIMIT = 3
PER_POSTING_LIMIT = 500
_PAGE = 1000


def alert_nearby_volunteers(posting: Posting) -> int:
    """Queue ``nearby_posting`` for the volunteers near an open posting that needs
    people; returns how many were queued now. Runs in the caller's transaction:
    call it last, just before the commit (on PostgreSQL it holds a transaction
    lock so that two postings opening at once cannot push a volunteer past the
    daily limit).

    Volunteers told of this posting before (it reopened) count towards the 500
    where they come up in the walk, and are not told again.
    """
    if not POLICIES[posting.kind].matched_to_volunteers or posting.status != "open" or posting.lat is None:
        return 0
    _serialise_alerts()
    dedupe = f"posting:{posting.id}"
    skills = vocabulary().codes_named_by(posting.tag_names)
    # Whoever held a claim on it knows it already (a released claimant lost it
    # for being overdue, a withdrawn one gave it up: "near you" would be noise).
    past_claimants = set(db.session.scalars(sa.select(Claim.user_id).where(Claim.posting_id == posting.id)))
    walk = chain(_reachable(posting, skills), _reachable(posting, None)) if skills else _reachable(posting, None)
    seen: set[int] = set()  # a skilled volunteer comes up again in the second pass
    chosen: dict[int, dict] = {}
    reached = 0  # volunteers this posting has reached, earlier or now
    for page in walk:
        eligible = []
        for user_id, km, tz, wants_alerts in page:
            if user_id in seen:
                continue
            seen.add(user_id)
            if wants_alerts and user_id not in past_claimants:
                eligible.append((user_id, km, tz))
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


def _reachable(posting: Posting, skills: list[str] | None) -> Iterator[list[tuple]]:
    """Pages of (user id, distance km, time zone, nearby_alerts) of the volunteers
    whose own radius covers the posting, nearest first (ties by id); with
    ``skills``, only those holding one of them (a volunteer holding two comes
    up twice)."""
    inner_km = 0.0
    for outer_km in RINGS_KM:
        last = None
        while True:
            page = _ring_page(posting, skills, inner_km, outer_km, last)
            if page:
                yield page
            if len(page) < _PAGE:
                break
            last = (page[-1][1], page[-1][0])
        inner_km = outer_km


def _ring_page(
    posting: Posting, skills: list[str] | None, inner_km: float, outer_km: float, last: tuple[float, int] | None
) -> list[tuple]:
    """One page of the ring inner_km < distance <= outer_km, after ``last``.

    The inner query reads only the columns of ``ix_volunteers_home`` (or, with
    ``skills``, of ``ix_volunteer_skills_skill_home``): an index-only scan on
    PostgreSQL; the users are read for the page.
    """
    homes = VolunteerSkill if skills else Volunteer
    distance = distance_km_sql(homes.home_lat, homes.home_lng, posting.lat, posting.lng)
    min_lat, max_lat, min_lng, max_lng = bounding_box(posting.lat, posting.lng, outer_km)
    where = [
        homes.home_lat.between(min_lat, max_lat),
        homes.home_lng.between(min_lng, max_lng),
        homes.user_id != posting.author_id,
        distance <= homes.push_radius_km,
        distance <= outer_km,
    ]
    if skills:
        where.append(VolunteerSkill.skill.in_(skills))
    if inner_km:
        # beyond the inner ring only the volunteers with a wider radius qualify
        where += [homes.push_radius_km > inner_km, distance > inner_km]
    if last is not None:
        last_km, last_id = last
        where.append(sa.or_(distance > last_km, sa.and_(distance == last_km, homes.user_id > last_id)))
    page = (
        sa.select(homes.user_id.label("user_id"), distance.label("km"))
        .where(*where)
        .order_by(distance, homes.user_id)
        .limit(_PAGE)
        .subquery("page")
    )
    rows = db.session.execute(
        sa.select(page.c.user_id, page.c.km, User.timezone, User.nearby_alerts)
        .join(User, User.id == page.c.user_id)
        .order_by(page.c.km, page.c.user_id)
    )
    return [tuple(row) for row in rows]


def _already_alerted(dedupe: str, user_ids: list[int]) -> set[int]:
    """Users who already have this posting's alert (by its unique dedupe keys)."""
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
