"""For me (为我推荐): the open postings near a volunteer's home, best match first.

``GET /postings?for_me=true`` lists the open postings of the kinds that need
volunteers (``matched_to_volunteers``: wish, project, charity) within the
volunteer's ``push_radius_km`` of home, leaving out their own postings and
those they hold a live claim on, in this order:

1. how many of the volunteer's skills the posting's tags name (most first);
2. the distance from home (nearest first);
3. the deadline: ``expires_at``, else ``starts_at`` (soonest first; none last);
4. the id.

Pages are keyset pages over exactly that order: the cursor is the last item's
(skills matched, distance, deadline, id), so postings opening between two pages
neither repeat nor hide an item.

It never reads every posting in the radius. The order groups the postings into
tiers by skills matched; inside a tier it is by distance, so each tier is
walked outwards in rings (1, 3, 10, 50 km, cut at the volunteer's radius) and
a page stops at the first ring that fills it. A tier with matches is read from
``ix_posting_tags_tag_geocell`` — the rows of the tags that name the
volunteer's skills around home (each tag row carries its posting's point),
grouped per posting — and then only the tier's own postings are read. The tier
without a match is read from ``ix_postings_status_kind_geocell`` (its
deadline and author are in the index), each candidate's tags probed by
primary key.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa

from app.errors import Forbidden, Invalid, Unauthorized
from app.extensions import db
from app.geo import RINGS_KM, distance_km_sql, within_radius
from app.models import Claim, Posting, PostingTag, Volunteer
from app.policy import LIVE_CLAIM_STATUSES, kinds_where
from app.services import pagination
from app.services.feed import NEVER
from app.services.permissions import Actor
from app.services.postings import PostingView, views_of
from app.skills import vocabulary

MATCHED_KINDS = kinds_where(matched_to_volunteers=True)
_CURSOR = "for_me"


class Place(NamedTuple):
    """A posting's place in the order."""

    matched: int
    distance_km: float
    deadline: datetime
    id: int


class _Search(NamedTuple):
    """What one volunteer's search needs, gathered once per page."""

    user_id: int
    lat: float
    lng: float
    radius_km: float
    kinds: list[str]
    tags: dict[str, str]  # tag -> the skill it names (the volunteer's skills only)
    held: list[int]  # postings the volunteer holds a live claim on


def postings_for_me(
    actor: Actor, *, kinds: Sequence[str] | None = None, cursor: str | None = None, limit: int = 20
) -> tuple[list[PostingView], str | None]:
    """One page of the postings that fit the signed-in volunteer, and the next cursor.

    401 without a token, 403 ``volunteer_required`` without a volunteer profile,
    422 ``home_required`` when the profile has no home point to measure from.
    """
    if not actor.signed_in:
        raise Unauthorized()
    volunteer = actor.user.volunteer
    if volunteer is None:
        raise Forbidden("volunteer_required")
    if volunteer.home_lat is None or volunteer.home_lng is None:
        raise Invalid("for_me", "Set a home point (PUT /api/v1/me/volunteer) first.", "home_required", "query")
    kinds = list(dict.fromkeys(kinds or MATCHED_KINDS))
    if not set(kinds) <= set(MATCHED_KINDS):
        raise Invalid("kind", "With for_me, one of: " + ", ".join(MATCHED_KINDS), location="query")

    skills = _known_skills(volunteer)
    search = _Search(
        user_id=volunteer.user_id,
        lat=volunteer.home_lat,
        lng=volunteer.home_lng,
        radius_km=volunteer.push_radius_km,
        kinds=kinds,
        tags=vocabulary().tags_naming(skills),
        held=list(
            db.session.scalars(
                sa.select(Claim.posting_id).where(
                    Claim.user_id == volunteer.user_id, Claim.status.in_(LIVE_CLAIM_STATUSES)
                )
            )
        ),
    )
    start = _decode(cursor) if cursor else None
    places = _page(search, len(skills), start, limit + 1)

    next_cursor = None
    if len(places) > limit:
        places = places[:limit]
        next_cursor = pagination.encode_cursor([_CURSOR, *places[-1]])
    by_id = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_([p.id for p in places])))}
    postings = [by_id[place.id] for place in places]
    matches = {}
    for posting in postings:
        named = set(vocabulary().codes_named_by(posting.tag_names))
        matches[posting.id] = [code for code in skills if code in named]  # in the volunteer's order
    distances = {place.id: place.distance_km for place in places}
    return views_of(actor, postings, distances=distances, matches=matches), next_cursor


def _known_skills(volunteer: Volunteer) -> list[str]:
    """The volunteer's skills that are still in the vocabulary (an operator may
    have removed one since)."""
    known = set(vocabulary().codes)
    return [code for code in dict.fromkeys(volunteer.skills or []) if code in known]


def _page(search: _Search, most: int, start: Place | None, wanted: int) -> list[Place]:
    """Up to ``wanted`` places after ``start``: tier by tier, ring by ring."""
    found: list[Place] = []
    for matched in range(min(start.matched, most) if start else most, -1, -1):
        after = start if start is not None and start.matched == matched else None
        for outer_km in _rings(search.radius_km):
            if after is not None and outer_km < after.distance_km:
                continue  # everything this close came before the cursor
            rows = _tier_ring(search, matched, outer_km, after, wanted - len(found))
            found += rows
            if len(found) >= wanted:
                return found
            if rows:
                after = rows[-1]
    return found


def _rings(radius_km: float) -> list[float]:
    return [km for km in RINGS_KM if km < radius_km] + [radius_km]


def _tier_ring(search: _Search, matched: int, outer_km: float, after: Place | None, limit: int) -> list[Place]:
    """The postings of one tier within ``outer_km`` of home, after ``after``, in order."""
    distance = distance_km_sql(Posting.lat, Posting.lng, search.lat, search.lng)
    deadline = sa.func.coalesce(Posting.expires_at, Posting.starts_at, sa.literal(NEVER, Posting.expires_at.type))
    where = [
        Posting.status == "open",
        Posting.kind.in_(search.kinds),
        Posting.author_id != search.user_id,
    ]
    if search.held:
        where.append(Posting.id.not_in(search.held))
    stmt = sa.select(Posting.id, distance, deadline)
    if matched:
        tier = _postings_matching(search, matched, outer_km)
        stmt = stmt.join(tier, tier.c.posting_id == Posting.id)
        where.append(distance <= outer_km)
    else:
        where.append(within_radius(Posting.lat, Posting.lng, Posting.geocell, search.lat, search.lng, outer_km))
        if search.tags:
            where.append(~sa.exists().where(PostingTag.posting_id == Posting.id, PostingTag.tag.in_(list(search.tags))))
    order = [(distance, False), (deadline, False), (Posting.id, False)]
    if after is not None:
        where.append(pagination.after(order, after[1:]))
    rows = db.session.execute(stmt.where(*where).order_by(*pagination.order_by(order)).limit(limit))
    return [Place(matched, km, due, posting_id) for posting_id, km, due in rows]


def _postings_matching(search: _Search, matched: int, outer_km: float) -> sa.Subquery:
    """Ids of the postings within ``outer_km`` whose tags name exactly ``matched``
    of the volunteer's skills, from the tag index alone."""
    skill = sa.case(search.tags, value=PostingTag.tag)
    return (
        sa.select(PostingTag.posting_id)
        .where(
            PostingTag.tag.in_(list(search.tags)),
            within_radius(PostingTag.lat, PostingTag.lng, PostingTag.geocell, search.lat, search.lng, outer_km),
        )
        .group_by(PostingTag.posting_id)
        .having(sa.func.count(sa.distinct(skill)) == matched)
        .subquery("tier")
    )


def _decode(cursor: str) -> Place:
    """The place a for_me cursor ends at; 422 for a cursor of another list or order."""
    name, matched, km, deadline, last_id = pagination.decode_cursor(cursor, 5)
    if (
        name != _CURSOR
        or not isinstance(matched, int)
        or matched < 0
        or not isinstance(km, int | float)
        or not isinstance(deadline, datetime)
        or not isinstance(last_id, int)
    ):
        raise Invalid("cursor", "Not a valid cursor for this list.", location="query")
    return Place(matched, float(km), deadline, last_id)
