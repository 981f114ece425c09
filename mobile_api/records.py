"""Service records (志愿服务记录) under review: approve or reject one."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_actor
from app.services import records
from mobile_api.schemas import RecordSchema, RejectSchema

blp = Blueprint("records", __name__, url_prefix="/api/v1/records", description="Service records under review")
AUTH = {"security": [{"bearerAuth": []}]}


@blp.route("/<int:record_id>/approve", methods=["POST"])
@jwt_required()
@blp.response(200, RecordSchema)
@blp.alt_response(403, description="own_record, coordinator_required, second_person_required")
@blp.alt_response(404, description="not_found (also a record you may not see)")
@blp.alt_response(409, description="record_not_pending")
@blp.doc(**AUTH)
def approve_record(record_id):
    """Approve a pending record, which counts from now on (its org's coordinators but its maker, admins).

    Never one's own record (`own_record`), nor one you made (`second_person_required`)."""
    return records.approve_record(current_actor(), record_id)


@blp.route("/<int:record_id>/reject", methods=["POST"])
@jwt_required()
@blp.arguments(RejectSchema)
@blp.response(200, RecordSchema)
@blp.alt_response(403, description="own_record, coordinator_required")
@blp.alt_response(404, description="not_found (also a record you may not see)")
@blp.alt_response(409, description="record_not_pending")
@blp.doc(**AUTH)
def reject_record(body, record_id):
    """Reject a pending record with a reason the volunteer is told (the org's coordinators, admins)."""
    return records.reject_record(current_actor(), record_id, body["reason"])
