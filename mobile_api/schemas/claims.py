"""Claims (认领) and finishing them."""

from __future__ import annotations

from flask_babel import gettext
from marshmallow import ValidationError, fields, post_load, validate

from app.policy import CLAIM_STATUSES, MAX_REPORTED_MINUTES, POSTING_KINDS, POSTING_STATUSES
from mobile_api.fields import BaseSchema, District, Location, NestedFrom, PageQuery, StrictBoolean, UTCDateTime
from mobile_api.schemas.party import PartySchema
from mobile_api.schemas.photos import PhotoSchema, photo_ids_field


class PersonSchema(BaseSchema):
    id = fields.Integer()
    display_name = fields.String()


class RatingSchema(BaseSchema):
    """A volunteer's reputation: the ratings of their confirmed work."""

    average = fields.Float(allow_none=True, metadata={"description": "1-5, 2 decimals; null before the first rating."})
    count = fields.Integer(metadata={"description": "Confirmations with a rating (auto-confirmed ones carry none)."})


class ClaimVolunteerSchema(PersonSchema):
    rating = fields.Nested(
        RatingSchema, metadata={"optional": True, "description": "Shown to the posting's managers only (else absent)."}
    )
    party = fields.Nested(
        PartySchema,
        metadata={
            "optional": True,
            "description": "A party member's branch and community: shown to the claimant and to the coordinators "
            "of that branch and community only (else absent).",
        },
    )


def _claim_volunteer(claim) -> dict:
    person = {"id": claim.user.id, "display_name": claim.user.display_name}
    rating = getattr(claim, "volunteer_rating", None)
    if rating is not None:
        person["rating"] = rating
    party = getattr(claim, "volunteer_party", None)
    if party is not None:
        person["party"] = party
    return person


class ClaimSchema(BaseSchema):
    id = fields.Integer()
    posting_id = fields.Integer()
    kind = fields.String(metadata={"enum": list(POSTING_KINDS)})
    status = fields.String(metadata={"enum": list(CLAIM_STATUSES)})
    message = fields.String(allow_none=True)
    volunteer = NestedFrom(ClaimVolunteerSchema, source=_claim_volunteer)
    claimed_at = UTCDateTime()
    due_at = UTCDateTime(allow_none=True)
    fulfilled_at = UTCDateTime(allow_none=True)
    confirmed_at = UTCDateTime(allow_none=True)
    check_in_at = UTCDateTime(allow_none=True)
    check_out_at = UTCDateTime(allow_none=True)
    note = fields.String(allow_none=True)
    photos = fields.List(
        fields.Nested(PhotoSchema),
        metadata={"description": "The fulfilment's, for whoever may see the claim."},
    )
    private_photos = fields.Boolean(
        allow_none=True,
        attribute="photos_private",
        metadata={
            "description": "A confirmed wish: true when its photos stay with the claim instead of its "
            "public story (chosen at confirm; an auto-confirmed one stays private). Null before, and for "
            "other kinds."
        },
    )
    rating = fields.Integer(allow_none=True)
    feedback = fields.String(allow_none=True)
    minutes = fields.Integer(
        allow_none=True,
        metadata={
            "description": "Service time: reported at fulfilment (lowered at confirmation), or measured on site."
        },
    )
    ended_at = UTCDateTime(allow_none=True)
    auto_confirmed = fields.Boolean(metadata={"description": "Confirmed by the scheduler, nobody having confirmed it."})
    energy_debited = fields.Integer(metadata={"description": "Energy points taken at claim time (微能量)."})


class ClaimPostingSchema(BaseSchema):
    """The posting a claim belongs to, in brief."""

    id = fields.Integer()
    kind = fields.String(metadata={"enum": list(POSTING_KINDS)})
    title = fields.String()
    status = fields.String(metadata={"enum": list(POSTING_STATUSES)})
    district = District()
    address = fields.String(allow_none=True)
    location = NestedFrom(
        Location,
        allow_none=True,
        source=lambda p: None if p.lat is None or p.lng is None else {"lat": p.lat, "lng": p.lng},
    )
    org_id = fields.Integer(allow_none=True)
    starts_at = UTCDateTime(allow_none=True)
    ends_at = UTCDateTime(allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    energy_cost = fields.Integer(allow_none=True)


class MyClaimSchema(ClaimSchema):
    posting = fields.Nested(ClaimPostingSchema, attribute="posting_brief", allow_none=True)


# A comma-separated list of claim statuses (blanks and empty parts ignored), as split below.
_ONE_STATUS = "(?:" + "|".join(CLAIM_STATUSES) + ")"
_STATUS_LIST = rf"^\s*{_ONE_STATUS}?\s*(?:,\s*{_ONE_STATUS}?\s*)*$"


class ClaimQuerySchema(PageQuery):
    status = fields.List(
        fields.String(metadata={"pattern": _STATUS_LIST}),
        load_default=None,
        metadata={"description": "Repeatable or comma-separated: " + ", ".join(CLAIM_STATUSES)},
    )

    @post_load
    def split_statuses(self, data, **_kwargs):
        if data.get("status"):
            statuses = [part.strip() for item in data["status"] for part in item.split(",") if part.strip()]
            unknown = sorted(set(statuses) - set(CLAIM_STATUSES))
            if unknown:
                raise ValidationError(gettext("Unknown status %(names)s.", names=", ".join(unknown)), "status")
            data["status"] = statuses
        return data


class ClaimCreateSchema(BaseSchema):
    message = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class ClaimFulfilSchema(BaseSchema):
    note = fields.String(required=True, validate=validate.Length(min=1, max=2000))
    photo_ids = photo_ids_field("fulfil", load_default=list)
    minutes = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(1, MAX_REPORTED_MINUTES),
        metadata={"description": f"The time the work took, 1-{MAX_REPORTED_MINUTES} minutes."},
    )


class ClaimConfirmSchema(BaseSchema):
    rating = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(1, 5),
        metadata={"description": "1-5; required for a wish or a service."},
    )
    feedback = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=1000))
    minutes = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(0, MAX_REPORTED_MINUTES),
        metadata={"description": "The minutes to credit: the reported ones (default) or fewer, never more."},
    )
    private_photos = StrictBoolean(
        load_default=False,
        metadata={
            "description": "A wish: true keeps the fulfilment's photos and note off the posting's public story "
            "(they stay with those who see the claim). Default false: the story is shown to everyone."
        },
    )


class SiteLocationSchema(Location):
    """Where the phone is when checking in or out."""
