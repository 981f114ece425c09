"""Registration, login and the token lifecycle."""

from __future__ import annotations

from flask import current_app, request
from flask_jwt_extended import get_jwt, jwt_required
from flask_smorest import Blueprint

from app.extensions import limiter
from app.i18n import negotiate
from app.security import current_user, phone_rate_key
from app.services import accounts, sms_codes, tokens
from mobile_api.schemas import (
    AuthResultSchema,
    LoginSchema,
    PasswordResetSchema,
    RegisterSchema,
    SmsCodeRequestSchema,
    SmsCodeSentSchema,
    TokenPairSchema,
)

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")
REFRESH_DOC = {"security": [{"bearerAuth": []}], "description": "Send the refresh token as the Bearer token."}


def _ip_limit() -> str:
    return current_app.config["RATELIMIT_AUTH_IP"]


def _phone_limit() -> str:
    return current_app.config["RATELIMIT_AUTH_PHONE"]


def rate_limited(view):
    """Per IP and per phone, in RATELIMIT_STORAGE_URI. The budgets are shared by
    login, register, SMS codes and password reset, so alternating between them
    buys no extra attempts. (The SMS codes' own limits hold without them.)"""
    view = limiter.shared_limit(_phone_limit, key_func=phone_rate_key, scope="auth-phone")(view)
    return limiter.shared_limit(_ip_limit, scope="auth-ip")(view)


@blp.route("/sms-codes", methods=["POST"])
@rate_limited
@blp.arguments(SmsCodeRequestSchema)
@blp.response(202, SmsCodeSentSchema)
@blp.alt_response(409, description="phone_taken")
@blp.alt_response(422, description="validation_error (the number cannot receive SMS)")
@blp.alt_response(429, description="sms_too_frequent, rate_limited")
@blp.alt_response(503, description="sms_unavailable")
@blp.doc(security=[])
def send_sms_code(body):
    """Send a six-digit code (短信验证码) to a phone for one purpose.

    The code lives 5 minutes, is used once, is replaced by a newer one and is
    spent by 5 wrong tries. One code per phone per 60 s whatever the purpose,
    10 per phone a day, 20 per client address an hour (429 `sms_too_frequent`
    with `Retry-After`); past the service's daily budget 503 `sms_unavailable`.
    `register` and `change_phone` to a number that has an account: 409
    `phone_taken`. `login`, `reset_password` and `delete_account` answer the
    same 202 whether or not the number has an account (nothing is sent to
    one that has none)."""
    return sms_codes.request_code(body["phone"], body["purpose"], request.remote_addr)


@blp.route("/register", methods=["POST"])
@rate_limited
@blp.arguments(RegisterSchema)
@blp.response(201, AuthResultSchema)
@blp.alt_response(409, description="phone_taken, email_taken")
@blp.alt_response(422, description="invalid_sms_code, consent_outdated, validation_error")
@blp.alt_response(429, description="rate_limited")
@blp.doc(security=[])
def register(body):
    """Create an account with a phone proven by a code sent for `register`, and sign in.

    `privacy_version` is the one `GET /api/v1/legal` names (another: 422
    `consent_outdated`). The account's `locale` is the request's language
    (`Accept-Language`, zh-CN by default); `PATCH /me` changes it.

    Send an `Idempotency-Key` (a UUID made once per sign-up form): a retry whose
    answer was lost replays the 201 instead of answering 422 (the code is spent)."""
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
    """Sign in with phone or email and password, or with phone and a code sent for `login`.

    Signing in calls off a scheduled deletion of the account (`DELETE /me`).
    Takes no `Idempotency-Key`: every login answers a fresh token pair, so a
    retry simply signs in again (a stored answer would replay tokens that may
    have been rotated since)."""
    if "sms_code" in body:
        user, pair = accounts.login_with_code(body["phone"], body["sms_code"])
    else:
        user, pair = accounts.login(body["password"], phone=body.get("phone"), email=body.get("email"))
    return {"user": user, **pair}


@blp.route("/password-reset", methods=["POST"])
@rate_limited
@blp.arguments(PasswordResetSchema)
@blp.response(204)
@blp.alt_response(422, description="invalid_sms_code, validation_error")
@blp.alt_response(429, description="rate_limited")
@blp.doc(security=[])
def reset_password(body):
    """Set a new password with a code sent for `reset_password` (找回密码); every session ends."""
    accounts.reset_password(body["phone"], body["sms_code"], body["new_password"])


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
