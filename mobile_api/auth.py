"""Registration, login and the token lifecycle."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import Blueprint

from app.extensions import limiter
from app.i18n import negotiate
from app.security import current_user, phone_rate_key
from app.services import accounts, tokens
from mobile_api.schemas import AuthResultSchema, LoginSchema, RegisterSchema, TokenPairSchema

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")
REFRESH_DOC = {"security": [{"bearerAuth": []}], "description": "Send the refresh token as the Bearer token."}


def _ip_limit() -> str:
    return current_app.config["RATELIMIT_AUTH_IP"]


def _phone_limit() -> str:
    return current_app.config["RATELIMIT_AUTH_PHONE"]


def rate_limited(view):
    """Per IP and per phone, in RATELIMIT_STORAGE_URI. The budgets are shared by
    login and register, so alternating between them buys no extra attempts."""
    view = limiter.shared_limit(_phone_limit, key_func=phone_rate_key, scope="auth-phone")(view)
    return limiter.shared_limit(_ip_limit, scope="auth-ip")(view)


@blp.route("/register", methods=["POST"])
@rate_limited
@blp.arguments(RegisterSchema)
@blp.response(201, AuthResultSchema)
@blp.alt_response(409, description="phone_taken")
@blp.alt_response(429, description="rate_limited")
@blp.doc(security=[])
def register(body):
    """Create an account and sign in. Its `locale` is the request's language
    (`Accept-Language`, zh-CN by default); `PATCH /me` changes it.

    Send an `Idempotency-Key` (a UUID made once per sign-up form): a retry whose
    answer was lost replays the 201 instead of answering 409 `phone_taken`."""
    user, pair = accounts.register(**body, locale=negotiate())
    return {"user": user, **pair}


@blp.route("/login", methods=["POST"])
@rate_limited
@blp.arguments(LoginSchema)
@blp.response(200, AuthResultSchema)
@blp.alt_response(401, description="invalid_credentials")
@blp.alt_response(429, description="rate_limited")
@blp.doc(security=[])
def login(body):
    """Sign in with phone or email and password.

    Takes no `Idempotency-Key`: every login answers a fresh token pair, so a
    retry simply signs in again (a stored answer would replay tokens that may
    have been rotated since)."""
    user, pair = accounts.login(body["password"], phone=body.get("phone"), email=body.get("email"))
    return {"user": user, **pair}


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(200, TokenPairSchema)
@blp.alt_response(401, description="refresh_token_reused, token_revoked, token_expired")
@blp.doc(**REFRESH_DOC)
def refresh():
    """Spend the refresh token for a new pair."""
    return tokens.rotate_refresh_token(current_user(), get_jwt())


@blp.route("/logout", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(204)
@blp.doc(**REFRESH_DOC)
def logout():
    """Revoke this session (the refresh token's family)."""
    tokens.revoke_family(get_jwt())
