"""The signed-in user: profile, password and volunteer registration."""

from __future__ import annotations

from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.security import current_user
from app.services import accounts, volunteers
from mobile_api.schemas import (
    PasswordChangeSchema,
    UserSchema,
    UserUpdateSchema,
    VolunteerRegisterSchema,
    VolunteerSchema,
)

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")
AUTH = {"security": [{"bearerAuth": []}]}


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
