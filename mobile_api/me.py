"""The signed-in user: profile, password, phone, consent, the copy of their data,
deletion of the account, and volunteer registration."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.database import read_only
from app.extensions import limiter
from app.security import current_actor, current_user, user_rate_key
from app.services import accounts, claims, deletion, energy, party, personal_data, records, volunteers
from mobile_api.fields import PageQuery, page_of
from mobile_api.schemas import (
    ClaimQuerySchema,
    CommunityReportCreateSchema,
    ConsentSchema,
    DeletionScheduledSchema,
    DeletionSchema,
    EnergySchema,
    ExportSchema,
    MyClaimSchema,
    PartySchema,
    PasswordChangeSchema,
    PhoneChangeSchema,
    RecordQuerySchema,
    RecordSchema,
    RecordSummarySchema,
    UserSchema,
    UserUpdateSchema,
    VolunteerRegisterSchema,
    VolunteerSchema,
)

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")
AUTH = {"security": [{"bearerAuth": []}]}
MyClaimPage = page_of(MyClaimSchema, "MyClaimPage")
RecordPage = page_of(RecordSchema, "RecordPage")


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, UserSchema)
@blp.doc(**AUTH)
@read_only
def get_me():
    """The signed-in user."""
    return current_user()


@blp.route("", methods=["PATCH"])
@jwt_required()
@blp.arguments(UserUpdateSchema, required=False)  # an empty body changes nothing
@blp.response(200, UserSchema)
@blp.alt_response(409, description="email_taken")
@blp.alt_response(422, description="invalid_photo, photo_not_uploaded")
@blp.alt_response(503, description="service_unavailable (the photo storage; retry after Retry-After)")
@blp.doc(**AUTH)
def update_me(body):
    """Change the profile.

    `avatar_photo_id`: an upload of yours for `avatar` becomes `avatar` (null removes it)."""
    return accounts.update_profile(current_user(), body)


@blp.route("/password", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PASSWORD"], key_func=user_rate_key, scope="password")
@jwt_required()
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
@blp.doc(**AUTH)
def change_password(body):
    """Change the password; every session is signed out."""
    accounts.change_password(current_user(), body["old_password"], body["new_password"])


@blp.route("", methods=["DELETE"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PASSWORD"], key_func=user_rate_key, scope="password")
@jwt_required()
@blp.arguments(DeletionSchema)
@blp.response(202, DeletionScheduledSchema)
@blp.alt_response(409, description="last_coordinator")
@blp.alt_response(422, description="wrong_password, invalid_sms_code, validation_error")
@blp.doc(**AUTH)
def delete_me(body):
    """Delete the account (注销), after a cooling-off period; every session ends now.

    Send the password, or a code sent for `delete_account`. The account is
    erased at `deletion_scheduled_at` (`ACCOUNT_DELETION_DAYS` ahead); signing
    in again before then, or `POST /me/deletion/cancel`, keeps it. The
    organisations keep their service records and certificates, under the
    volunteer number only. The last coordinator of an approved org: 409
    `last_coordinator`."""
    user = deletion.request_deletion(current_user(), body.get("password"), body.get("sms_code"))
    return {"deletion_scheduled_at": user.deletion_scheduled_at}


@blp.route("/deletion/cancel", methods=["POST"])
@jwt_required()
@blp.response(200, UserSchema)
@blp.doc(**AUTH)
def cancel_deletion():
    """Keep the account: call off its scheduled deletion (nothing to do when none is scheduled)."""
    return deletion.cancel_deletion(current_user())


@blp.route("/export", methods=["GET"])
@jwt_required()
@blp.response(200, ExportSchema)
@blp.doc(**AUTH)
def export_me():
    """A copy of everything held on the caller (个人信息副本), as JSON.

    Profile, consents, volunteer record (ID number masked), org memberships,
    postings, claims, service records, energy ledger, certificates,
    notifications, devices, sessions and whether a calendar feed exists —
    masked where answers mask, never a password hash, token or secret."""
    return personal_data.export(current_user())


@blp.route("/consents", methods=["POST"])
@jwt_required()
@blp.arguments(ConsentSchema)
@blp.response(200, UserSchema)
@blp.alt_response(422, description="consent_outdated")
@blp.doc(**AUTH)
def accept_consents(body):
    """Accept the current privacy policy (the version `GET /api/v1/legal` names).

    Until a user whose accepted version is older does, every write but this
    one, logout, export and deletion answers 428 `consent_required`."""
    return accounts.accept_privacy_policy(current_user(), body["privacy_version"])


@blp.route("/phone", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_PASSWORD"], key_func=user_rate_key, scope="password")
@jwt_required()
@blp.arguments(PhoneChangeSchema)
@blp.response(200, UserSchema)
@blp.alt_response(409, description="phone_taken")
@blp.alt_response(422, description="wrong_password, invalid_sms_code, validation_error")
@blp.doc(**AUTH)
def change_phone(body):
    """Move the account to a new number (换绑手机), proven by a code sent to it for `change_phone`."""
    return accounts.change_phone(current_user(), body["phone"], body["sms_code"], body["password"])


@blp.route("/volunteer", methods=["PUT"])
@jwt_required()
@blp.arguments(VolunteerRegisterSchema)
@blp.response(200, VolunteerSchema)
@blp.alt_response(409, description="id_number_taken")
@blp.alt_response(422, description="guardian_required, invalid_sms_code, validation_error")
@blp.doc(**AUTH)
def register_volunteer(body):
    """Register (or update) as a volunteer — 志愿者注册.

    Someone under 14 (by the ID number's birth date) needs a guardian's
    consent: `guardian` with a code sent to the guardian's phone for
    `guardian_consent` (else 422 `guardian_required`); it is kept with the record."""
    return volunteers.register_volunteer(current_user(), body)


@blp.route("/claims", methods=["GET"])
@jwt_required()
@blp.arguments(ClaimQuerySchema, location="query")
@blp.response(200, MyClaimPage)
@blp.doc(**AUTH)
def my_claims(query):
    """My claims, newest first, each with its posting (`?status=` filters)."""
    items, next_cursor = claims.list_my_claims(
        current_actor(), statuses=query["status"], cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/records", methods=["GET"])
@jwt_required()
@blp.arguments(RecordQuerySchema, location="query")
@blp.response(200, RecordPage)
@blp.doc(**AUTH)
def my_records(query):
    """My service records (志愿服务记录) of every status, newest first (`?kind=credit|honor`, `?status=`)."""
    items, next_cursor = records.list_records(current_user(), **query)
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/records/summary", methods=["GET"])
@jwt_required()
@blp.response(200, RecordSummarySchema)
@blp.doc(**AUTH)
def my_records_summary():
    """My recorded hours by kind and by month, and the hours still pending approval."""
    return records.records_summary(current_user())


@blp.route("/energy", methods=["GET"])
@jwt_required()
@blp.arguments(PageQuery, location="query")
@blp.response(200, EnergySchema)
@blp.doc(**AUTH)
def my_energy(query):
    """My energy balance (微能量) and its ledger, newest first."""
    user = current_user()
    items, next_cursor = energy.ledger_page(user.id, cursor=query["cursor"], limit=query["limit"])
    return {"balance": energy.balance_of(user.id), "items": items, "next_cursor": next_cursor}


@blp.route("/community", methods=["PUT"])
@jwt_required()
@blp.arguments(CommunityReportCreateSchema)
@blp.response(200, PartySchema)
@blp.alt_response(403, description="party_member_required")
@blp.alt_response(409, description="org_not_approved")
@blp.doc(**AUTH)
def report_to_community(body):
    """Report to the community where you live (在职党员到社区报到; a party member).

    One community at a time: a new one replaces the old."""
    return party.report_to_community(current_actor(), body["org_id"])


@blp.route("/community", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.doc(**AUTH)
def leave_community():
    """Stop reporting to a community."""
    party.leave_community(current_actor())
