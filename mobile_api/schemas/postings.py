"""The five micro-postings (五微)."""

from __future__ import annotations

from flask_babel import gettext
from marshmallow import ValidationError, fields, validate, validates_schema

from app.clock import isoformat
from app.policy import POSTING_KINDS, POSTING_STATUSES
from app.services.feed import SORTS
from app.validators import as_json_schema_reads
from mobile_api.fields import (
    BaseSchema,
    District,
    Id,
    Location,
    PageQuery,
    Phone,
    UTCDateTime,
    not_blank,
)
from mobile_api.schemas.claims import ClaimSchema, PersonSchema
from mobile_api.schemas.photos import PhotoSchema, StorySchema, photo_ids_field


def _unique_tags(value: list[str]) -> None:
    if len({tag.strip() for tag in value}) != len(value):
        raise ValidationError(gettext("Tags must be unique."))


# Decimal degrees as a client writes them: a latitude from -90 to 90, a longitude from
# -180 to 180, a comma between (no spaces, exponents or signs but a minus).
_LAT = r"-?(?:90(?:\.0+)?|[1-8]?[0-9](?:\.[0-9]+)?)"
_LNG = r"-?(?:180(?:\.0+)?|(?:1[0-7][0-9]|[1-9]?[0-9])(?:\.[0-9]+)?)"
LAT_LNG_PATTERN = f"^{_LAT},{_LNG}$"
_LAT_LNG = as_json_schema_reads(LAT_LNG_PATTERN)


class LatLng(fields.String):
    """``near=29.87,121.55``: WGS-84 latitude and longitude, loaded as ``{lat, lng}``;
    the document states :data:`LAT_LNG_PATTERN`, which is what is accepted."""

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"pattern": LAT_LNG_PATTERN, **(kwargs.get("metadata") or {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _LAT_LNG.search(text):
            raise ValidationError(gettext("Use lat,lng in decimal degrees, e.g. 29.87,121.55."))
        lat, lng = (float(part) for part in text.split(","))
        return {"lat": lat, "lng": lng}


_TITLE = {"validate": [validate.Length(min=1, max=80), not_blank]}
_DESCRIPTION = {"validate": [validate.Length(min=1, max=2000), not_blank]}
_ADDRESS = {
    "allow_none": True,
    "validate": validate.Length(max=200),
    "metadata": {"description": "Public meeting place."},
}
_TAG_LIST = {
    "validate": [validate.Length(max=10), _unique_tags],
    "metadata": {"uniqueItems": True, "description": "At most 10 tags of at most 20 characters, each once."},
}


def _tag() -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=20), not_blank])


class PostingOrgSchema(BaseSchema):
    id = fields.Integer()
    name = fields.String()


class BeneficiarySchema(BaseSchema):
    name_masked = fields.String(allow_none=True, metadata={"description": "张* — shown to everyone."})
    # Left out (not null) for everyone else: "optional" keeps them out of the document's required.
    phone = fields.String(
        allow_none=True,
        metadata={
            "optional": True,
            "description": "Only for the active claimant, the author, the org's coordinators and admins.",
        },
    )
    address = fields.String(
        allow_none=True,
        metadata={
            "optional": True,
            "description": "Exact address; only for the viewers who see the phone. Never in lists.",
        },
    )


class BeneficiaryInputSchema(BaseSchema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=40), not_blank])
    phone = Phone(allow_none=True)
    address = fields.String(allow_none=True, validate=validate.Length(max=200))


class PostingMatchSchema(BaseSchema):
    """How a posting fits the viewer ("for me")."""

    skills = fields.List(fields.String(), metadata={"description": "The viewer's skill codes the tags name."})
    distance_km = fields.Float(metadata={"description": "From the viewer's home."})


class PostingSchema(BaseSchema):
    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(POSTING_KINDS)})
    title = fields.String()
    description = fields.String()
    status = fields.String(metadata={"enum": list(POSTING_STATUSES)})
    district = District()
    address = fields.String(allow_none=True)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(fields.String(), attribute="tag_names")
    photos = fields.List(fields.Nested(PhotoSchema), metadata={"description": "Public like the posting."})
    story = fields.Nested(
        StorySchema,
        allow_none=True,
        metadata={
            "description": "A confirmed wish's fulfilment, for everyone (微故事); null before, and when the "
            "confirmer kept the photos private (private_photos)."
        },
    )
    org = fields.Nested(PostingOrgSchema, allow_none=True)
    author = fields.Nested(PersonSchema)
    capacity = fields.Integer(allow_none=True, metadata={"description": "null: unlimited."})
    claimed_count = fields.Integer()
    waitlist_count = fields.Integer()
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    claim_ttl_hours = fields.Integer(allow_none=True)
    energy_cost = fields.Integer(allow_none=True)
    beneficiary = fields.Nested(BeneficiarySchema)
    my_claim = fields.Nested(ClaimSchema, allow_none=True, metadata={"description": "The viewer's claim, if any."})
    distance_km = fields.Float(
        allow_none=True, metadata={"description": "From `near` (or, with `for_me`, from home), when given."}
    )
    match = fields.Nested(PostingMatchSchema, allow_none=True, metadata={"description": "Only with `for_me`."})
    reject_reason = fields.String(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
    reviewed_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


_PHOTOS = PhotoSchema(many=True)
_STORY = StorySchema()
_CLAIM = ClaimSchema()


def dump_posting(view) -> dict:
    """``PostingSchema().dump(view)`` written out by hand, for the hot reads (the
    feed, ``for_me``, a posting's page): the same keys in the same order, the
    same values in the same formats, in a tenth of the time. The schema stays
    what the OpenAPI document describes and what every other response of a
    posting is dumped with; ``tests/test_dumping.py`` checks the two agree,
    field for field, for every kind of posting and viewer. What is rare on a
    page (photos, a story, the viewer's claim) goes through its own schema."""
    posting, author, org, match = view.posting, view.author, view.org, view.match
    distance_km = view.distance_km
    return {
        "id": posting.id,
        "kind": posting.kind,
        "title": posting.title,
        "description": posting.description,
        "status": posting.status,
        "district": posting.district,
        "address": view.address,
        "location": _location(view.location),
        "tags": list(view.tag_names),
        "photos": _PHOTOS.dump(view.photos) if view.photos else [],
        "story": None if view.story is None else _STORY.dump(view.story),
        "org": None if org is None else {"id": org["id"], "name": org["name"]},
        "author": {"id": author["id"], "display_name": author["display_name"]},
        "capacity": posting.capacity,
        "claimed_count": posting.claimed_count,
        "waitlist_count": posting.waitlist_count,
        "starts_at": isoformat(posting.starts_at),
        "ends_at": isoformat(posting.ends_at),
        "expires_at": isoformat(posting.expires_at),
        "claim_ttl_hours": posting.claim_ttl_hours,
        "energy_cost": posting.energy_cost,
        "beneficiary": dict(view.beneficiary),
        "my_claim": None if view.my_claim is None else _CLAIM.dump(view.my_claim),
        "distance_km": None if distance_km is None else float(distance_km),
        "match": None if match is None else _match(match),
        "reject_reason": view.reject_reason,
        "cancel_reason": posting.cancel_reason,
        "reviewed_at": isoformat(posting.reviewed_at),
        "created_at": isoformat(posting.created_at),
        "updated_at": isoformat(posting.updated_at),
    }


def _location(location: dict | None) -> dict | None:
    return None if location is None else {"lat": float(location["lat"]), "lng": float(location["lng"])}


def _match(match: dict) -> dict:
    distance_km = match["distance_km"]
    return {"skills": list(match["skills"]), "distance_km": None if distance_km is None else float(distance_km)}


class PostingCreateSchema(BaseSchema):
    kind = fields.String(required=True, validate=validate.OneOf(POSTING_KINDS))
    title = fields.String(required=True, **_TITLE)
    description = fields.String(required=True, **_DESCRIPTION)
    org_id = Id(allow_none=True, metadata={"description": "The org this is posted for."})
    district = District(required=True)
    address = fields.String(**_ADDRESS)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(_tag(), **_TAG_LIST)
    photo_ids = photo_ids_field("posting")
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True, metadata={"description": "Wishes: within 90 days, default 30."})
    claim_ttl_hours = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(1, 720), metadata={"description": "Wishes; 168."}
    )
    energy_cost = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    beneficiary = fields.Nested(
        BeneficiaryInputSchema, allow_none=True, metadata={"description": "Wishes posted by a coordinator."}
    )


class PostingUpdateSchema(BaseSchema):
    title = fields.String(**_TITLE)
    description = fields.String(**_DESCRIPTION)
    district = District()
    address = fields.String(**_ADDRESS)
    location = fields.Nested(Location, allow_none=True)
    tags = fields.List(_tag(), **_TAG_LIST)
    photo_ids = photo_ids_field("posting")
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 100_000))
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(metadata={"description": "May always be extended (wishes: up to 90 days from now)."})
    claim_ttl_hours = fields.Integer(strict=True, validate=validate.Range(1, 720))
    energy_cost = fields.Integer(strict=True, validate=validate.Range(1, 100_000))
    beneficiary = fields.Nested(BeneficiaryInputSchema)


# "for me" has its own place (home), order and statuses: it takes these only.
FOR_ME_PARAMETERS = frozenset({"for_me", "kind", "limit", "cursor"})


class PostingQuerySchema(PageQuery):
    kind = fields.List(fields.String(validate=validate.OneOf(POSTING_KINDS)), metadata={"description": "Repeatable."})
    status = fields.List(
        fields.String(validate=validate.OneOf(POSTING_STATUSES)),
        metadata={
            "description": "Repeatable; default open. `pending_review` alone is the review queue: what the caller "
            "may review (never their own postings), oldest first; with `author_id` = the caller, their own "
            "postings waiting for review."
        },
    )
    district = District()
    tag = fields.List(_tag(), validate=validate.Length(max=10), metadata={"description": "Repeatable; any of."})
    org_id = Id(strict=False)
    author_id = Id(strict=False)
    near = LatLng(metadata={"description": "lat,lng — adds distance_km to each item.", "example": "29.87,121.55"})
    radius_km = fields.Float(
        load_default=3.0,
        allow_nan=False,
        validate=validate.Range(0.5, 50),
        metadata={
            "description": "With near; default 3, at least 0.5, at most 50. A wish (someone's home) is "
            "filtered, sorted and measured on its rounded point unless you are one of its contacts."
        },
    )
    sort = fields.String(
        load_default=None,
        validate=validate.OneOf(SORTS),
        metadata={"description": "Default newest (the review queue: oldest first); distance needs near."},
    )
    for_me = fields.Boolean(
        load_default=False,
        metadata={
            "description": "The open wishes, projects and charity activities within your push radius of home, "
            "best match first: your skills their tags name (most first), distance, the nearest deadline. "
            "Needs a volunteer's token (401, 403 volunteer_required, 422 home_required without a home point); "
            "your own postings and those you hold a live claim on are left out. Takes kind, limit and cursor only."
        },
    )

    @validates_schema
    def distance_needs_near(self, data, **_kwargs):
        if data.get("sort") == "distance" and data.get("near") is None:
            raise ValidationError(gettext("sort=distance needs near=lat,lng."), "sort")

    @validates_schema(pass_original=True)
    def for_me_has_its_own_order(self, data, original, **_kwargs):
        if data.get("for_me"):
            others = sorted(set(original) - FOR_ME_PARAMETERS)
            if others:
                raise ValidationError(
                    gettext("for_me takes only %(names)s.", names=", ".join(sorted(FOR_ME_PARAMETERS))), others[0]
                )


class RejectSchema(BaseSchema):
    reason = fields.String(required=True, validate=[validate.Length(min=1, max=500), not_blank])


class CancelSchema(BaseSchema):
    reason = fields.String(allow_none=True, validate=validate.Length(max=500))
