"""One Earth model: great-circle distance in Python and in SQL, bounding boxes and geocells.

A radius query never scans a table: it becomes a short list of ``geocell``
values (a column of ``postings``) looked up in an index, then a bounding box,
then the exact haversine distance on the few rows left. The SQL distance is the
same formula on both databases, so what is filtered, sorted and paged on is one
deterministic value. The box and the cells are derived from the same sphere as
the distance (``EARTH_RADIUS_KM``), with a small margin, so that a point the
distance puts inside the radius is never cut off by the box.

This module imports nothing of the app: models use it too.
"""

from __future__ import annotations

import math
import sqlite3

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
# Kilometres per degree of latitude on that sphere (about 111.195).
KM_PER_DEG_LAT = EARTH_RADIUS_KM * math.pi / 180
# The box is a prefilter: widened by this fraction so rounding never drops a rim point.
_BOX_MARGIN = 1e-6

# The widest radius any search uses (a feed's radius_km, a volunteer's push radius),
# and the rings a nearest-first search walks outwards in, so that it stops at the
# first ring that holds what it needs instead of reading the whole 50 km.
MAX_RADIUS_KM = 50.0
RINGS_KM = (1.0, 3.0, 10.0, MAX_RADIUS_KM)

# Geocells: a fixed grid of GEOCELL_DEG degrees. A radius query turns into a
# short list of cells, each an index range, so it never scans the table.
GEOCELL_DEG = 0.02
_GEOCELL_STRIDE = 100_000


# A wish's point as shown to someone who is not one of its contacts: 3 decimals, about 100 m.
APPROXIMATE_DECIMALS = 3
_APPROXIMATE_SCALE = 10**APPROXIMATE_DECIMALS
# How far (degrees) a rounded coordinate lies from the exact one at most: half a
# step, and a hair more for floating point. A search on rounded points widens its
# prefilter (the box and cells on the exact columns, which the indexes hold) by it.
APPROXIMATE_SLACK_DEG = 0.5 / _APPROXIMATE_SCALE + 1e-9


def approximate(lat: float, lng: float) -> tuple[float, float]:
    """The point rounded to about 100 m: the neighbourhood, not the door.

    Half up, as :func:`approximate_sql` computes it in the database, so that the
    point shown and the point searched on are one point."""
    return _approximate(lat), _approximate(lng)


def _approximate(value: float) -> float:
    return math.floor(value * _APPROXIMATE_SCALE + 0.5) / _APPROXIMATE_SCALE


def approximate_sql(column) -> sa.ColumnElement[float]:
    """:func:`approximate` of one coordinate, as SQL (the same arithmetic)."""
    return sa.type_coerce(sa.func.floor(column * float(_APPROXIMATE_SCALE) + 0.5) / float(_APPROXIMATE_SCALE), sa.Float)


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in kilometres between two WGS-84 points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dphi = math.radians(lat2 - lat1)
    dlmb = math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def distance_km_sql(lat_col, lng_col, lat, lng, cos_lat=None) -> sa.ColumnElement[float]:
    """The haversine distance from (``lat``, ``lng``) to a row's point, as SQL.

    ``lat`` and ``lng`` are numbers, or SQL (bound parameters of a statement
    built once and run for many points: :func:`distance_km_from_point`); then
    ``cos_lat``, the cosine of that latitude, is given as SQL too.

    Uses only sin/cos/asin/sqrt/radians, which PostgreSQL has and SQLite has
    when built with its math functions (registered below when it is not).
    """
    if cos_lat is None:
        cos_lat = math.cos(math.radians(lat))
    half_dlat = sa.func.sin(sa.func.radians(lat_col - lat) / 2)
    half_dlng = sa.func.sin(sa.func.radians(lng_col - lng) / 2)
    a = half_dlat * half_dlat + cos_lat * sa.func.cos(sa.func.radians(lat_col)) * (half_dlng * half_dlng)
    return sa.type_coerce(2 * EARTH_RADIUS_KM * sa.func.asin(sa.func.sqrt(a)), sa.Float)


def distance_km_from_point(lat_col, lng_col) -> sa.ColumnElement[float]:
    """:func:`distance_km_sql` from the bound parameters ``point_lat``, ``point_lng``
    and ``point_cos`` (:func:`point_parameters` gives their values)."""
    return distance_km_sql(
        lat_col,
        lng_col,
        sa.bindparam("point_lat", type_=sa.Float),
        sa.bindparam("point_lng", type_=sa.Float),
        sa.bindparam("point_cos", type_=sa.Float),
    )


def point_parameters(lat: float, lng: float) -> dict[str, float]:
    return {"point_lat": lat, "point_lng": lng, "point_cos": math.cos(math.radians(lat))}


def bounding_box(lat: float, lng: float, radius_km: float, slack_deg: float = 0.0) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of a box that contains the circle,
    widened by ``slack_deg`` on every side (a search on rounded points:
    :data:`APPROXIMATE_SLACK_DEG`)."""
    reach = radius_km * (1 + _BOX_MARGIN)
    dlat = reach / KM_PER_DEG_LAT + slack_deg
    # The widest part of the circle is at the latitude closest to a pole.
    far_lat = min(abs(lat) + dlat, 89.9)
    dlng = reach / (KM_PER_DEG_LAT * max(math.cos(math.radians(far_lat)), 0.01)) + slack_deg
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


def rings(radius_km: float, beyond_km: float = 0.0) -> list[float]:
    """The radii a nearest-first search walks outwards (``RINGS_KM`` below
    ``radius_km``, then ``radius_km``), skipping those not past ``beyond_km`` (a
    page that starts at that distance). A page that fills inside a ring is the
    page of the whole radius: anything outside the ring lies farther than all
    of it."""
    return [km for km in RINGS_KM if beyond_km < km < radius_km] + [radius_km]


def geocell_index(lat: float, lng: float) -> tuple[int, int]:
    return math.floor((lat + 90) / GEOCELL_DEG), math.floor((lng + 180) / GEOCELL_DEG)


def geocell_for(lat: float | None, lng: float | None) -> int | None:
    """The cell of a point (None without one): the value stored in ``postings.geocell``."""
    if lat is None or lng is None:
        return None
    row, col = geocell_index(lat, lng)
    return row * _GEOCELL_STRIDE + col


def geocells_covering(lat: float, lng: float, radius_km: float, slack_deg: float = 0.0) -> list[int]:
    """The cells of the bounding box of a circle (a superset of the circle)."""
    min_lat, max_lat, min_lng, max_lng = bounding_box(lat, lng, radius_km, slack_deg)
    row0, col0 = geocell_index(max(min_lat, -90), max(min_lng, -180))
    row1, col1 = geocell_index(min(max_lat, 90), min(max_lng, 180))
    return [row * _GEOCELL_STRIDE + col for row in range(row0, row1 + 1) for col in range(col0, col1 + 1)]


def within_box_of_parameters(lat_col, lng_col, geocell_col, *, array: bool = False) -> sa.ColumnElement[bool]:
    """The prefilter of a radius search — the covering cells, then the box; the
    exact distance is the caller's — from bound parameters (``cells``,
    ``min_lat`` … ``max_lng``; :func:`box_parameters` gives their values), for a
    statement built once and run for many points. A search on rounded points
    (:func:`approximate_sql`) widens the box by :data:`APPROXIMATE_SLACK_DEG`."""
    cells = sa.bindparam("cells", type_=ARRAY(sa.Integer)) if array else sa.bindparam("cells", expanding=True)
    box = (sa.bindparam(name, type_=sa.Float) for name in ("min_lat", "max_lat", "min_lng", "max_lng"))
    return _box_sql(lat_col, lng_col, geocell_col, cells, box, array=array)


def box_parameters(lat: float, lng: float, radius_km: float, slack_deg: float = 0.0) -> dict:
    min_lat, max_lat, min_lng, max_lng = bounding_box(lat, lng, radius_km, slack_deg)
    return {
        "cells": geocells_covering(lat, lng, radius_km, slack_deg),
        "min_lat": min_lat,
        "max_lat": max_lat,
        "min_lng": min_lng,
        "max_lng": max_lng,
    }


def _box_sql(lat_col, lng_col, geocell_col, cells, box, *, array: bool) -> sa.ColumnElement[bool]:
    """The covering cells, then the box.

    The cells are one list rather than OR-ed ranges: PostgreSQL turns it into
    ``geocell = ANY(...)``, a condition a single (index-only) scan can use, where
    OR-ed ranges would need a bitmap scan that must visit the heap. ``array``
    (PostgreSQL only) sends the list as one array parameter: a 50 km circle
    covers about 2,000 cells, and one placeholder each would make a statement
    that the driver must parse afresh every time.
    """
    min_lat, max_lat, min_lng, max_lng = box
    return sa.and_(
        geocell_col == sa.any_(cells) if array else geocell_col.in_(cells),
        lat_col.between(min_lat, max_lat),
        lng_col.between(min_lng, max_lng),
    )


_MATH = {
    "sin": math.sin,
    "cos": math.cos,
    "asin": math.asin,
    "sqrt": math.sqrt,
    "radians": math.radians,
    "floor": lambda value: float(math.floor(value)),
}


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_math_functions(dbapi_connection, _record) -> None:
    """Give SQLite the math functions of distance_km_sql when its build lacks them."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    try:
        dbapi_connection.execute("SELECT sin(0), cos(0), asin(0), sqrt(1), radians(0), floor(0.5)").fetchone()
    except sqlite3.OperationalError:
        for name, fn in _MATH.items():
            dbapi_connection.create_function(name, 1, _null_safe(fn), deterministic=True)


def _null_safe(fn):
    def wrapped(value):
        return None if value is None else fn(value)

    return wrapped
