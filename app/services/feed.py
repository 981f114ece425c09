"""The wish wall (心愿墙): ``GET /postings`` with filters, nearby search and keyset pages.

Every order ends in the primary key, so a page boundary is one exact point
in the order and the next page is "rows strictly after it": rows inserted
meanwhile neither repeat nor hide an item. A nearby search is a few ranges of
the ``(status, kind, geocell)`` index, a bounding box, then the exact
haversine distance (``app.geo``); ``sort=distance`` pages on (distance, id),
the distance being the very SQL value the database filtered on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask_babel import format_decimal, gettext

from app.errors import Invalid
from app.extensions import db
from app.geo import MAX_RADIUS_KM, distance_km_sql, rings, within_radius
from app.models import Org, Posting, PostingTag, User
from app.models.postings import NEVER, ending_at
from app.policy import HIDDEN_POSTING_STATUSES, POSTING_KINDS, POSTING_STATUSES
from app.services import pagination
from app.services.permissions import Actor
from app.services.postings import PostingView, views_of
from app.services.postings.place import searched_point_sql

SORTS = ("newest", "distance", "ending_soon")
# The review queue's default order: first come, first reviewed.
OLDEST = "oldest"
DEFAULT_RADIUS_KM = 3.0
# The smallest radius: a wish is searched on its rounded point (about 100 m), and
# a smaller circle would only narrow the rounding down (API: radius_km >= 0.5).
MIN_RADIUS_KM = 0.5
# "ending soon" orders by when a posting stops taking claims (models.postings.ending_at);
# those that never do come last (NEVER, a far-future stand-in, keeps the keyset
# comparison total).


@dataclass(frozen=True)
class Near:
    lat: float
    lng: float
    radius_km: float = DEFAULT_RADIUS_KM


def list_postings(
    viewer: Actor,
    *,
    kinds: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    district: str | None = None,
    tags: Sequence[str] | None = None,
    org_id: int | None = None,
    author_id: int | None = None,
    near: Near | None = None,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 20,
) -> tuple[list[PostingView], str | None]:
    """One page of postings ``viewer`` may see, and the cursor of the next page.

    ``statuses`` defaults to ``open``; pending and rejected postings appear only
    to those who may see them. ``kinds`` and ``tags`` match any of the values.

    ``status=pending_review`` alone is the review queue (审核队列): exactly the
    postings ``viewer`` may review (``Actor.reviewable_postings``), oldest first
    unless ``sort`` says otherwise. Asked with ``author_id`` = the viewer, it is
    instead the viewer's own postings waiting for review.
    """
    statuses = list(dict.fromkeys(statuses or ["open"]))
    review_queue = statuses == ["pending_review"] and (author_id is None or author_id != viewer.id)
    if sort is None:
        sort = OLDEST if review_queue else "newest"
    elif sort not in SORTS:
        raise Invalid("sort", gettext("One of: %(choices)s", choices=", ".join(SORTS)), location="query")
    if sort == "distance" and near is None:
        raise Invalid("sort", gettext("sort=distance needs near=lat,lng."), location="query")
    kinds = list(dict.fromkeys(kinds or POSTING_KINDS))
    for name, values, allowed in (("status", statuses, POSTING_STATUSES), ("kind", kinds, POSTING_KINDS)):
        if not set(values) <= set(allowed):
            raise Invalid(name, gettext("One of: %(choices)s", choices=", ".join(allowed)), location="query")
    if near is not None and not MIN_RADIUS_KM <= near.radius_km <= MAX_RADIUS_KM:
        raise Invalid(
            "radius_km",
            gettext(
                "Between %(least)s and %(most)s km.",
                least=format_decimal(MIN_RADIUS_KM),
                most=format_decimal(MAX_RADIUS_KM),
            ),
            location="query",
        )

    # status and kind are always named, so (status, kind, geocell) serves the
    # nearby search even when the client asks for every kind.
    where = [_one_or_any(Posting.status, statuses), _one_or_any(Posting.kind, kinds)]
    if review_queue:
        where.append(viewer.reviewable_postings())
    elif set(statuses) & set(HIDDEN_POSTING_STATUSES):
        where.append(viewer.visible_postings())
    if district is not None:
        where.append(Posting.district == district)
    if org_id is not None:
        where.append(Posting.org_id == org_id)
    if author_id is not None:
        where.append(Posting.author_id == author_id)
    if tags:
        where.append(
            sa.exists().where(
                PostingTag.posting_id == Posting.id, _one_or_any(PostingTag.tag, list(dict.fromkeys(tags)))
            )
        )
    distance = None
    if near is not None:
        # a wish is filtered, sorted and measured on its rounded point (postings.place)
        distance = distance_km_sql(*searched_point_sql(), near.lat, near.lng)

    order = _order(sort, distance)
    after = _decode(cursor, sort) if cursor else None
    if after is not None:
        where.append(pagination.after(order, after))
    if near is None:
        rows = _page(sa.select(Posting).where(*where).order_by(*pagination.order_by(order)).limit(limit + 1))
    else:
        # Nearest first: walk outwards in rings (app.geo.rings) and stop at the
        # first one that fills the page, so a dense old town reads a few hundred
        # index entries, not the thousands of a whole 3 km (or 50 km) circle.
        # Other orders need the whole circle.
        radii = rings(near.radius_km, after[0] if after else 0.0) if sort == "distance" else [near.radius_km]
        for radius_km in radii:
            rows = _page(_nearby(where, near, radius_km, distance, order, limit))
            if len(rows) > limit:
                break

    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor([sort, *_key(sort, rows[-1])])
    postings = [row.Posting for row in rows]
    return (
        views_of(
            viewer,
            postings,
            tag_names=tag_names_of([posting.id for posting in postings]),
            distances={row.Posting.id: row.distance_km for row in rows} if distance is not None else None,
            origin=(near.lat, near.lng) if near is not None else None,
            author_names={row.Posting.author_id: row.author_name for row in rows},
            org_names={row.Posting.org_id: row.org_name for row in rows if row.Posting.org_id is not None},
        ),
        next_cursor,
    )


def _nearby(where: list, near: Near, radius_km: float, distance, order, limit: int) -> sa.Select:
    """One page within ``radius_km``: the page's ids first, then those rows. The
    inner query needs only columns of the geocell index, so PostgreSQL answers
    it from the index alone instead of visiting every candidate row."""
    inside = within_radius(
        Posting.lat, Posting.lng, Posting.geocell, near.lat, near.lng, radius_km, shown=searched_point_sql()
    )
    page = (
        sa.select(Posting.id.label("id"), distance.label("distance_km"))
        .where(*where, inside)
        .order_by(*pagination.order_by(order))
        .limit(limit + 1)
        .subquery("page")
    )
    outer = [(page.c.distance_km if column is distance else column, desc) for column, desc in order]
    return (
        sa.select(Posting, page.c.distance_km).join(page, page.c.id == Posting.id).order_by(*pagination.order_by(outer))
    )


def _page(stmt: sa.Select) -> list[sa.Row]:
    """Run a page's statement with its authors' and orgs' names joined in (one round trip)."""
    stmt = (
        stmt.add_columns(User.display_name.label("author_name"), Org.name.label("org_name"))
        .join(User, User.id == Posting.author_id)
        .outerjoin(Org, Org.id == Posting.org_id)
        .options(so.noload(Posting.tags))
    )
    return db.session.execute(stmt).all()


def tag_names_of(posting_ids: list[int]) -> dict[int, list[str]]:
    """The tags of a page of postings as plain names, in their order: one light
    statement instead of loading a PostingTag object per tag."""
    names: dict[int, list[str]] = {posting_id: [] for posting_id in posting_ids}
    if posting_ids:
        rows = db.session.execute(
            sa.select(PostingTag.posting_id, PostingTag.tag)
            .where(PostingTag.posting_id.in_(posting_ids))
            .order_by(PostingTag.posting_id, PostingTag.position)
        )
        for posting_id, tag in rows:
            names[posting_id].append(tag)
    return names


def _decode(cursor: str, sort: str) -> list[Any]:
    """The (sort value, id) a cursor of this ``sort`` ends at; 400 for anything else
    (a cursor of another sort order included)."""
    name, value, last_id = pagination.decode_cursor(cursor, 3)
    expected = (int, float) if sort == "distance" else datetime
    if name != sort or not isinstance(value, expected) or not isinstance(last_id, int):
        raise pagination.invalid_cursor()
    return [value, last_id]


def _one_or_any(column, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    return column == values[0] if len(values) == 1 else column.in_(values)


def _order(sort: str, distance) -> list[tuple[Any, bool]]:
    if sort == "distance":
        return [(distance, False), (Posting.id, False)]
    if sort == "ending_soon":
        return [(ending_at(), False), (Posting.id, False)]
    descending = sort != OLDEST
    return [(Posting.created_at, descending), (Posting.id, descending)]


def _key(sort: str, row) -> list[Any]:
    posting = row.Posting
    if sort == "distance":
        return [row.distance_km, posting.id]
    if sort == "ending_soon":
        return [posting.expires_at or posting.ends_at or NEVER, posting.id]
    return [posting.created_at, posting.id]
