"""微呼百应 — nearby alerts: when a wish opens, the volunteers around it hear of it.

A volunteer is told when all hold:

- they left ``nearby_alerts`` on and did not post the wish themself;
- their home lies within their own ``push_radius_km`` of the wish (at most
  50 km, so the search is a 50 km box on the volunteers' homes, then the exact
  distance against each volunteer's radius);
- their skills share a tag with the wish, when the wish has tags;
- they have had fewer than 3 such alerts today (midnight in their time zone,
  Asia/Shanghai by default).

At most 500 volunteers per wish, nearest first, written with one INSERT per
1,000 rows. Each row's dedupe key names the wish, so calling this again (the
scheduler does when a released wish reopens) never alerts anyone twice.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from app.clock import utcnow
from app.extensions import db
from app.geo import bounding_box, distance_km_sql
from app.models import Notification, Posting, User, Volunteer
from notifications import notify_each

KIND = "nearby_posting"
MAX_RADIUS_KM = 50.0
DAILY_LIMIT = 3
PER_POSTING_LIMIT = 500
DEFAULT_TIMEZONE = "Asia/Shanghai"
_CHUNK = 1000


def alert_nearby_volunteers(posting: Posting) -> int:
    """Queue ``nearby_posting`` for the volunteers near an open wish; returns how
    many were queued now. Runs in the caller's transaction: call it last, just
    before the commit (on PostgreSQL it holds a transaction lock so that two
    wishes opening at once cannot push a volunteer past the daily limit)."""
    if posting.kind != "wish" or posting.status != "open" or posting.lat is None or posting.lng is None:
        return 0
    _serialise_alerts()
    candidates = _volunteers_in_range(posting)
    if not candidates:
        return 0
    dedupe = f"posting:{posting.id}"
    already = _already_alerted(dedupe, [user_id for user_id, _, _ in candidates])
    room = PER_POSTING_LIMIT - len(already)
    chosen: dict[int, dict] = {}
    fresh = [c for c in candidates if c[0] not in already]
    for start in range(0, len(fresh), _CHUNK):
        if len(chosen) >= room:
            break
        chunk = fresh[start : start + _CHUNK]
        today = _alerts_today({user_id: tz for user_id, _, tz in chunk})
        for user_id, distance, _ in chunk:
            if len(chosen) >= room:
                break
            if today[user_id] < DAILY_LIMIT:
                chosen[user_id] = {"distance_km": round(distance, 1)}
    if not chosen:
        return 0
    return notify_each(KIND, chosen, dedupe=dedupe, title=posting.title, posting_id=posting.id)


def _serialise_alerts() -> None:
    """PostgreSQL: one alerting transaction at a time, so the daily count each one
    reads includes the rows of the one before. SQLite has a single writer already."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("yz:nearby_alerts"))))


def _volunteers_in_range(posting: Posting) -> list[tuple[int, float, str | None]]:
    """(user id, distance km, time zone) of every eligible volunteer, nearest first."""
    distance = distance_km_sql(Volunteer.home_lat, Volunteer.home_lng, posting.lat, posting.lng)
    min_lat, max_lat, min_lng, max_lng = bounding_box(posting.lat, posting.lng, MAX_RADIUS_KM)
    rows = db.session.execute(
        sa.select(Volunteer.user_id, distance, Volunteer.skills, User.timezone)
        .join(User, User.id == Volunteer.user_id)
        .where(
            User.nearby_alerts.is_(True),
            User.id != posting.author_id,
            Volunteer.home_lat.between(min_lat, max_lat),
            Volunteer.home_lng.between(min_lng, max_lng),
            distance <= Volunteer.push_radius_km,
            distance <= MAX_RADIUS_KM,
        )
        .order_by(distance, Volunteer.user_id)
    ).all()
    tags = set(posting.tag_names)
    return [(user_id, float(km), tz) for user_id, km, skills, tz in rows if not tags or tags.intersection(skills or ())]


def _already_alerted(dedupe: str, user_ids: list[int]) -> set[int]:
    """Users who already have this wish's alert (by its unique dedupe keys)."""
    found: set[int] = set()
    for start in range(0, len(user_ids), _CHUNK):
        keys = [f"{KIND}:{dedupe}:{user_id}"[:160] for user_id in user_ids[start : start + _CHUNK]]
        found.update(db.session.scalars(sa.select(Notification.user_id).where(Notification.dedupe_key.in_(keys))))
    return found


def _alerts_today(zones: dict[int, str | None]) -> Counter[int]:
    """How many nearby alerts each user has had since their local midnight."""
    now = utcnow()
    midnights = {user_id: _local_midnight(now, tz) for user_id, tz in zones.items()}
    rows = db.session.execute(
        sa.select(Notification.user_id, Notification.created_at).where(
            Notification.user_id.in_(list(zones)),
            Notification.kind == KIND,
            Notification.created_at >= min(midnights.values()),
        )
    )
    return Counter(user_id for user_id, created_at in rows if created_at >= midnights[user_id])


def _local_midnight(now: datetime, tz: str | None) -> datetime:
    try:
        zone = ZoneInfo(tz or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(DEFAULT_TIMEZONE)
    return datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)
