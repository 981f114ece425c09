"""Where a posting is, as one viewer may know it: a wish's place is for its contacts.

The one rule, in one place. A posting with a beneficiary (a wish: someone's
home) shows its exact point and its full ``address`` only to its contacts
(``Actor.sees_exact_point``: its managers, the holder of an active or
fulfilled claim). Everyone else, anonymous or signed in, gets
:func:`shown_place`:

- its point rounded to 3 decimals (``app.geo.approximate``, about 100 m);
- its address cut to the district/street (:func:`cut_address`; none where it
  cannot be cut);
- every distance measured from the rounded point, to 0.1 km.

And every search that filters or orders wishes by distance — the feed's
``near``/``radius_km``, "for me", the nearby pushes — does so on the rounded
point (:func:`searched_point_sql`, :func:`searched_point`), for every viewer,
so which wishes a query returns, and in which order, says nothing finer than
the point shown: no sequence of queries finds the door. Kinds without a
beneficiary (projects, services, …) are at a public venue: shown and searched
as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import sqlalchemy as sa

from app.geo import approximate, approximate_sql, haversine_km
from app.models import Posting
from app.policy import kinds_where
from app.services.permissions import Actor

# Distances to a point shown rounded: 0.1 km (finer would hand the rounding back
# through three distances from three places).
COARSE_KM_DECIMALS = 1
EXACT_KM_DECIMALS = 3


@cache
def rounded_kinds() -> tuple[str, ...]:
    """The kinds whose place is someone's home: shown and searched rounded."""
    return tuple(kinds_where(has_beneficiary=True))


def searched_point(posting: Posting) -> tuple[float, float] | None:
    """The point every search measures ``posting`` from (None without one)."""
    if posting.lat is None or posting.lng is None:
        return None
    if posting.kind in rounded_kinds():
        return approximate(posting.lat, posting.lng)
    return posting.lat, posting.lng


def searched_point_sql() -> tuple[sa.ColumnElement[float], sa.ColumnElement[float]]:
    """:func:`searched_point` as SQL: the (lat, lng) a search filters and sorts on."""
    rounded = Posting.kind.in_(rounded_kinds())
    return (
        sa.case((rounded, approximate_sql(Posting.lat)), else_=Posting.lat),
        sa.case((rounded, approximate_sql(Posting.lng)), else_=Posting.lng),
    )


@dataclass(frozen=True)
class ShownPlace:
    """A posting's place as one viewer sees it."""

    exact: bool
    location: dict[str, float] | None
    address: str | None
    distance_km: float | None


def shown_place(
    actor: Actor,
    posting: Posting,
    claim_status: str | None,
    *,
    origin: tuple[float, float] | None = None,
    distance_km: float | None = None,
) -> ShownPlace:
    """``posting``'s point, address and distance as ``actor`` may know them.

    ``distance_km`` is the distance a search measured (from ``origin``, to
    :func:`searched_point`). A contact of a wish gets the distance to the exact
    point instead (from ``origin``); everyone else gets the searched one, to
    0.1 km where the point is rounded."""
    exact = actor.sees_exact_point(posting, claim_status)
    if exact:
        point = None if posting.lat is None or posting.lng is None else (posting.lat, posting.lng)
        address = posting.address
    else:
        point = searched_point(posting)
        address = cut_address(posting.address)
    if origin is not None and point is not None and (distance_km is None or point != searched_point(posting)):
        distance_km = haversine_km(*origin, *point)
    if distance_km is not None:
        distance_km = round(distance_km, EXACT_KM_DECIMALS if exact else COARSE_KM_DECIMALS)
    return ShownPlace(
        exact=exact,
        location=None if point is None else {"lat": point[0], "lng": point[1]},
        address=address,
        distance_km=distance_km,
    )


# Where a Chinese address turns from the street to the door: a number (ASCII or
# full-width, a "#"), or a Chinese numeral before 号/弄/栋/幢/楼/室/单元/层/门.
_DOOR = re.compile(r"[0-9０-９#＃]|[一二三四五六七八九十百零〇两]+[号號弄栋棟幢楼樓室单單元层層门門座]")
# The last place name a cut address may end on: a street, lane or village; a
# subdistrict, town or district.
_STREET = re.compile(r"(?:大道|大街|胡同|街道|路|街|道|巷|弄|里|村|社区|镇|乡|(?<!小)区|县|市)")


def cut_address(address: str | None) -> str | None:
    """``address`` cut to the district/street: no house, building or flat number.

    What comes before the first number, up to the last street, village or
    district name in it ("海曙区秘密路8号602" → "海曙区秘密路"); None where no
    such name is left (a number first, a building's name, an address in
    another script)."""
    if not address:
        return None
    door = _DOOR.search(address)
    before = address[: door.start()] if door else address
    ends = [match.end() for match in _STREET.finditer(before)]
    if not ends:
        return None
    return before[: ends[-1]].strip(" ,，、") or None
