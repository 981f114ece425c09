"""Keyset (cursor) pagination: stable while rows are inserted.

A cursor is the sort key of the last item returned, signed with the app's
``SECRET_KEY`` (itsdangerous): opaque to the client, and anything it did not
get from us — forged, edited, or signed with a key since rotated — is a 400
``invalid_cursor`` before it reaches a query. The next page asks for rows
strictly after the key in the same order, so an insert between two pages
neither repeats nor hides an item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from itsdangerous import BadData, URLSafeSerializer

from app.clock import as_utc
from app.errors import AppError
from app.models.base import MAX_ID

# (column, descending)
Order = Sequence[tuple[Any, bool]]


def invalid_cursor() -> AppError:
    return AppError("invalid_cursor")


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="yz.cursor")


def encode_cursor(values: Sequence[Any]) -> str:
    packed = [{"dt": as_utc(v).isoformat()} if isinstance(v, datetime) else v for v in values]
    return _serializer().dumps(packed)


def decode_cursor(cursor: str, size: int) -> list[Any]:
    """The key a cursor of ``size`` values carries; 400 ``invalid_cursor`` for anything else."""
    try:
        packed = _serializer().loads(cursor)
        if not isinstance(packed, list) or len(packed) != size:
            raise ValueError
        values = [datetime.fromisoformat(v["dt"]) if isinstance(v, dict) else v for v in packed]
    except (BadData, ValueError, TypeError, KeyError):
        raise invalid_cursor() from None
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float | str | datetime):
            raise invalid_cursor()
        if isinstance(value, int) and not -MAX_ID <= value <= MAX_ID:
            raise invalid_cursor()
    return values


def after(order: Order, values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after ``values`` in ``order`` (a lexicographic comparison)."""
    clauses = []
    for i, (column, descending) in enumerate(order):
        equal = [col == values[j] for j, (col, _) in enumerate(order[:i])]
        step = column < values[i] if descending else column > values[i]
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses)


def order_by(order: Order) -> list:
    return [col.desc() if descending else col.asc() for col, descending in order]


def paginate(
    session,
    stmt: sa.Select,
    order: Order,
    cursor: str | None,
    limit: int,
    key: Callable[[Any], Sequence[Any]],
    *,
    rows: bool = False,
) -> tuple[list[Any], str | None]:
    """Run ``stmt`` for one page; returns the items and the next cursor (or None).

    ``key(item)`` gives the item's values of the ``order`` columns. Items are
    the first column of each row, or whole rows with ``rows=True``.
    """
    if cursor:
        stmt = stmt.where(after(order, decode_cursor(cursor, len(order))))
    page = stmt.order_by(*order_by(order)).limit(limit + 1)
    items = list(session.execute(page).all() if rows else session.scalars(page))
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(key(items[-1]))
