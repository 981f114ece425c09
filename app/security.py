"""Authentication glue: flask-jwt-extended callbacks in the error envelope,
the actor of a request, and the rate-limit keys."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, current_app, g, request
from flask_jwt_extended import decode_token, get_current_user, verify_jwt_in_request
from flask_jwt_extended.exceptions import WrongTokenError

from app import i18n
from app.errors import error_response
from app.extensions import jwt
from app.models import User
from app.services.permissions import Actor
from app.validators import normalize_cn_mobile


def register_jwt_callbacks(app: Flask) -> None:
    from app.services import tokens

    @jwt.user_identity_loader
    def user_identity(user):
        return str(user.id) if isinstance(user, User) else str(user)

    @jwt.user_lookup_loader
    def load_user(_header, payload):
        if payload.get("type") == "refresh":
            from app.extensions import db

            try:
                user = db.session.get(User, int(payload["sub"]))
            except (TypeError, ValueError):
                return None
        else:
            user = bearer_session(payload)[0]
        if user is not None:
            i18n.user_loaded()  # the user's own language now comes first
        return user

    @jwt.token_in_blocklist_loader
    def token_revoked(_header, payload) -> bool:
        if payload.get("type") == "refresh":
            return tokens.is_revoked(payload)
        return bearer_session(payload)[1]

    @jwt.unauthorized_loader
    def missing_token(_reason):
        return error_response(401, "authorization_required")

    @jwt.invalid_token_loader
    def invalid_token(_reason):
        return error_response(401, "invalid_token")

    @jwt.expired_token_loader
    def expired_token(_header, _payload):
        return error_response(401, "token_expired")

    @jwt.revoked_token_loader
    def revoked_token(_header, _payload):
        return error_response(401, "token_revoked")

    @jwt.user_lookup_error_loader
    def unknown_user(_header, _payload):
        return error_response(401, "invalid_token")

    @jwt.needs_fresh_token_loader
    def needs_fresh(_header, _payload):
        return error_response(401, "invalid_token")

    @jwt.token_verification_failed_loader
    def verification_failed(_header, _payload):
        return error_response(401, "invalid_token")

    @app.errorhandler(WrongTokenError)
    def wrong_token_type(_exc):
        return error_response(401, "wrong_token_type")


def bearer_session(payload: dict) -> tuple[User | None, bool]:
    """The user of this request's access token and whether the token is revoked:
    one query (``tokens.user_and_revocation``), asked at most once per request
    whoever asks (the blocklist check, the user lookup, the idempotency check)."""
    from app.services import tokens

    key = (payload.get("sub"), payload.get("fam"), payload.get("jti"))
    known = g.get("_bearer_session")
    if known is None or known[0] != key:
        known = g._bearer_session = (key, tokens.user_and_revocation(payload))
    return known[1]


def current_user() -> User:
    """The authenticated user of this request (the view is @jwt_required)."""
    return get_current_user()


def current_actor() -> Actor:
    """The actor of this request (the view is @jwt_required), built once."""
    actor = g.get("actor")
    if actor is None:
        actor = g.actor = Actor(get_current_user())
    return actor


def actor_for(user: User) -> Actor:
    """The request's actor when it is ``user``, else a new one (a user just signed in)."""
    actor = g.get("actor")
    if actor is not None and actor.id == user.id:
        return actor
    return Actor(user)


def optional_actor() -> Actor:
    """The actor behind a valid token if there is one, else an anonymous actor;
    public views use it."""
    actor = g.get("actor")
    if actor is None:
        user = None
        if request.headers.get("Authorization"):
            verify_jwt_in_request(optional=True)
            user = get_current_user()
        actor = g.actor = Actor(user)
    return actor


def phone_rate_key() -> str:
    """Rate-limit key for login/register: the phone (or email) in the body.

    The phone is normalised the way the schema will normalise it, so that
    ``13812345678``, ``+86 138 1234 5678`` and full-width digits share one
    budget; otherwise re-spelling the number would reset the limit. The key is
    a keyed hash of it: the limiter writes its keys to Redis and to the log,
    where a phone number has no business.
    """
    body = request.get_json(silent=True)
    identifier = None
    if isinstance(body, dict):
        phone, email = body.get("phone"), body.get("email")
        if isinstance(phone, str) and phone.strip():
            try:
                identifier = normalize_cn_mobile(phone)
            except ValueError:
                identifier = phone.strip()
        elif isinstance(email, str) and email.strip():
            identifier = email.strip().lower()
    if identifier is None:
        return "acct:" + (request.remote_addr or "-")
    digest = hmac.new(current_app.config["SECRET_KEY"].encode(), identifier.encode(), hashlib.sha256)
    return "acct:" + digest.hexdigest()[:24]


def bearer_payload() -> dict | None:
    """The claims of the request's bearer token when its signature and expiry hold
    (revocation is not asked here: that is the view's, or the caller's, to check)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    # Asked by several hooks of one request (consent, idempotency, the rate-limit
    # keys): the token is decoded once per request.
    known = g.get("_bearer_payload")
    if known is not None and known[0] == header:
        return known[1]
    try:
        payload = decode_token(header[7:].strip())
    except Exception:  # noqa: BLE001 - any bad token: the view answers 401
        payload = None
    g._bearer_payload = (header, payload)
    return payload


def user_rate_key() -> str:
    """Rate-limit key of the per-user budgets: the signed-in user, else the client's address."""
    payload = bearer_payload()
    if payload is not None and payload.get("sub"):
        return f"user:{payload['sub']}"
    return f"ip:{request.remote_addr or '-'}"
