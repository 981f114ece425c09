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
from functools import cache
from typing import Any

import sqlalchemy as sa
from flask_babel import format_decimal, gettext

from app.errors import Invalid
from app.extensions import db
from app.geo import (
    APPROXIMATE_SLACK_DEG,
    MAX_RADIUS_KM,
    box_parameters,
    distance_km_from_point,
    point_parameters,
    rings,
    within_box_of_parameters,
)
from app.models import Org, Posting, PostingTag, User
from app.models.postings import NEVER, ending_at
from app.policy import HIDDEN_POSTING_STATUSES, POSTING_KINDS, POSTING_STATUSES
from app.services import pagination
from app.services.permissions import Actor
from app.services.posting_place import searched_point_sql
from app.services.postings import PostingView, views_of
from app.services.postings.views import POSTING_COLUMNS, names_of, page_columns

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

    # Everything the client chose travels as bound parameters of a statement
    # built once per shape (_statement): building the expression and its cache
    # key cost more than running it. Only a viewer's own visibility rule (the
    # review queue, hidden statuses) makes a statement of its own.
    extra = None
    if review_queue:
        extra = viewer.reviewable_postings()
    elif set(statuses) & set(HIDDEN_POSTING_STATUSES):
        extra = viewer.visible_postings()
    after = _decode(cursor, sort) if cursor else None
    values: dict[str, Any] = {"statuses": statuses, "kinds": kinds, "limit": limit + 1}
    filters = {"district": district, "org_id": org_id, "author_id": author_id}
    values.update((name, value) for name, value in filters.items() if value is not None)
    if tags:
        values["tags"] = list(dict.fromkeys(tags))
    if after is not None:
        values.update(after_value=after[0], after_id=after[1])
    shape = _Shape(
        filters=tuple(name for name, value in filters.items() if value is not None),
        tags=bool(tags),
        near=near is not None,
        sort=sort,
        after=after is not None,
        postgresql=db.session.get_bind().dialect.name == "postgresql",
    )
    stmt = _build(shape, extra) if extra is not None else _statement(shape)
    if near is None:
        rows = db.session.execute(stmt, values).all()
    else:
        # Nearest first: walk outwards in rings (app.geo.rings) and stop at the
        # first one that fills the page, so a dense old town reads a few hundred
        # index entries, not the thousands of a whole 3 km (or 50 km) circle.
        # Other orders need the whole circle.
        values.update(point_parameters(near.lat, near.lng))
        radii = rings(near.radius_km, after[0] if after else 0.0) if sort == "distance" else [near.radius_km]
        for radius_km in radii:
            # the box is on the stored points (the index), the distance on the
            # searched ones (a wish's rounded point): widened by the rounding
            values.update(box_parameters(near.lat, near.lng, radius_km, APPROXIMATE_SLACK_DEG), radius_km=radius_km)
            rows = db.session.execute(stmt, values).all()
            if len(rows) > limit:
                break

    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor([sort, *_key(sort, rows[-1])])
    return (
        views_of(
            viewer,
            rows,
            distances={row.id: row.distance_km for row in rows} if near is not None else None,
            origin=(near.lat, near.lng) if near is not None else None,
            **names_of(rows),
        ),
        next_cursor,
    )


@dataclass(frozen=True)
class _Shape:
    """What a feed statement's text depends on (the values are bound parameters)."""

    filters: tuple[str, ...]  # which of district, org_id, author_id are given
    tags: bool
    near: bool
    sort: str
    after: bool
    postgresql: bool  # the geocells as one array parameter, the tags aggregated


@cache
def _statement(shape: _Shape) -> sa.Select:
    return _build(shape)


def _build(shape: _Shape, extra: sa.ColumnElement[bool] | None = None) -> sa.Select:
    """One page's statement: the posting's columns (``POSTING_COLUMNS``, no ORM
    objects), its author's and org's names, and with ``near`` its distance.

    A nearby page takes the page's ids first, then those rows: the inner query
    needs only columns of the geocell index, so PostgreSQL answers it from the
    index alone instead of visiting every candidate row (``sort=newest`` too:
    ``created_at`` is in the index)."""
    param = sa.bindparam
    # status and kind are always named, so (status, kind, geocell) serves the
    # nearby search even when the client asks for every kind.
    where = [Posting.status.in_(param("statuses", expanding=True)), Posting.kind.in_(param("kinds", expanding=True))]
    if extra is not None:
        where.append(extra)
    where += [getattr(Posting, name) == param(name) for name in shape.filters]
    if shape.tags:
        where.append(
            sa.exists().where(PostingTag.posting_id == Posting.id, PostingTag.tag.in_(param("tags", expanding=True)))
        )
    names = (User.display_name.label("author_name"), Org.name.label("org_name"), *page_columns(shape.postgresql))
    if not shape.near:
        order = _order(shape.sort, None)
        if shape.after:
            where.append(pagination.after(order, [param("after_value"), param("after_id")]))
        stmt = (
            sa.select(*POSTING_COLUMNS, *names)
            .where(*where)
            .order_by(*pagination.order_by(order))
            .limit(param("limit", type_=sa.Integer))
        )
    else:
        # a wish is filtered, sorted and measured on its rounded point (posting_place)
        distance = distance_km_from_point(*searched_point_sql())
        where.append(within_box_of_parameters(Posting.lat, Posting.lng, Posting.geocell, array=shape.postgresql))
        order = _order(shape.sort, distance)
        # The distance is written once, in the candidates' select, and the page
        # filters, orders and cuts on its column (PostgreSQL flattens the
        # subquery): written three times, the statement outgrew what psycopg
        # keeps converted (4 KB) and was converted again on every request.
        columns = [Posting.id.label("id"), distance.label("distance_km")]
        if shape.sort != "distance":
            columns.append(order[0][0].label("sort_key"))
        c = sa.select(*columns).where(*where).subquery("candidate").c
        sort_key = c.distance_km if shape.sort == "distance" else c.sort_key
        on_candidate = [(sort_key, order[0][1]), (c.id, order[1][1])]
        inside = [c.distance_km <= param("radius_km", type_=sa.Float)]
        if shape.after:
            inside.append(pagination.after(on_candidate, [param("after_value"), param("after_id")]))
        page = (
            sa.select(c.id, c.distance_km, *([] if shape.sort == "distance" else [c.sort_key]))
            .where(*inside)
            .order_by(*pagination.order_by(on_candidate))
            .limit(param("limit", type_=sa.Integer))
            .subquery("page")
        )
        page_key = page.c.distance_km if shape.sort == "distance" else page.c.sort_key
        outer = [(page_key, order[0][1]), (Posting.id, order[1][1])]
        stmt = (
            sa.select(*POSTING_COLUMNS, page.c.distance_km, *names)
            .join(page, page.c.id == Posting.id)
            .order_by(*pagination.order_by(outer))
        )
    return stmt.join(User, User.id == Posting.author_id).outerjoin(Org, Org.id == Posting.org_id)


def _decode(cursor: str, sort: str) -> list[Any]:
    """The (sort value, id) a cursor of this ``sort`` ends at; 400 for anything else
    (a cursor of another sort order included)."""
    name, value, last_id = pagination.decode_cursor(cursor, 3)
    expected = (int, float) if sort == "distance" else datetime
    if name != sort or not isinstance(value, expected) or not isinstance(last_id, int):
        raise pagination.invalid_cursor()
    return [value, last_id]


def _order(sort: str, distance) -> list[tuple[Any, bool]]:
    if sort == "distance":
        return [(distance, False), (Posting.id, False)]
    if sort == "ending_soon":
        return [(ending_at(), False), (Posting.id, False)]
    descending = sort != OLDEST
    return [(Posting.created_at, descending), (Posting.id, descending)]


def _key(sort: str, row) -> list[Any]:
    if sort == "distance":
        return [row.distance_km, row.id]
    if sort == "ending_soon":
        return [row.expires_at or row.ends_at or NEVER, row.id]
    return [row.created_at, row.id]
