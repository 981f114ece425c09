"""Organisations (志愿组织)."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_actor
from app.services import orgs, records, volunteers
from mobile_api.fields import page_of
from mobile_api.schemas import (
    HonorRecordCreateSchema,
    OrgCreateSchema,
    OrgMemberCreateSchema,
    OrgMemberSchema,
    OrgSchema,
    RecordQuerySchema,
    RecordSchema,
    VolunteerVerificationSchema,
)

blp = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organisations")
AUTH = {"security": [{"bearerAuth": []}]}
OrgRecordPage = page_of(RecordSchema, "OrgRecordPage")


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(OrgCreateSchema)
@blp.response(201, OrgSchema)
@blp.alt_response(409, description="org_name_taken")
@blp.doc(**AUTH)
def apply_for_org(body):
    """Apply for a new organisation; an admin approves it."""
    return orgs.apply_for_org(current_actor(), **body)


@blp.route("/<int:org_id>", methods=["GET"])
@jwt_required()
@blp.response(200, OrgSchema)
@blp.doc(**AUTH)
def get_org(org_id):
    """One organisation."""
    return orgs.get_org(org_id)


@blp.route("/<int:org_id>/approve", methods=["POST"])
@jwt_required()
@blp.response(200, OrgSchema)
@blp.alt_response(409, description="org_not_pending")
@blp.doc(**AUTH)
def approve_org(org_id):
    """Approve a pending organisation (admins)."""
    return orgs.approve_org(current_actor(), org_id)


@blp.route("/<int:org_id>/members", methods=["POST"])
@jwt_required()
@blp.arguments(OrgMemberCreateSchema)
@blp.response(201, OrgMemberSchema)
@blp.alt_response(409, description="already_member")
@blp.doc(**AUTH)
def add_member(body, org_id):
    """Add a member or coordinator (the org's coordinators, admins)."""
    return orgs.add_member(current_actor(), org_id, body["user_id"], body["role"])


@blp.route("/<int:org_id>/members/<int:user_id>", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.alt_response(409, description="last_coordinator")
@blp.doc(**AUTH)
def remove_member(org_id, user_id):
    """Remove a member (the org's coordinators, admins, or the member)."""
    orgs.remove_member(current_actor(), org_id, user_id)


@blp.route("/<int:org_id>/members/<int:user_id>/verify", methods=["POST"])
@jwt_required()
@blp.response(200, VolunteerVerificationSchema)
@blp.alt_response(403, description="coordinator_required, own_verification")
@blp.doc(**AUTH)
def verify_volunteer(org_id, user_id):
    """Mark a member's identity as checked in person (实名核验; the org's coordinators, admins)."""
    return volunteers.verify_volunteer(current_actor(), org_id, user_id)


@blp.route("/<int:org_id>/records", methods=["POST"])
@jwt_required()
@blp.arguments(HonorRecordCreateSchema)
@blp.response(201, RecordSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(422, description="volunteer_required, not_org_volunteer")
@blp.doc(**AUTH)
def add_honor_record(body, org_id):
    """Give honor hours (荣誉时长) to a volunteer of the org, with a reason (coordinators)."""
    return records.add_honor_record(current_actor(), org_id, body)


@blp.route("/<int:org_id>/records", methods=["GET"])
@jwt_required()
@blp.arguments(RecordQuerySchema, location="query")
@blp.response(200, OrgRecordPage)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def list_org_records(query, org_id):
    """The org's service records, newest first (coordinators, admins)."""
    items, next_cursor = records.list_org_records(
        current_actor(), org_id, kind=query["kind"], cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}
