"""Organisations (志愿组织)."""

from __future__ import annotations

from flask import Response, stream_with_context
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_actor, optional_actor
from app.services import org_stats, orgs, party, record_exports, records, volunteers
from mobile_api.fields import PageQuery, page_of
from mobile_api.schemas import (
    HonorRecordCreateSchema,
    JoinCreateSchema,
    JoinRequestItemSchema,
    JoinRequestSchema,
    OrgCreateSchema,
    OrgMemberCreateSchema,
    OrgMemberItemSchema,
    OrgMemberSchema,
    OrgQuerySchema,
    OrgSchema,
    OrgStatsQuerySchema,
    OrgStatsSchema,
    PartyMemberQuerySchema,
    PartyMemberSchema,
    PeriodQuerySchema,
    RecordBulkApproveSchema,
    RecordBulkResultSchema,
    RecordQuerySchema,
    RecordSchema,
    RejectSchema,
    VolunteerVerificationSchema,
)

blp = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organisations")
AUTH = {"security": [{"bearerAuth": []}]}
PUBLIC = {"security": [{}, {"bearerAuth": []}]}
OrgPage = page_of(OrgSchema, "OrgPage")
OrgMemberPage = page_of(OrgMemberItemSchema, "OrgMemberPage")
OrgRecordPage = page_of(RecordSchema, "OrgRecordPage")
JoinRequestPage = page_of(JoinRequestItemSchema, "JoinRequestPage")
PartyMemberPage = page_of(PartyMemberSchema, "PartyMemberPage")
FILE = {"type": "string", "format": "binary"}


@blp.route("", methods=["GET"])
@blp.arguments(OrgQuerySchema, location="query")
@blp.response(200, OrgPage)
@blp.alt_response(401, description="authorization_required (mine=true without a token)")
@blp.doc(**PUBLIC)
def list_orgs(query):
    """Organisations, oldest first (public: approved ones; admins: every status; mine=true: yours, with your role)."""
    items, next_cursor = orgs.list_orgs(optional_actor(), **query)
    return {"items": items, "next_cursor": next_cursor}


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
@blp.response(200, OrgSchema)
@blp.alt_response(404, description="not_found (also an application you may not see)")
@blp.doc(**PUBLIC)
def get_org(org_id):
    """One organisation (public when approved; an application: admins and its members)."""
    return orgs.view_org(optional_actor(), org_id)


@blp.route("/<int:org_id>/approve", methods=["POST"])
@jwt_required()
@blp.response(200, OrgSchema)
@blp.alt_response(403, description="admin_required")
@blp.alt_response(409, description="org_not_pending")
@blp.doc(**AUTH)
def approve_org(org_id):
    """Approve a pending organisation (admins)."""
    return orgs.approve_org(current_actor(), org_id)


@blp.route("/<int:org_id>/reject", methods=["POST"])
@jwt_required()
@blp.arguments(RejectSchema)
@blp.response(200, OrgSchema)
@blp.alt_response(403, description="admin_required")
@blp.alt_response(409, description="org_not_pending")
@blp.doc(**AUTH)
def reject_org(body, org_id):
    """Reject a pending organisation with a reason the applicant is told (admins)."""
    return orgs.reject_org(current_actor(), org_id, body["reason"])


@blp.route("/<int:org_id>/members", methods=["GET"])
@jwt_required()
@blp.arguments(PageQuery, location="query")
@blp.response(200, OrgMemberPage)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def list_members(query, org_id):
    """The org's members and coordinators, in the order they joined (its coordinators, admins)."""
    items, next_cursor = orgs.list_members(current_actor(), org_id, cursor=query["cursor"], limit=query["limit"])
    return {"items": items, "next_cursor": next_cursor}


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
@blp.alt_response(403, description="coordinator_required, own_record")
@blp.alt_response(409, description="overlapping_record")
@blp.alt_response(422, description="volunteer_required, not_org_volunteer")
@blp.doc(**AUTH)
def add_honor_record(body, org_id):
    """Give honor hours (荣誉时长) to a volunteer of the org with a reason (coordinators); pending until approved."""
    return records.add_honor_record(current_actor(), org_id, body)


@blp.route("/<int:org_id>/records", methods=["GET"])
@jwt_required()
@blp.arguments(RecordQuerySchema, location="query")
@blp.response(200, OrgRecordPage)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def list_org_records(query, org_id):
    """The records the org records, oldest first (`?status=pending`: the review queue; coordinators, admins)."""
    items, next_cursor = records.list_org_records(current_actor(), org_id, **query)
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/<int:org_id>/records/approve", methods=["POST"])
@jwt_required()
@blp.arguments(RecordBulkApproveSchema)
@blp.response(200, RecordBulkResultSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def approve_records(body, org_id):
    """Approve many of the org's pending records at once; the ones you may not approve are skipped."""
    return records.approve_records(current_actor(), org_id, body["ids"])


@blp.route("/<int:org_id>/records.csv", methods=["GET"])
@jwt_required()
@blp.arguments(PeriodQuerySchema, location="query")
@blp.response(200, FILE, content_type="text/csv", description="UTF-8 with a BOM; one row per record.")
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def export_records_csv(query, org_id):
    """The org's service records as CSV, for the district office (its coordinators, admins)."""
    chunks = record_exports.records_csv(current_actor(), org_id, query["first"], query["last"])
    return _download(chunks, record_exports.CSV_TYPE, record_exports.export_filename(org_id, **query, extension="csv"))


@blp.route("/<int:org_id>/records.xlsx", methods=["GET"])
@jwt_required()
@blp.arguments(PeriodQuerySchema, location="query")
@blp.response(200, FILE, content_type=record_exports.XLSX_TYPE, description="One sheet, one row per record.")
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def export_records_xlsx(query, org_id):
    """The org's service records as an Excel workbook (its coordinators, admins)."""
    chunks = record_exports.records_xlsx(current_actor(), org_id, query["first"], query["last"])
    filename = record_exports.export_filename(org_id, **query, extension="xlsx")
    return _download(chunks, record_exports.XLSX_TYPE, filename)


def _download(chunks, content_type: str, filename: str) -> Response:
    """A file streamed as it is produced; the request's context (and its
    database session) lives until the last chunk is sent."""
    return Response(
        stream_with_context(chunks),
        content_type=content_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@blp.route("/<int:org_id>/stats", methods=["GET"])
@jwt_required()
@blp.arguments(OrgStatsQuerySchema, location="query")
@blp.response(200, OrgStatsSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def org_figures(query, org_id):
    """The org's figures per week or month in Asia/Shanghai (its coordinators, admins)."""
    return org_stats.org_stats(current_actor(), org_id, query["first"], query["last"], query["interval"])


# --- joining on request; party members (党员志愿者, 双报到) ------------------------------------------------------


@blp.route("/<int:org_id>/join", methods=["POST"])
@jwt_required()
@blp.arguments(JoinCreateSchema)
@blp.response(201, JoinRequestSchema)
@blp.alt_response(403, description="volunteer_required")
@blp.alt_response(409, description="already_member, join_request_pending, org_not_approved")
@blp.doc(**AUTH)
def request_to_join(body, org_id):
    """Ask to join an approved org (a volunteer); its coordinators approve or refuse.

    Joining a party branch makes you a party member of it."""
    return orgs.request_to_join(current_actor(), org_id, body["message"])


@blp.route("/<int:org_id>/join-requests", methods=["GET"])
@jwt_required()
@blp.arguments(PageQuery, location="query")
@blp.response(200, JoinRequestPage)
@blp.alt_response(403, description="coordinator_required")
@blp.doc(**AUTH)
def list_join_requests(query, org_id):
    """The org's pending requests to join, oldest first (its coordinators)."""
    items, next_cursor = orgs.list_join_requests(current_actor(), org_id, cursor=query["cursor"], limit=query["limit"])
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/<int:org_id>/join-requests/<int:user_id>/approve", methods=["POST"])
@jwt_required()
@blp.response(200, JoinRequestSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(409, description="join_request_not_pending")
@blp.doc(**AUTH)
def approve_join_request(org_id, user_id):
    """Approve a request to join: the volunteer becomes a member and is told (the org's coordinators)."""
    return orgs.approve_join(current_actor(), org_id, user_id)


@blp.route("/<int:org_id>/join-requests/<int:user_id>/reject", methods=["POST"])
@jwt_required()
@blp.arguments(RejectSchema)
@blp.response(200, JoinRequestSchema)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(409, description="join_request_not_pending")
@blp.doc(**AUTH)
def reject_join_request(body, org_id, user_id):
    """Refuse a request to join with a reason the volunteer is told (the org's coordinators)."""
    return orgs.reject_join(current_actor(), org_id, user_id, body["reason"])


@blp.route("/<int:org_id>/party-members", methods=["GET"])
@jwt_required()
@blp.arguments(PartyMemberQuerySchema, location="query")
@blp.response(200, PartyMemberPage)
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(404, description="not_found (also an org neither a community nor a party branch)")
@blp.doc(**AUTH)
def list_party_members(query, org_id):
    """A branch's members, or the party members reporting to a community, with their service.

    The service in the period (default: the current month, Asia/Shanghai) wherever it
    happened; for the coordinators of that branch or community."""
    items, next_cursor = party.list_party_members(
        current_actor(), org_id, query["first"], query["last"], cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/<int:org_id>/party-members.csv", methods=["GET"])
@jwt_required()
@blp.arguments(PeriodQuerySchema, location="query")
@blp.response(200, FILE, content_type="text/csv", description="UTF-8 with a BOM; one row per member.")
@blp.alt_response(403, description="coordinator_required")
@blp.alt_response(404, description="not_found (also an org that is not a party branch)")
@blp.doc(**AUTH)
def export_party_members_csv(query, org_id):
    """The branch's report as CSV (the branch's coordinators).

    Each member's community, recorded hours, wishes fulfilled and claims in the period."""
    first, last = party.default_period(query["first"], query["last"])
    chunks = party.party_report_csv(current_actor(), org_id, first, last)
    return _download(chunks, record_exports.CSV_TYPE, party.report_filename(org_id, first, last))
