"""What a posting's fields must be, kind by kind (the policy's field rules).

Used on create and on every edit, against the whole posting as it would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext

from app.errors import Invalid
from app.extensions import db
from app.geo import geocell_for
from app.models import PostingTag
from app.policy import KindPolicy, kind_name
from app.services.lifecycle import tag_place

# Body fields that map one-to-one onto columns.
PLAIN_FIELDS = (
    "title",
    "description",
    "district",
    "address",
    "capacity",
    "starts_at",
    "ends_at",
    "expires_at",
    "claim_ttl_hours",
    "energy_cost",
)
BENEFICIARY_FIELDS = ("beneficiary_name", "beneficiary_phone", "beneficiary_address")
# Columns a reviewer looked at: a resident changing one sends the posting back to review.
REVIEWED_COLUMNS = frozenset(
    {"title", "description", "district", "address", "lat", "lng", "photos", "tags", *BENEFICIARY_FIELDS}
)


def check_fields(
    policy: KindPolicy, values: dict[str, Any], now: datetime, changed: set[str], creating: bool = False
) -> None:
    """422 unless ``values`` (the whole posting) fit ``policy``; fills defaults.

    Rules relative to now (in the future, within 90 days) apply to the fields
    being set, so an edit of the title does not trip over an old start time.
    """
    district = values.get("district")
    if "district" in changed and district not in current_app.config["DISTRICTS"]:
        raise Invalid("district", gettext("Unknown district."))

    capacity = values.get("capacity")
    if policy.capacity == "one":
        if capacity not in (None, 1):
            raise Invalid("capacity", gettext("A wish is taken on by exactly one volunteer; its capacity is 1."))
        values["capacity"] = 1
    elif policy.capacity_required and capacity is None:
        if policy.capacity == "stock":
            raise Invalid("capacity", gettext("Required: the stock of this reward."))
        raise Invalid("capacity", gettext("Required: the number of places."))

    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if policy.needs_schedule:
        for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
            if value is None:
                raise Invalid(name, gettext("Required for a %(kind)s.", kind=kind_name(policy.kind)))
    if starts_at is not None and ends_at is not None and starts_at >= ends_at:
        raise Invalid("ends_at", gettext("Must be after starts_at."))
    if ends_at is not None and "ends_at" in changed and ends_at <= now:
        raise Invalid("ends_at", gettext("Must be in the future."))

    if values.get("expires_at") is None and policy.default_expiry_days and creating:
        values["expires_at"] = now + timedelta(days=policy.default_expiry_days)
    expires_at = values.get("expires_at")
    if expires_at is not None and "expires_at" in changed:
        if expires_at <= now:
            raise Invalid("expires_at", gettext("Must be in the future."))
        if policy.max_expiry_days and expires_at > now + timedelta(days=policy.max_expiry_days):
            raise Invalid("expires_at", gettext("At most %(days)d days from now.", days=policy.max_expiry_days))

    if policy.claim_ttl_hours:
        if values.get("claim_ttl_hours") is None:
            values["claim_ttl_hours"] = policy.claim_ttl_hours
    elif values.get("claim_ttl_hours") is not None and "claim_ttl_hours" in changed:
        raise Invalid("claim_ttl_hours", gettext("A %(kind)s has no claim deadline.", kind=kind_name(policy.kind)))

    if policy.has_energy_cost:
        if not values.get("energy_cost"):
            raise Invalid("energy_cost", gettext("Required: the energy points this reward costs (more than 0)."))
    elif values.get("energy_cost") is not None and "energy_cost" in changed:
        raise Invalid(
            "energy_cost",
            gettext("Only an energy reward has an energy cost, not a %(kind)s.", kind=kind_name(policy.kind)),
        )


def no_beneficiary(policy: KindPolicy) -> Invalid:
    return Invalid(
        "beneficiary", gettext("Only a wish has a beneficiary, not a %(kind)s.", kind=kind_name(policy.kind))
    )


def trimmed(values: dict[str, Any]) -> dict[str, Any]:
    """Texts without surrounding blanks; a blank address is no address."""
    for name in ("title", "description", "address"):
        if isinstance(values.get(name), str):
            values[name] = values[name].strip() or None
    return values


def apply_location(values: dict[str, Any], location: Mapping[str, float] | None) -> None:
    """Set lat/lng and keep the geocell (the nearby index) in step with them."""
    lat, lng = (location["lat"], location["lng"]) if location else (None, None)
    values.update(lat=lat, lng=lng, geocell=geocell_for(lat, lng))


def tag_rows(tags: Sequence[str], kind: str, status: str, lat: float | None, lng: float | None) -> list[dict]:
    """The rows of a posting's tags, each with the copy of its point the tag index
    keeps (:func:`app.services.lifecycle.tag_place`)."""
    place = tag_place(kind, status, lat, lng)
    return [{"tag": tag, "position": i, **place} for i, tag in enumerate(normalise_tags(tags))]


def move_tags(posting_id: int, kind: str, status: str, lat: float | None, lng: float | None) -> None:
    """The posting moved: its tags' copies of its point follow."""
    db.session.execute(
        sa.update(PostingTag)
        .where(PostingTag.posting_id == posting_id)
        .values(**tag_place(kind, status, lat, lng))
        .execution_options(synchronize_session=False)
    )


def normalise_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, de-duplicated, in the order given."""
    seen: dict[str, None] = {}
    for tag in tags:
        text = tag.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)
