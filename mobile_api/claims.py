"""Claims (认领): claim a posting, and carry the claim to its end."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_actor
from app.services import claims
from mobile_api.fields import page_of
from mobile_api.schemas import (
    ClaimConfirmSchema,
    ClaimCreateSchema,
    ClaimFulfilSchema,
    ClaimQuerySchema,
    ClaimSchema,
    SiteLocationSchema,
)

blp = Blueprint("claims", __name__, url_prefix="/api/v1", description="Claims (认领) and finishing them")
AUTH = {"security": [{"bearerAuth": []}]}
ClaimPage = page_of(ClaimSchema, "ClaimPage")


@blp.route("/postings/<int:posting_id>/claims", methods=["POST"])
@jwt_required()
@blp.arguments(ClaimCreateSchema)
@blp.response(201, ClaimSchema)
@blp.alt_response(
    409,
    description="already_claimed, posting_full, posting_not_open, duplicate_claim, active_claim_limit, "
    "insufficient_energy",
)
@blp.alt_response(403, description="volunteer_required, own_posting")
@blp.doc(**AUTH)
def claim_posting(body, posting_id):
    """Claim a posting: take on a wish, sign up, book a service, redeem a reward.

    The claim is `active`, or `waitlisted` when a project or charity is full."""
    return claims.claim_posting(current_actor(), posting_id, body.get("message"))


@blp.route("/postings/<int:posting_id>/claims", methods=["GET"])
@jwt_required()
@blp.arguments(ClaimQuerySchema, location="query")
@blp.response(200, ClaimPage)
@blp.alt_response(403, description="poster_required")
@blp.doc(**AUTH)
def list_posting_claims(query, posting_id):
    """A posting's claims in sign-up order (its poster, coordinators, admins)."""
    items, next_cursor = claims.list_posting_claims(
        current_actor(), posting_id, statuses=query["status"], cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/claims/<int:claim_id>", methods=["GET"])
@jwt_required()
@blp.response(200, ClaimSchema)
@blp.doc(**AUTH)
def get_claim(claim_id):
    """One claim (its claimant, the poster, the posting's coordinators, admins)."""
    return claims.get_claim(current_actor(), claim_id)


@blp.route("/claims/<int:claim_id>/withdraw", methods=["POST"])
@jwt_required()
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="claim_not_active, already_checked_in, event_ended")
@blp.doc(**AUTH)
def withdraw_claim(claim_id):
    """Give the claim up; its place goes to the first waitlisted claim."""
    return claims.withdraw_claim(current_actor(), claim_id)


@blp.route("/claims/<int:claim_id>/fulfil", methods=["POST"])
@jwt_required()
@blp.arguments(ClaimFulfilSchema)
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="claim_not_active, wrong_claim_kind")
@blp.alt_response(422, description="invalid_photo, photo_not_uploaded")
@blp.alt_response(503, description="service_unavailable (the photo storage; retry after Retry-After)")
@blp.doc(**AUTH)
def fulfil_claim(body, claim_id):
    """Mark done: the claimant of a wish, or the provider of a service.

    `photo_ids` are uploads of yours for `fulfil` (`POST /api/v1/uploads`): each is checked
    and re-encoded without its metadata when first used; whoever may see the claim sees them."""
    return claims.fulfil_claim(current_actor(), claim_id, body["note"], body["photo_ids"], body["minutes"])


@blp.route("/claims/<int:claim_id>/confirm", methods=["POST"])
@jwt_required()
@blp.arguments(ClaimConfirmSchema)
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="claim_not_fulfilled, claim_not_active, wrong_claim_kind")
@blp.doc(**AUTH)
def confirm_claim(body, claim_id):
    """Confirm and rate; writes the service record and the energy.

    A confirmed wish shows its fulfilment (note and photos) to everyone as the posting's `story`,
    unless `private_photos` is true."""
    return claims.confirm_claim(
        current_actor(), claim_id, body["rating"], body["feedback"], body["minutes"], body["private_photos"]
    )


@blp.route("/claims/<int:claim_id>/check-in", methods=["POST"])
@jwt_required()
@blp.arguments(SiteLocationSchema)
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="already_checked_in, check_in_not_open, claim_not_active, wrong_claim_kind")
@blp.alt_response(422, description="too_far_from_site")
@blp.doc(**AUTH)
def check_in(body, claim_id):
    """Check in on site (签到): within 500 m, from 30 minutes before the start."""
    return claims.check_in(current_actor(), claim_id, body["lat"], body["lng"])


@blp.route("/claims/<int:claim_id>/check-out", methods=["POST"])
@jwt_required()
@blp.arguments(SiteLocationSchema)
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="not_checked_in, claim_not_active, wrong_claim_kind")
@blp.alt_response(422, description="too_far_from_site")
@blp.doc(**AUTH)
def check_out(body, claim_id):
    """Check out on site (签退); writes the credit-hours record."""
    return claims.check_out(current_actor(), claim_id, body["lat"], body["lng"])


@blp.route("/claims/<int:claim_id>/no-show", methods=["POST"])
@jwt_required()
@blp.response(200, ClaimSchema)
@blp.alt_response(409, description="event_not_ended, already_checked_in, claim_not_active")
@blp.doc(**AUTH)
def mark_no_show(claim_id):
    """Mark a volunteer who never came (coordinators, after the end)."""
    return claims.mark_no_show(current_actor(), claim_id)
