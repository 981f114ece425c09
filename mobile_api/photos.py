"""Photos (照片): upload URLs. The bytes go straight to object storage, never through the API."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_actor
from app.services import photos
from mobile_api.schemas import UploadCreateSchema, UploadSchema

blp = Blueprint("photos", __name__, url_prefix="/api/v1", description="Photos: uploads to object storage")
AUTH = {"security": [{"bearerAuth": []}]}


@blp.route("/uploads", methods=["POST"])
@jwt_required()
@blp.arguments(UploadCreateSchema)
@blp.response(201, UploadSchema)
@blp.alt_response(409, description="upload_limit")
@blp.alt_response(503, description="service_unavailable (the photo storage; retry after Retry-After)")
@blp.doc(**AUTH)
def create_upload(body):
    """Ask for a photo upload: a presigned PUT for the bytes, valid 10 minutes.

    PUT the file's bytes to `upload.url` with `upload.headers`, then use `photo_id`: a
    posting's or a fulfilment's `photo_ids`, or `PATCH /api/v1/me {avatar_photo_id}`, as
    `purpose` says. An upload not used within a day is deleted."""
    return photos.create_upload(current_actor(), body["purpose"], body["content_type"], body["size"])
