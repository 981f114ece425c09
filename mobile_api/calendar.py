"""Calendar feeds (日历订阅): a secret URL that calendar apps subscribe to."""

from __future__ import annotations

import hashlib

from flask import current_app, request
from flask_jwt_extended import jwt_required
from flask_smorest import Blueprint

from app.extensions import limiter
from app.security import current_user
from app.services import calendar
from mobile_api.schemas import CalendarFeedSchema
from mobile_api.urls import public_host, public_url

blp = Blueprint("calendar", __name__, url_prefix="/api/v1", description="Calendar feeds (日历订阅)")
AUTH = {"security": [{"bearerAuth": []}]}
FEED_ENDPOINT = "calendar.calendar_feed"


def _feed_limit() -> str:
    return current_app.config["RATELIMIT_CALENDAR_FEED"]


def _miss_limit() -> str:
    return current_app.config["RATELIMIT_CALENDAR_MISS_IP"]


def _feed_key() -> str:
    """Per feed URL; a digest of the token, so the secret itself never sits in the limiter's store."""
    token = (request.view_args or {}).get("token", "")
    return "calendar:" + hashlib.sha256(token.encode()).hexdigest()[:24]


@blp.route("/me/calendar", methods=["POST"])
@jwt_required()
@blp.response(201, CalendarFeedSchema)
@blp.doc(**AUTH)
def create_calendar_feed():
    """A new secret calendar URL; an earlier one stops working."""
    token = calendar.create_feed(current_user())
    return {"url": public_url(FEED_ENDPOINT, token=token)}


@blp.route("/me/calendar", methods=["DELETE"])
@jwt_required()
@blp.response(204)
@blp.doc(**AUTH)
def delete_calendar_feed():
    """Revoke my calendar URL."""
    calendar.revoke_feed(current_user())


@blp.route("/calendar/<token>.ics", methods=["GET"])
@limiter.limit(_feed_limit, key_func=_feed_key)
# Unknown URLs per client IP: only misses count, since the calendar services
# of many users fetch from a few shared addresses.
@limiter.limit(_miss_limit, deduct_when=lambda response: response.status_code == 404)
@blp.response(
    200,
    {"type": "string"},
    content_type="text/calendar",
    description="RFC 5545: one VEVENT per sign-up from 30 days back.",
    headers={"ETag": {"schema": {"type": "string"}}, "Cache-Control": {"schema": {"type": "string"}}},
)
@blp.alt_response(304, description="Not modified (If-None-Match matched the ETag).")
@blp.alt_response(404, description="not_found: an unknown or revoked feed URL")
@blp.alt_response(429, description="rate_limited")
@blp.doc(security=[])
def calendar_feed(token):
    """The calendar feed (its URL is its secret; no other auth)."""
    result = calendar.feed(token, public_host(), already_has=request.if_none_match.contains_weak)
    if result.body is None:
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(result.body, content_type="text/calendar; charset=utf-8")
    response.set_etag(result.etag)
    response.headers["Cache-Control"] = f"private, max-age={calendar.FEED_MAX_AGE_SECONDS}"
    return response
