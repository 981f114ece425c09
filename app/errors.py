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

from flask import Flask, g, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# slug -> (zh-CN, en). The slug is the contract; the text is for people.
MESSAGES: dict[str, tuple[str, str]] = {
    "bad_request": ("请求无效", "The request is invalid."),
    "invalid_json": ("请求内容不是有效的 JSON", "The body is not valid JSON."),
    "invalid_cursor": ("翻页标记无效或已过期，请从第一页重新加载", "The page cursor is invalid or stale; start again."),
    "validation_error": ("输入有误，请检查后重试", "The input is invalid."),
    "authorization_required": ("请先登录", "An access token is required."),
    "invalid_token": ("登录凭证无效", "The token is invalid."),
    "token_expired": ("登录已过期，请重新登录", "The token has expired."),
    "token_revoked": ("登录凭证已失效", "The token has been revoked."),
    "wrong_token_type": ("登录凭证类型不对", "This kind of token cannot be used here."),
    "refresh_token_reused": (
        "检测到凭证被重复使用，已退出所有设备",
        "This refresh token was already used; its session has been revoked.",
    ),
    "invalid_credentials": ("手机号或密码错误", "The phone number or password is wrong."),
    "phone_taken": ("该手机号已注册", "This phone number is already registered."),
    "email_taken": ("该邮箱已被使用", "This email address is already in use."),
    "id_number_taken": ("该身份证号已被其他账号使用", "This ID number is used by another account."),
    "wrong_password": ("原密码错误", "The old password is wrong."),
    "forbidden": ("没有权限", "You may not do this."),
    "admin_required": ("需要管理员权限", "An administrator is required."),
    "coordinator_required": ("需要组织协调员权限", "A coordinator of the organisation is required."),
    "not_found": ("不存在或无权查看", "Not found."),
    "method_not_allowed": ("不支持该请求方法", "This method is not allowed here."),
    "conflict": ("状态冲突", "The request conflicts with the current state."),
    "org_name_taken": ("组织名称已存在", "An organisation with this name exists."),
    "org_not_pending": ("该组织不在待审核状态", "The organisation is not pending."),
    "org_not_approved": ("该组织尚未通过审核", "The organisation is not approved."),
    "already_member": ("已经是该组织成员", "The user is already a member."),
    "last_coordinator": ("不能移除最后一位协调员", "The last coordinator cannot be removed."),
    # claims, records, energy (issue 4)
    "already_claimed": ("该心愿已被他人认领", "Someone else has already claimed this wish."),
    "posting_full": ("名额已满", "There are no places left."),
    "posting_not_open": ("该发布当前不可认领", "This posting is not open for claims."),
    "duplicate_claim": ("您已认领过该发布", "You already hold a claim on this posting."),
    "active_claim_limit": ("进行中的心愿认领已达上限", "You already hold the maximum number of open wish claims."),
    "insufficient_energy": ("能量值不足", "Your energy balance is too low."),
    "volunteer_required": ("请先注册成为志愿者", "Register as a volunteer first."),
    "own_posting": ("不能认领自己发布的内容", "You cannot claim your own posting."),
    "claimant_required": ("只有认领人可以进行此操作", "Only the claimant may do this."),
    "poster_required": ("只有发布人或组织协调员可以进行此操作", "Only the poster or a coordinator may do this."),
    "provider_required": ("只有服务提供者可以进行此操作", "Only the provider of the service may do this."),
    "claim_not_active": ("该认领不在进行中", "The claim is not active."),
    "claim_not_fulfilled": ("该认领尚未标记完成", "The claim has not been marked as done."),
    "wrong_claim_kind": ("该类型的认领不支持此操作", "This action does not apply to this kind of claim."),
    "already_checked_in": ("已经签到过了", "You have already checked in."),
    "not_checked_in": ("尚未签到", "You have not checked in."),
    "check_in_not_open": (
        "不在签到时间内（活动开始前 30 分钟至活动结束）",
        "Check-in opens 30 minutes before the start and closes at the end.",
    ),
    "too_far_from_site": ("距离活动地点超过 500 米", "You are more than 500 m from the site."),
    "event_not_ended": ("活动尚未结束", "The activity has not ended yet."),
    "event_ended": ("活动已结束", "The activity has ended."),
    "not_org_volunteer": ("该用户不是本组织的志愿者", "This user is not a volunteer of the organisation."),
    "own_claim": ("不能确认自己的服务", "You cannot confirm your own work."),
    "own_record": ("不能给自己记录时长", "You cannot award hours to yourself."),
    "own_verification": ("不能核验自己的身份", "You cannot verify your own identity."),
    "minutes_above_reported": ("确认时长不能超过志愿者填报的时长", "The minutes may be lowered, not raised."),
    "idempotency_key_reused": (
        "该幂等键已用于另一个不同的请求",
        "This Idempotency-Key was already used for a different request.",
    ),
    "idempotency_key_in_progress": (
        "相同的请求正在处理中，请稍后重试",
        "A request with this Idempotency-Key is still being processed; retry shortly.",
    ),
    # postings (issue 3)
    "posting_not_pending": ("该发布不在待审核状态", "The posting is not waiting for review."),
    "posting_claimed": (
        "已有人认领，只能延长有效期",
        "Something is already claimed; only the expiry can be extended.",
    ),
    "posting_not_editable": ("该发布已结束，不能修改", "The posting has ended and cannot be changed."),
    "posting_not_cancellable": ("该发布已结束，不能取消", "The posting has ended and cannot be cancelled."),
    # certificates (issue 12)
    "no_records": (
        "该时段内没有您在该组织的服务记录",
        "You have no service records with this organisation in the period.",
    ),
    "certificate_void": ("该证明已作废", "This certificate has already been voided."),
    "own_certificate": ("不能作废自己的志愿服务证明", "You cannot void your own certificate."),
    # matching (issue 16)
    "home_required": (
        "请先在志愿者资料中设置家的位置",
        "Set a home point in your volunteer profile first.",
    ),
    "payload_too_large": ("请求内容过大（上限 1 MiB）", "The request body is larger than 1 MiB."),
    "unsupported_media_type": ("请使用 JSON", "The body must be JSON."),
    "rate_limited": ("请求过于频繁，请稍后再试", "Too many requests; try again later."),
    "internal_error": ("服务器开小差了，请稍后再试", "Something went wrong on our side."),
    "service_unavailable": ("服务暂不可用", "The service is unavailable."),
}

STATUS_SLUGS = {
    400: "bad_request",
    401: "authorization_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class AppError(Exception):
    """A domain error: a status, a stable slug and an optional message."""

    code = 400
    slug = "bad_request"

    def __init__(self, slug: str | None = None, message: str | None = None, errors: dict | None = None):
        super().__init__(slug or self.slug)
        if slug:
            self.slug = slug
        self.message = message
        self.errors = errors


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


class Invalid(AppError):
    """Input that passed the schema but breaks a rule (422)."""

    code = 422
    slug = "validation_error"

    def __init__(self, field: str, message: str, slug: str | None = None, location: str = "json"):
        super().__init__(slug, message, {location: {field: [message]}})


def wants_english() -> bool:
    try:
        best = request.accept_languages.best_match(["zh-CN", "zh", "en"], default="zh-CN")
    except RuntimeError:  # outside a request
        return False
    return best == "en"


def message_for(slug: str, code: int) -> str:
    texts = MESSAGES.get(slug) or MESSAGES.get(STATUS_SLUGS.get(code, ""), None)
    if texts is None:
        return HTTPStatus(code).phrase
    return texts[1] if wants_english() else texts[0]


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
        "message": message or message_for(slug, code),
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
    return value


def error_response(code: int, slug: str | None = None, message: str | None = None, errors: Any = None, headers=None):
    return error_body(code, slug, message, errors), code, headers or {}


def _handle_app_error(exc: AppError):
    return error_response(exc.code, exc.slug, exc.message, exc.errors)


def _handle_http_exception(exc: HTTPException):
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = None
    slug = None
    message = None
    if code == 422:
        # flask-smorest/webargs put the marshmallow messages in data["messages"].
        errors = data.get("messages") or data.get("errors") or {}
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
        db.session.invalidate()


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, _handle_app_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
