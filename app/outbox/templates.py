"""Notification texts (gettext, English source). ``{title}`` etc. come from notify()'s context.

A text is rendered in the recipient's language (``User.locale``) when the row
is written — that is what the push says, whoever's request caused it — and
again in the reader's language when the inbox is read, from the params kept on
the row."""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from babel import dates as babel_dates
from flask_babel import LazyString, format_decimal, get_locale, gettext
from flask_babel import lazy_gettext as _l

from app.clock import as_utc, zone
from app.i18n import API_LOCALES, DEFAULT_LOCALE, in_locale

# kind: (title, body), in English; the catalogs (app/translations) hold the other languages.
TEMPLATES: dict[str, tuple[LazyString, LazyString]] = {
    "posting_approved": (_l("Posting approved"), _l("Your posting “{title}” was approved and is now public.")),
    "posting_rejected": (_l("Posting rejected"), _l("Your posting “{title}” was rejected: {reason}")),
    "posting_expiring": (_l("Posting expiring soon"), _l("“{title}” expires within {hours} hours; you can extend it.")),
    "posting_expired": (_l("Posting expired"), _l("“{title}” has expired.")),
    "wish_claimed": (_l("Your wish was claimed"), _l("{volunteer} claimed “{title}”.")),
    "claim_due_soon": (_l("Claim due soon"), _l("Your claim on “{title}” is due within {hours} hours.")),
    "claim_released": (_l("Claim released"), _l("The claim on “{title}” was released because it was overdue.")),
    "claim_fulfilled": (_l("Marked as done"), _l("“{title}” was marked as done; please confirm and rate it.")),
    "claim_confirmed": (_l("Confirmed"), _l("“{title}” was confirmed. Thank you!")),
    "claim_cancelled": (_l("Claim cancelled"), _l("“{title}” was cancelled, and your claim with it.")),
    "waitlist_promoted": (_l("You are in"), _l("You moved from the waitlist to a place on “{title}”.")),
    "event_reminder": (_l("Reminder"), _l("“{title}” starts {when}.")),
    "claim_no_show": (_l("Marked absent"), _l("“{title}” has ended and you did not check in; you were marked absent.")),
    "claim_withdrawn": (_l("A volunteer withdrew"), _l("{volunteer} withdrew from “{title}”.")),
    "posting_submitted": (_l("New posting to review"), _l("“{title}” is waiting for your review.")),
    "org_submitted": (
        _l("New organisation application"),
        _l("“{org}” applied to become an organisation; please review it."),
    ),
    "org_approved": (
        _l("Organisation approved"),
        _l("“{org}” was approved; you can now post and manage as its coordinator."),
    ),
    "org_rejected": (_l("Organisation not approved"), _l("“{org}” was not approved: {reason}")),
    "record_pending": (
        _l("Service hours to approve"),
        _l("{minutes} minutes of {volunteer} for “{activity}” wait for your approval."),
    ),
    "record_approved": (_l("Service hours recorded"), _l("{minutes} minutes for “{activity}” were recorded.")),
    "record_rejected": (
        _l("Service hours not recorded"),
        _l("{minutes} minutes for “{activity}” were not recorded: {reason}"),
    ),
    "certificate_issued": (
        _l("Certificate issued"),
        _l("Your certificate of volunteer service from “{org}” (No. {number}) is ready."),
    ),
    "join_requested": (_l("Request to join"), _l("{volunteer} asked to join “{org}”; please answer the request.")),
    "membership_approved": (_l("Welcome aboard"), _l("Your request to join “{org}” was approved.")),
    "membership_rejected": (_l("Request to join declined"), _l("Your request to join “{org}” was declined: {reason}")),
    # Wishes, projects and charity activities alike (微呼百应): the texts name no kind.
    "nearby_posting": (_l("Volunteers needed near you"), _l("About {distance_km} km from you: “{title}”")),
}

NOTIFICATION_KINDS = tuple(TEMPLATES)

# Kinds a person must see now: Android priority high, APNs priority 10.
TIME_CRITICAL_KINDS = frozenset(
    {"wish_claimed", "claim_due_soon", "event_reminder", "waitlist_promoted", "claim_cancelled"}
)

# Kinds pushed at most once per interval per user: the inbox keeps every row,
# the push goes out for the first and the rest are ``skipped`` (``batched``).
# A district's coordinators are not woken for each of a burst of wishes, nor an
# org's for each record of an event's settlement.
# The same window for every queue a coordinator works through.
REVIEW_PUSH_INTERVAL = timedelta(minutes=10)
PUSH_INTERVALS: dict[str, timedelta] = {
    "posting_submitted": REVIEW_PUSH_INTERVAL,
    "record_pending": REVIEW_PUSH_INTERVAL,
}

_DATETIME = "$datetime"


@functools.cache
def placeholders(kind: str) -> frozenset[str]:
    """The ``{names}`` the texts of ``kind`` use (every translation uses the same)."""
    names = set()
    for text in TEMPLATES[kind]:
        names.update(name for _, name, _, _ in string.Formatter().parse(str(text._args[0])) if name)
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
    """Title and body of ``kind`` in ``locale`` (an API tag; zh-CN when unknown). Needs an app context.

    Times are shown in ``tz`` (``DEFAULT_TIMEZONE`` when unset), numbers as the
    locale writes them (distances with one decimal). ``context`` may be notify()'s
    keyword arguments or stored params; only the values the texts name are used.
    A scheduler batch renders thousands of rows: the texts of a (kind, language)
    are looked up once, and the language is switched only for values that need
    it formatted (times, numbers).
    """
    tag = locale if locale in API_LOCALES else DEFAULT_LOCALE
    title, body = _texts(kind, tag)
    values = {name: context[name] for name in placeholders(kind) if context.get(name) is not None}
    if all(isinstance(value, str) for value in values.values()):
        shown = _Blank(values)
    else:
        with in_locale(tag):
            shown = _Blank({name: _display(value, tz) for name, value in values.items()})
    return title.format_map(shown), body.format_map(shown)


@functools.cache
def _texts(kind: str, tag: str) -> tuple[str, str]:
    """The title and body templates of ``kind`` in the language ``tag`` (the
    compiled catalogs do not change while the app runs)."""
    title, body = TEMPLATES[kind]
    with in_locale(tag):
        return str(title), str(body)


def _display(value: Any, tz: str | None) -> str:
    if isinstance(value, dict) and _DATETIME in value:
        value = datetime.fromisoformat(value[_DATETIME])
    if isinstance(value, datetime):
        local = as_utc(value).astimezone(zone(tz))
        # The pattern is a translation: "on 5 Dec at 09:30", "12月5日 09:30".
        return babel_dates.format_datetime(local, gettext("'on' d MMM 'at' HH:mm"), locale=get_locale())
    if isinstance(value, float):
        return format_decimal(value, "0.0")
    if isinstance(value, int) and not isinstance(value, bool):
        return format_decimal(value)
    return str(value)
