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
tiers by skills matched, each ordered by distance, so each tier is walked
outwards in rings (1, 3, 10, 50 km, cut at the volunteer's radius) and a page
stops at the first ring that fills it. Postings that name a skill are found
from ``ix_posting_tags_tag_geocell`` — the rows of the tags that name the
volunteer's skills in the ring's box (each tag row carries its posting's
point), counted per posting — and only those postings are read. The tier
without a match is read from ``ix_postings_status_kind_geocell`` (its deadline
and author are in the index), each candidate's tags probed by primary key.
Each shape of statement is built once, with bound parameters.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime
from functools import cache, reduce
from typing import NamedTuple

import sqlalchemy as sa
from flask_babel import gettext

from app.errors import Forbidden, Invalid, Unauthorized
from app.extensions import db
from app.geo import (
    APPROXIMATE_SLACK_DEG,
    box_parameters,
    distance_km_from_point,
    point_parameters,
    rings,
    within_box_of_parameters,
)
from app.models import Claim, Posting, PostingTag, Volunteer
from app.models.postings import NEVER
from app.policy import LIVE_CLAIM_STATUSES, kinds_where
from app.services import pagination
from app.services.permissions import Actor
from app.services.posting_place import searched_point_sql
from app.services.postings import PostingView, views_of
from app.services.postings.views import names_of, posting_rows
from app.skills import vocabulary

MATCHED_KINDS = kinds_where(matched_to_volunteers=True)
_CURSOR = "for_me"


class Place(NamedTuple):
    """A posting's place in the order."""

    matched: int
    distance_km: float
    deadline: datetime
    id: int


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
        raise Invalid("for_me", gettext("Set a home point (PUT /api/v1/me/volunteer) first."), "home_required", "query")
    kinds = list(dict.fromkeys(kinds or MATCHED_KINDS))
    if not set(kinds) <= set(MATCHED_KINDS):
        raise Invalid(
            "kind", gettext("With for_me, one of: %(choices)s", choices=", ".join(MATCHED_KINDS)), location="query"
        )

    skills = _known_skills(volunteer)
    start = _decode(cursor) if cursor else None
    places = _Search(volunteer, skills, kinds).page(start, limit + 1)

    next_cursor = None
    if len(places) > limit:
        places = places[:limit]
        next_cursor = pagination.encode_cursor([_CURSOR, *places[-1]])
    by_id = posting_rows([place.id for place in places])
    rows = [by_id[place.id] for place in places]
    names = names_of(rows)
    matches = {}
    for row in rows:
        named = set(vocabulary().codes_named_by(names["tag_names"][row.id]))
        matches[row.id] = [code for code in skills if code in named]  # in the volunteer's order
    distances = {place.id: place.distance_km for place in places}
    home = (volunteer.home_lat, volunteer.home_lng)
    return views_of(actor, rows, distances=distances, origin=home, matches=matches, **names), next_cursor


def _known_skills(volunteer: Volunteer) -> list[str]:
    """The volunteer's skills that are still in the vocabulary (an operator may
    have removed one since)."""
    known = set(vocabulary().codes)
    return [code for code in dict.fromkeys(volunteer.skills or []) if code in known]


# the postings the volunteer holds a live claim on (left out): a subquery of each
# ring's statement (PostgreSQL hashes its few rows once), not a round trip of its own
_HELD = sa.select(Claim.posting_id).where(
    Claim.user_id == sa.bindparam("user_id", type_=sa.Integer), Claim.status.in_(LIVE_CLAIM_STATUSES)
)


class _Search:
    """One volunteer's search: the values its statements run with."""

    def __init__(self, volunteer: Volunteer, skills: list[str], kinds: list[str]) -> None:
        self.home = (volunteer.home_lat, volunteer.home_lng)
        self.radius_km = volunteer.push_radius_km
        self.array = db.session.get_bind().dialect.name == "postgresql"
        names = vocabulary().tags_naming(skills)
        self.skills = [[tag for tag, code in names.items() if code == skill] for skill in skills]
        self.values = {
            **point_parameters(*self.home),
            "user_id": volunteer.user_id,
            "kinds": kinds,
            "tags": list(names),
            **{f"skill_{i}": tags for i, tags in enumerate(self.skills)},
        }

    def page(self, start: Place | None, wanted: int) -> list[Place]:
        """Up to ``wanted`` places after ``start``: tier by tier (most skills named
        first), each nearest first, ring by ring, up to the first ring that fills
        the page."""
        found: list[Place] = []
        most = len(self.skills)
        for matched in range(min(start.matched, most) if start is not None else most, -1, -1):
            after = start if start is not None and start.matched == matched else None
            for outer_km in rings(self.radius_km):
                if after is not None and outer_km < after.distance_km:
                    continue  # everything this close came before the cursor
                rows = self.places(matched, outer_km, after, wanted - len(found))
                found += rows
                if len(found) >= wanted:
                    return found
                if rows:
                    after = rows[-1]
        return found

    def places(self, matched: int, outer_km: float, after: Place | None, limit: int) -> list[Place]:
        """The postings within ``outer_km`` of home whose tags name ``matched`` of
        the volunteer's skills, after ``after``, in order."""
        stmt = _statement(len(self.skills), bool(matched), after is not None, self.array)
        values = {
            **self.values,
            # the box is on the stored points (the indexes), the distance on the
            # searched ones (a wish's rounded point): widened by the rounding
            **box_parameters(*self.home, outer_km, APPROXIMATE_SLACK_DEG),
            "outer_km": outer_km,
            "matched": matched,
            "limit": limit,
        }
        if after is not None:
            values.update(zip(("after_km", "after_due", "after_id"), after[1:], strict=True))
        return [Place(matched, *row) for row in db.session.execute(stmt, values)]


@cache
def _statement(skills: int, named: bool, after: bool, array: bool) -> sa.Select:
    """The statement of one tier and ring for one shape of search, with bound
    parameters (``_Search.places`` gives their values): built once per shape,
    since building a statement costs more than running it.

    ``named``: the postings whose tags name ``matched`` of the volunteer's
    skills: the rows of those tags in the ring's box, from the tag index alone
    (each tag row carries its posting's point), counted per posting; then only
    those postings are read. Else the postings that name none, from the geocell
    index. The distance is computed once, in the inner select, and the order and
    the page are on the inner columns (PostgreSQL flattens the subquery).
    """
    param = sa.bindparam
    if named:
        # each skill counts once, whichever of its names the tags use
        matched = reduce(
            operator.add,
            (
                sa.func.max(sa.case((PostingTag.tag.in_(param(f"skill_{i}", expanding=True)), 1), else_=0))
                for i in range(skills)
            ),
        )
        tier = (
            sa.select(PostingTag.posting_id)
            .where(
                PostingTag.tag.in_(param("tags", expanding=True)),
                within_box_of_parameters(PostingTag.lat, PostingTag.lng, PostingTag.geocell, array=array),
            )
            .group_by(PostingTag.posting_id)
            .having(matched == param("matched", type_=sa.Integer))
            .subquery("tier")
        )
        inner = sa.select(Posting.id.label("id")).join(tier, tier.c.posting_id == Posting.id)
    else:
        inner = sa.select(Posting.id.label("id")).where(
            within_box_of_parameters(Posting.lat, Posting.lng, Posting.geocell, array=array)
        )
        if skills:
            names_one = sa.exists().where(
                PostingTag.posting_id == Posting.id, PostingTag.tag.in_(param("tags", expanding=True))
            )
            inner = inner.where(~names_one)
    deadline = sa.func.coalesce(Posting.expires_at, Posting.starts_at, sa.literal(NEVER, Posting.expires_at.type))
    inner = inner.add_columns(distance_km_from_point(*searched_point_sql()).label("km"), deadline.label("due")).where(
        Posting.status == "open",
        Posting.kind.in_(param("kinds", expanding=True)),
        Posting.author_id != param("user_id", type_=sa.Integer),
        Posting.id.not_in(_HELD),
    )
    c = inner.subquery("candidate").c
    order = [(c.km, False), (c.due, False), (c.id, False)]
    stmt = sa.select(c.km, c.due, c.id).where(c.km <= param("outer_km", type_=sa.Float))
    if after:
        stmt = stmt.where(pagination.after(order, [param("after_km"), param("after_due"), param("after_id")]))
    return stmt.order_by(*pagination.order_by(order)).limit(param("limit", type_=sa.Integer))


def _decode(cursor: str) -> Place:
    """The place a for_me cursor ends at; 400 invalid_cursor for one of another list or order."""
    name, matched, km, deadline, last_id = pagination.decode_cursor(cursor, 5)
    if (
        name != _CURSOR
        or not isinstance(matched, int)
        or matched < 0
        or not isinstance(km, int | float)
        or not isinstance(deadline, datetime)
        or not isinstance(last_id, int)
    ):
        raise pagination.invalid_cursor()
    return Place(matched, float(km), deadline, last_id)
