"""Keyset (cursor) pagination: stable while rows are inserted.

A cursor is the opaque, url-safe encoding of the sort key of the last item
returned. The next page asks for rows strictly after it in the same order,
so an insert between two pages neither repeats nor hides an item.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.clock import as_utc
from app.errors import Invalid

# (column, descending)
Order = Sequence[tuple[Any, bool]]


def encode_cursor(values: Sequence[Any]) -> str:
    packed = [{"dt": as_utc(v).isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(packed, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        packed = json.loads(raw)
        if not isinstance(packed, list) or len(packed) != size:
            raise ValueError
        values = [datetime.fromisoformat(v["dt"]) if isinstance(v, dict) else v for v in packed]
        if any(not isinstance(v, int | float | str | datetime) or isinstance(v, bool) for v in values):
            raise ValueError
        return values
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise Invalid("cursor", "Not a valid cursor.", location="query") from None


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
