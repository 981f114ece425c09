"""The five micro-postings (五微): post, browse, review, edit, cancel."""

from __future__ import annotations

from flask import Response, jsonify
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.database import read_only
from app.security import current_actor, optional_actor
from app.services import feed, matching, postings
from mobile_api.fields import page_of
from mobile_api.schemas import (
    CancelSchema,
    PostingCreateSchema,
    PostingQuerySchema,
    PostingSchema,
    PostingUpdateSchema,
    RejectSchema,
)
from mobile_api.schemas.postings import dump_posting

blp = Blueprint("postings", __name__, url_prefix="/api/v1/postings", description="The five micro-postings (五微)")
AUTH = {"security": [{"bearerAuth": []}]}
PUBLIC = {"security": [{}, {"bearerAuth": []}]}
PostingPageSchema = page_of(PostingSchema, "PostingPage")


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(PostingCreateSchema)
@blp.response(201, PostingSchema)
@blp.alt_response(403, description="coordinator_required, volunteer_required")
@blp.alt_response(409, description="org_not_approved")
@blp.alt_response(422, description="invalid_photo, photo_not_uploaded")
@blp.alt_response(503, description="service_unavailable (the photo storage; retry after Retry-After)")
@blp.doc(**AUTH)
def create_posting(body):
    """Post a wish, project, charity activity, service or energy reward.

    `photo_ids` are uploads of yours for `posting` (`POST /api/v1/uploads`), checked and
    re-encoded without their metadata when first used; they are public like the posting."""
    return postings.create_posting(current_actor(), body)


@blp.route("", methods=["GET"])
@blp.arguments(PostingQuerySchema, location="query")
@blp.response(200, PostingPageSchema)
@blp.alt_response(401, description="for_me without a token")
@blp.alt_response(403, description="volunteer_required (for_me)")
@blp.doc(**PUBLIC)
@read_only
def list_postings(query):
    """The wish wall: filters, nearby search, keyset pages (public); `for_me`: what fits you."""
    if query["for_me"]:
        items, next_cursor = matching.postings_for_me(
            optional_actor(), kinds=query.get("kind"), cursor=query["cursor"], limit=query["limit"]
        )
        return _page(items, next_cursor)
    near = query.get("near")
    items, next_cursor = feed.list_postings(
        optional_actor(),
        kinds=query.get("kind"),
        statuses=query.get("status"),
        district=query.get("district"),
        tags=query.get("tag"),
        org_id=query.get("org_id"),
        author_id=query.get("author_id"),
        near=feed.Near(near["lat"], near["lng"], query["radius_km"]) if near else None,
        sort=query["sort"],
        cursor=query["cursor"],
        limit=query["limit"],
    )
    return _page(items, next_cursor)


def _page(items, next_cursor) -> Response:
    """A page of postings dumped straight to JSON (``dump_posting``): what
    ``PostingPageSchema`` would give, without running it on every field."""
    return jsonify({"items": [dump_posting(item) for item in items], "next_cursor": next_cursor})


@blp.route("/<int:posting_id>", methods=["GET"])
@blp.response(200, PostingSchema)
@blp.doc(**PUBLIC)
@read_only
def get_posting(posting_id):
    """One posting (public; pending and rejected ones only for those allowed)."""
    return jsonify(dump_posting(postings.get_posting(optional_actor(), posting_id)))


@blp.route("/<int:posting_id>", methods=["PATCH"])
@jwt_required()
@blp.arguments(PostingUpdateSchema, required=False)  # an empty body changes nothing
@blp.response(200, PostingSchema)
@blp.alt_response(403, description="poster_required, coordinator_required")
@blp.alt_response(409, description="posting_claimed, posting_not_editable")
@blp.alt_response(422, description="invalid_photo, photo_not_uploaded")
@blp.alt_response(503, description="service_unavailable (the photo storage; retry after Retry-After)")
@blp.doc(**AUTH)
def update_posting(body, posting_id):
    """Edit (author, the org's coordinators); once claimed only expires_at may be extended."""
    return postings.update_posting(current_actor(), posting_id, body)


@blp.route("/<int:posting_id>/approve", methods=["POST"])
@jwt_required()
@blp.response(200, PostingSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(409, description="posting_not_pending")
@blp.doc(**AUTH)
def approve_posting(posting_id):
    """Approve a pending posting (coordinators of its org or district; admins)."""
    return postings.approve_posting(current_actor(), posting_id)


@blp.route("/<int:posting_id>/reject", methods=["POST"])
@jwt_required()
@blp.arguments(RejectSchema)
@blp.response(200, PostingSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(409, description="posting_not_pending")
@blp.doc(**AUTH)
def reject_posting(body, posting_id):
    """Reject a pending posting with a reason the author is told."""
    return postings.reject_posting(current_actor(), posting_id, body["reason"])


@blp.route("/<int:posting_id>/cancel", methods=["POST"])
@jwt_required()
@blp.arguments(CancelSchema)
@blp.response(200, PostingSchema)
@blp.alt_response(403, description="poster_required")
@blp.alt_response(409, description="posting_not_cancellable")
@blp.doc(**AUTH)
def cancel_posting(body, posting_id):
    """Cancel (author, the org's coordinators); live claims are cancelled and told."""
    return postings.cancel_posting(current_actor(), posting_id, body.get("reason"))
