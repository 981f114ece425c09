"""The signed-in user: profile, password and volunteer registration."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.extensions import limiter
from app.security import current_actor, current_user, user_rate_key
from app.services import accounts, claims, energy, records, volunteers
from mobile_api.fields import PageQuery, page_of
from mobile_api.schemas import (
    ClaimQuerySchema,
    EnergySchema,
    MyClaimSchema,
    PasswordChangeSchema,
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
def get_me():
    """The signed-in user."""
    return current_user()


@blp.route("", methods=["PATCH"])
@jwt_required()
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserSchema)
@blp.alt_response(409, description="email_taken")
@blp.doc(**AUTH)
def update_me(body):
    """Change the profile."""
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


@blp.route("/volunteer", methods=["PUT"])
@jwt_required()
@blp.arguments(VolunteerRegisterSchema)
@blp.response(200, VolunteerSchema)
@blp.alt_response(409, description="id_number_taken")
@blp.doc(**AUTH)
def register_volunteer(body):
    """Register (or update) as a volunteer — 志愿者注册."""
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
    """My service records (志愿服务记录), newest first (`?kind=credit|honor`)."""
    items, next_cursor = records.list_records(
        current_user(), kind=query["kind"], cursor=query["cursor"], limit=query["limit"]
    )
    return {"items": items, "next_cursor": next_cursor}


@blp.route("/records/summary", methods=["GET"])
@jwt_required()
@blp.response(200, RecordSummarySchema)
@blp.doc(**AUTH)
def my_records_summary():
    """My hours by kind and by month."""
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
