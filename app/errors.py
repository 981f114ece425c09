"""Domain exceptions and the single JSON error envelope.

Every status >= 400 leaves the app as::

    {"code": 409, "status": "Conflict", "error": "already_claimed",
     "message": "...", "errors": {...}}

``errors`` appears only on 422 and maps location -> field -> messages.
"""

from __future__ import annotations

import logging
import threading
import time
from http import HTTPStatus
from typing import Any

from flask import Flask, g
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from app.i18n import translate_messages
from app.policy import (
    CHECK_IN_OPENS_BEFORE,
    CHECK_IN_RADIUS_KM,
    metres,
    whole_minutes,
)

log = logging.getLogger(__name__)

# slug -> its message, in English; the catalogs (app/translations) hold the other languages.
# The slug is the contract; the text is for people.
MESSAGES: dict[str, LazyString] = {
    "bad_request": _l("The request is invalid."),
    "invalid_json": _l("The body is not valid JSON."),
    "invalid_cursor": _l("The page cursor is invalid or stale; start again."),
    "validation_error": _l("The input is invalid."),
    "authorization_required": _l("An access token is required."),
    "invalid_token": _l("The token is invalid."),
    "token_expired": _l("The token has expired."),
    "token_revoked": _l("The token has been revoked."),
    "wrong_token_type": _l("This kind of token cannot be used here."),
    "refresh_token_reused": _l("This refresh token was already used; its session has been revoked."),
    "invalid_credentials": _l("The phone number or password is wrong."),
    "phone_taken": _l("This phone number is already registered."),
    "email_taken": _l("This email address is already in use."),
    "id_number_taken": _l("This ID number is used by another account."),
    "wrong_password": _l("The old password is wrong."),
    "invalid_sms_code": _l("The SMS code is wrong or has expired; ask for a new one."),
    "sms_too_frequent": _l("Too many SMS codes were asked for; wait before asking again."),
    "sms_unavailable": _l("SMS codes cannot be sent right now; try again later."),
    "consent_outdated": _l("Accept the current privacy policy (GET /api/v1/legal names its version)."),
    "consent_required": _l("The privacy policy has changed: accept the new version to continue."),
    "guardian_required": _l("A volunteer of this age needs a guardian's consent."),
    "forbidden": _l("You may not do this."),
    "admin_required": _l("An administrator is required."),
    "coordinator_required": _l("A coordinator of the organisation is required."),
    "not_found": _l("Not found."),
    "method_not_allowed": _l("This method is not allowed here."),
    "conflict": _l("The request conflicts with the current state."),
    "org_name_taken": _l("An organisation with this name exists."),
    "org_not_pending": _l("The organisation is not pending."),
    "org_not_approved": _l("The organisation is not approved."),
    "already_member": _l("The user is already a member."),
    "last_coordinator": _l("The last coordinator cannot be removed."),
    "join_request_pending": _l("You have already asked to join; the coordinators will answer."),
    "join_request_not_pending": _l("This request to join has already been answered."),
    "party_member_required": _l("Only a member of a party branch may do this."),
    "already_claimed": _l("Someone else has already claimed this wish."),
    "posting_full": _l("There are no places left."),
    "posting_not_open": _l("This posting is not open for claims."),
    "duplicate_claim": _l("You already hold a claim on this posting."),
    "active_claim_limit": _l("You already hold the maximum number of open wish claims."),
    "insufficient_energy": _l("Your energy balance is too low."),
    "volunteer_required": _l("Register as a volunteer first."),
    "own_posting": _l("You cannot claim your own posting."),
    "claimant_required": _l("Only the claimant may do this."),
    "poster_required": _l("Only the poster or a coordinator may do this."),
    "provider_required": _l("Only the provider of the service may do this."),
    "claim_not_active": _l("The claim is not active."),
    "claim_not_fulfilled": _l("The claim has not been marked as done."),
    "wrong_claim_kind": _l("This action does not apply to this kind of claim."),
    "already_checked_in": _l("You have already checked in."),
    "not_checked_in": _l("You have not checked in."),
    "check_in_not_open": _l(
        "Check-in opens %(minutes)s minutes before the start and closes at the end.",
        minutes=whole_minutes(CHECK_IN_OPENS_BEFORE),
    ),
    "too_far_from_site": _l("You are more than %(metres)s m from the site.", metres=metres(CHECK_IN_RADIUS_KM)),
    "event_not_ended": _l("The activity has not ended yet."),
    "event_ended": _l("The activity has ended."),
    "not_org_volunteer": _l("This user is not a volunteer of the organisation."),
    "own_claim": _l("You cannot confirm your own work."),
    "own_record": _l("You cannot award or approve hours of your own."),
    "second_person_required": _l("Whoever made a record cannot approve it: another coordinator must."),
    "record_not_pending": _l("The record is no longer waiting for approval."),
    "overlapping_record": _l("This time overlaps service hours already credited to the volunteer."),
    "org_member_required": _l("Only members of the organisation may post for it."),
    "own_verification": _l("You cannot verify your own identity."),
    "minutes_above_reported": _l("The minutes may be lowered, not raised."),
    "idempotency_key_reused": _l("This Idempotency-Key was already used for a different request."),
    "idempotency_key_in_progress": _l("A request with this Idempotency-Key is still being processed; retry shortly."),
    "posting_not_pending": _l("The posting is not waiting for review."),
    "posting_claimed": _l("Something is already claimed; only the expiry can be extended."),
    "posting_not_editable": _l("The posting has ended and cannot be changed."),
    "posting_not_cancellable": _l("The posting has ended and cannot be cancelled."),
    "no_records": _l("You have no recorded service hours with this organisation in the period."),
    "certificate_void": _l("This certificate has already been voided."),
    "own_certificate": _l("You cannot void your own certificate."),
    "home_required": _l("Set a home point in your volunteer profile first."),
    "invalid_photo": _l("This photo cannot be used."),
    "photo_not_uploaded": _l("The photo has not been uploaded yet."),
    "upload_limit": _l("You have too many photos uploaded and not used yet."),
    "payload_too_large": _l("The request body is larger than 1 MiB."),
    "unsupported_media_type": _l("The body must be JSON."),
    "rate_limited": _l("Too many requests; try again later."),
    "internal_error": _l("Something went wrong on our side."),
    "service_unavailable": _l("The service is unavailable."),
    # answered by the shipped nginx itself (deploy/nginx.conf), in the same envelope
    "request_timeout": _l("The request was not sent in time."),
    "uri_too_long": _l("The address is too long."),
    "headers_too_large": _l("The request headers are too large."),
    "bad_gateway": _l("The service cannot be reached right now."),
    "gateway_timeout": _l("The service did not answer in time."),
}

STATUS_SLUGS = {
    400: "bad_request",
    401: "authorization_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    428: "consent_required",
    429: "rate_limited",
    431: "headers_too_large",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class AppError(Exception):
    """A domain error: a status, a stable slug and an optional message."""

    code = 400
    slug = "bad_request"
    retry_after: int | None = None

    def __init__(
        self,
        slug: str | None = None,
        message: str | None = None,
        errors: dict | None = None,
        *,
        retry_after: int | None = None,
    ):
        super().__init__(slug or self.slug)
        if slug:
            self.slug = slug
        self.message = message
        self.errors = errors
        # Seconds, sent as Retry-After (429 and 503 only); a class may set its default.
        if retry_after is not None:
            self.retry_after = retry_after


class Unauthorized(AppError):
    code = 401
    slug = "authorization_required"


class Forbidden(AppError):
    code = 403
    slug = "forbidden"


class NotFound(AppError):
    code = 404
    slug = "not_found"


class Conflict(AppError):
    code = 409
    slug = "conflict"


class TooManyRequests(AppError):
    code = 429
    slug = "rate_limited"


class PreconditionRequired(AppError):
    code = 428
    slug = "consent_required"


class TooLarge(AppError):
    """A body over its limit (413)."""

    code = 413
    slug = "payload_too_large"


class Unavailable(AppError):
    """A service we depend on (the SMS provider, the photo storage) did not answer: retry shortly (503)."""

    code = 503
    slug = "service_unavailable"
    retry_after = 5


class Invalid(AppError):
    """Input that passed the schema but breaks a rule (422)."""

    code = 422
    slug = "validation_error"

    def __init__(self, field: str, message: str, slug: str | None = None, location: str = "json"):
        super().__init__(slug, message, {location: {field: [message]}})


def message_for(slug: str, code: int) -> str:
    """The slug's message in the request's language (the status's when the slug has none)."""
    text = MESSAGES.get(slug) or MESSAGES.get(STATUS_SLUGS.get(code, ""), None)
    if text is None:
        return HTTPStatus(code).phrase
    return str(text)


def error_body(code: int, slug: str | None = None, message: str | None = None, errors: Any = None) -> dict:
    slug = slug or STATUS_SLUGS.get(code, "error")
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "code": code,
        "status": phrase,
        "error": slug,
        "message": str(message) if message else message_for(slug, code),
    }
    if errors is not None:
        body["errors"] = _string_keys(errors)
    return body


def _string_keys(value: Any) -> Any:
    """Messages keyed by text only: marshmallow keys a list's items by position (ints),
    and JSON (and a sorted dump) needs one kind of key."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    if isinstance(value, LazyString):
        return str(value)
    return value


def error_response(code: int, slug: str | None = None, message: str | None = None, errors: Any = None, headers=None):
    return error_body(code, slug, message, errors), code, headers or {}


def _handle_app_error(exc: AppError):
    headers = {"Retry-After": str(max(1, int(exc.retry_after)))} if exc.retry_after is not None else None
    return error_response(exc.code, exc.slug, exc.message, exc.errors, headers)


def _handle_http_exception(exc: HTTPException):
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = None
    slug = None
    message = None
    if code == 422:
        # flask-smorest/webargs put the marshmallow messages in data["messages"].
        errors = translate_messages(data.get("messages") or data.get("errors") or {})
    if isinstance(data, dict):
        slug = data.get("error") or None
        message = data.get("message") or None
    if code == 400 and slug is None and isinstance(getattr(exc, "exc", None), ValueError):
        # webargs aborts 400 with the JSONDecodeError / UnicodeDecodeError it hit.
        slug = "invalid_json"
    headers = {}
    if code == 405 and exc.get_response() is not None:
        allow = exc.get_response().headers.get("Allow")
        if allow:
            headers["Allow"] = allow
    if code == 429:
        headers["Retry-After"] = retry_after(exc)
    return error_response(code, slug, message, errors, headers)


def retry_after(exc: HTTPException) -> str:
    """The Retry-After of a 429: seconds until the breached limit's window ends (60 if unknown)."""
    limit = getattr(exc, "limit", None)
    seconds = getattr(exc, "retry_after", None)
    if seconds is None and limit is not None:
        seconds = _retry_after_for(limit)
    return str(seconds or 60)


def _retry_after_for(limit) -> int | None:
    try:
        return int(limit.limit.get_expiry())
    except Exception:  # noqa: BLE001 - best effort header
        return None


# While the database is out, each kind of failure is logged once every few
# seconds (with how many were not), never a traceback per request.
OUTAGE_LOG_SECONDS = 10
RETRY_AFTER_SECONDS = 5
_outages: dict[str, list[float]] = {}  # kind -> [last logged (monotonic), not logged since]
_outages_lock = threading.Lock()


def _handle_unexpected(exc: Exception):
    from app.database import is_unreachable

    if is_unreachable(exc):
        _log_outage(exc)
        _forget_session()
        return error_response(503, "service_unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    log.exception("unhandled error")
    body = error_body(500)
    body["request_id"] = getattr(g, "request_id", None)
    return body, 500


def _log_outage(exc: Exception) -> None:
    cause = getattr(exc, "orig", None) or exc
    kind = f"{type(cause).__module__}.{type(cause).__name__}"
    now = time.monotonic()
    with _outages_lock:
        last, quiet = _outages.get(kind, (0.0, 0))
        if now - last < OUTAGE_LOG_SECONDS:
            _outages[kind] = [last, quiet + 1]
            return
        _outages[kind] = [now, 0]
    detail = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else kind
    log.warning(
        "database unavailable: %s: %s (%d more since the last line)",
        kind,
        detail,
        quiet,
    )


def _forget_session() -> None:
    """Drop the request's session: its connection may be dead, and rolling back
    on it would wait on the database again."""
    from app.extensions import db

    try:
        db.session.close()
    except Exception:  # noqa: BLE001 - the connection is gone; the pool replaces it
        try:
            db.session.registry().invalidate()
        except Exception:  # noqa: BLE001, S110 - nothing more to drop
            pass


def close_sessions_before_answering(app: Flask) -> None:
    """A request's database session closes before its answer leaves (call right
    after ``db.init_app``: after-request functions run last-registered first, so
    this one runs after every other that may use the session, and before the
    access log, which then logs what was answered).

    Closing rolls back on the connection; with the database gone that raises,
    and raised from the teardown it would escape every error handler (the
    server's own HTML 500). Here it is answered like any outage — 503
    ``service_unavailable`` with ``Retry-After``, one brief line in the log at
    most every few seconds — or, for anything else, 500 ``internal_error``
    with the request id. A streamed answer (its body still reads from the
    session) and a request inside an app context it did not open (a test, a
    CLI command) keep theirs to the teardown, which never raises: it logs.
    """
    from flask.globals import request_ctx

    from app.extensions import db

    @app.after_request
    def close_session(response):
        owns_context = request_ctx._cv_tokens and request_ctx._cv_tokens[-1][1] is not None
        if response.is_streamed or not owns_context:
            return response
        try:
            db.session.remove()
        except Exception as exc:  # noqa: BLE001 - answered below, in the envelope
            _forget_session()
            db.session.registry.clear()
            failed = app.make_response(_session_close_failed(exc))
            failed.headers["X-Request-ID"] = g.get("request_id") or ""
            failed.headers["X-Content-Type-Options"] = "nosniff"
            return failed
        return response

    def remove_session(_exc) -> None:
        try:
            db.session.remove()
        except Exception as exc:  # noqa: BLE001 - the answer has left: log it, briefly
            _session_close_failed(exc)
            _forget_session()
            db.session.registry.clear()

    funcs = app.teardown_appcontext_funcs
    funcs[:] = [remove_session if getattr(f, "__self__", None) is db else f for f in funcs]


def _session_close_failed(exc: Exception):
    from app.database import is_unreachable

    if is_unreachable(exc):
        _log_outage(exc)
        return error_response(503, "service_unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    first_line = (str(exc).splitlines() or [""])[0][:200]
    log.error("closing the database session failed: %s: %s", type(exc).__name__, first_line)
    body = error_body(500)
    body["request_id"] = g.get("request_id")
    return body, 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, _handle_app_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
