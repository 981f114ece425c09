"""Notification texts, zh-CN first, then en. ``{title}`` etc. come from notify()'s context.

A text is rendered in the user's language when the row is written (that is
what the push says) and again in the language a client asks for when the
inbox is read, from the params kept on the row."""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.clock import as_utc, zone

TEMPLATES: dict[str, dict[str, tuple[str, str]]] = {
    # kind: {locale: (title, body)}
    "posting_approved": {
        "zh-CN": ("发布已通过审核", "您发布的「{title}」已通过审核，现已公开。"),
        "en": ("Posting approved", "Your posting “{title}” was approved and is now public."),
    },
    "posting_rejected": {
        "zh-CN": ("发布未通过审核", "您发布的「{title}」未通过审核：{reason}"),
        "en": ("Posting rejected", "Your posting “{title}” was rejected: {reason}"),
    },
    "posting_expiring": {
        "zh-CN": ("心愿即将到期", "「{title}」将在 24 小时内到期，可以延长有效期。"),
        "en": ("Posting expiring soon", "“{title}” expires within 24 hours; you can extend it."),
    },
    "posting_expired": {
        "zh-CN": ("心愿已到期", "「{title}」已到期下架。"),
        "en": ("Posting expired", "“{title}” has expired."),
    },
    "wish_claimed": {
        "zh-CN": ("心愿被认领啦", "{volunteer}认领了您的「{title}」。"),
        "en": ("Your wish was claimed", "{volunteer} claimed “{title}”."),
    },
    "claim_due_soon": {
        "zh-CN": ("认领即将超时", "您认领的「{title}」将在 24 小时内超时，请尽快完成。"),
        "en": ("Claim due soon", "Your claim on “{title}” is due within 24 hours."),
    },
    "claim_released": {
        "zh-CN": ("认领已释放", "「{title}」的认领已超时释放。"),
        "en": ("Claim released", "The claim on “{title}” was released because it was overdue."),
    },
    "claim_fulfilled": {
        "zh-CN": ("心愿已完成", "「{title}」已由志愿者完成，请确认并评价。"),
        "en": ("Marked as done", "“{title}” was marked as done; please confirm and rate it."),
    },
    "claim_confirmed": {
        "zh-CN": ("服务已确认", "「{title}」已确认完成，感谢您的付出！"),
        "en": ("Confirmed", "“{title}” was confirmed. Thank you!"),
    },
    "claim_cancelled": {
        "zh-CN": ("认领已取消", "「{title}」已取消，您的认领随之取消。"),
        "en": ("Claim cancelled", "“{title}” was cancelled, and your claim with it."),
    },
    "waitlist_promoted": {
        "zh-CN": ("候补成功", "您已从候补转为正式报名「{title}」。"),
        "en": ("You are in", "You moved from the waitlist to a place on “{title}”."),
    },
    "event_reminder": {
        "zh-CN": ("活动提醒", "您报名的「{title}」将于{when}开始。"),
        "en": ("Reminder", "“{title}” starts {when}."),
    },
    "claim_no_show": {
        "zh-CN": ("活动缺席", "您报名的「{title}」已结束，您未签到，记为缺席。"),
        "en": ("Marked absent", "“{title}” has ended and you did not check in; you were marked absent."),
    },
    "claim_withdrawn": {
        "zh-CN": ("志愿者取消了认领", "{volunteer}取消了对「{title}」的认领。"),
        "en": ("A volunteer withdrew", "{volunteer} withdrew from “{title}”."),
    },
    "posting_submitted": {
        "zh-CN": ("有新的发布待审核", "「{title}」等待您审核。"),
        "en": ("New posting to review", "“{title}” is waiting for your review."),
    },
    "org_submitted": {
        "zh-CN": ("新的组织申请", "「{org}」申请成为志愿组织，请审核。"),
        "en": ("New organisation application", "“{org}” applied to become an organisation; please review it."),
    },
    "org_approved": {
        "zh-CN": ("组织申请已通过", "「{org}」已通过审核，您现在可以以协调员身份发布和管理活动。"),
        "en": ("Organisation approved", "“{org}” was approved; you can now post and manage as its coordinator."),
    },
    "org_rejected": {
        "zh-CN": ("组织申请未通过", "「{org}」未通过审核：{reason}"),
        "en": ("Organisation not approved", "“{org}” was not approved: {reason}"),
    },
    "certificate_issued": {
        "zh-CN": ("志愿服务证明已开具", "「{org}」为您开具的志愿服务证明（编号 {number}）已生成，可随时下载出示。"),
        "en": ("Certificate issued", "Your certificate of volunteer service from “{org}” (No. {number}) is ready."),
    },
    # Wishes, projects and charity activities alike (微呼百应): the texts name no kind.
    "nearby_posting": {
        "zh-CN": ("附近需要志愿者", "距您约 {distance_km} 公里：「{title}」"),
        "en": ("Volunteers needed near you", "About {distance_km} km from you: “{title}”"),
    },
}

NOTIFICATION_KINDS = tuple(TEMPLATES)
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"

# Kinds a person must see now: Android priority high, APNs priority 10.
TIME_CRITICAL_KINDS = frozenset(
    {"wish_claimed", "claim_due_soon", "event_reminder", "waitlist_promoted", "claim_cancelled"}
)

# Kinds pushed at most once per interval per user: the inbox keeps every row,
# the push goes out for the first and the rest are ``skipped`` (``batched``).
# A district's coordinators are not woken for each of a burst of wishes.
PUSH_INTERVALS: dict[str, timedelta] = {"posting_submitted": timedelta(minutes=10)}

_DATETIME = "$datetime"


def placeholders(kind: str) -> frozenset[str]:
    """The ``{names}`` the texts of ``kind`` use, in any language."""
    names = set()
    for title, body in TEMPLATES[kind].values():
        for text in (title, body):
            names.update(name for _, name, _, _ in string.Formatter().parse(text) if name)
    return frozenset(names)


def encode_params(kind: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The context values the texts of ``kind`` need, as JSON (kept on the row so the
    inbox can show the message again in another language)."""
    params: dict[str, Any] = {}
    for name in placeholders(kind):
        value = context.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            params[name] = {_DATETIME: as_utc(value).isoformat()}
        elif isinstance(value, bool) or not isinstance(value, int | float | str):
            params[name] = str(value)
        else:
            params[name] = value
    return params


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(kind: str, locale: str | None, context: Mapping[str, Any], tz: str | None = None) -> tuple[str, str]:
    """Title and body of ``kind`` in ``locale`` (zh-CN when unknown).

    Times are shown in ``tz`` (``DEFAULT_TIMEZONE`` when unset); distances with one
    decimal. ``context`` may be notify()'s keyword arguments or stored params.
    """
    texts = TEMPLATES[kind]
    title, body = texts.get(locale or DEFAULT_LOCALE) or texts[DEFAULT_LOCALE]
    english = locale == "en"
    values = _Blank({k: _display(v, english, tz) for k, v in context.items() if v is not None})
    return title.format_map(values), body.format_map(values)


def _display(value: Any, english: bool, tz: str | None) -> str:
    if isinstance(value, dict) and _DATETIME in value:
        value = datetime.fromisoformat(value[_DATETIME])
    if isinstance(value, datetime):
        local = as_utc(value).astimezone(zone(tz))
        if english:
            return local.strftime("on %d %b at %H:%M").replace("on 0", "on ")
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
