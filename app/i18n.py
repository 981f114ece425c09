"""Languages: Flask-Babel, the one place a request's language is chosen, and the
translation of marshmallow's own validation messages.

Source strings are English; ``app/translations/<locale>/LC_MESSAGES/messages.po``
holds the zh_Hans_CN (zh-CN) and en catalogs, extracted and compiled with ``make messages``.

The language of a request, in this order (``select_locale``):

1. the signed-in user's ``locale`` (what they chose in the app; pushes use it too),
2. ``Accept-Language`` (zh / zh-CN / zh-* or en / en-*),
3. zh-CN.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, lazy_gettext
from flask_babel import refresh as _refresh
from flask_jwt_extended import get_current_user

# The API's language tags (User.locale, Accept-Language) and Babel's names for them
# (Babel spells zh_CN with its script, zh_Hans_CN: the catalog directory's name).
API_LOCALES = {"zh-CN": "zh_Hans_CN", "en": "en"}
DEFAULT_LOCALE = "zh-CN"
_PRIMARY = {"zh": "zh-CN", "en": "en"}

babel = Babel()


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", API_LOCALES[DEFAULT_LOCALE])
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")  # relative to the app package
    babel.init_app(app, locale_selector=select_locale)
    # Pages (the certificate check) say which language they are in.
    app.context_processor(lambda: {"page_language": current_locale()})


def select_locale() -> str:
    """Babel's locale for this request (see the module docstring)."""
    return API_LOCALES[negotiate()]


def negotiate() -> str:
    """The API tag (``zh-CN`` or ``en``) of this request's language."""
    if not has_request_context():
        return DEFAULT_LOCALE
    user = _signed_in_user()
    if user is not None and getattr(user, "locale", None) in API_LOCALES:
        return user.locale
    # The client's languages, most wanted first: the first Chinese or English one wins
    # (en-GB, zh-TW: any region or script of the two).
    for tag, _quality in request.accept_languages:
        primary = tag.split("-")[0].split("_")[0].lower()
        if primary in _PRIMARY:
            return _PRIMARY[primary]
    return DEFAULT_LOCALE


def _signed_in_user():
    """The user flask-jwt-extended loaded for this request, if it did (never verifies:
    before ``@jwt_required`` ran, or without a valid token, there is none)."""
    try:
        return get_current_user()
    except RuntimeError:
        return None


def current_locale() -> str:
    """The API tag of the language in force (request, or ``in_locale`` block)."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else DEFAULT_LOCALE


def user_loaded() -> None:
    """Called once the request's user is known: forget a language chosen before."""
    _refresh()


@contextmanager
def in_locale(tag: str | None) -> Iterator[None]:
    """Texts inside are in ``tag`` (an API tag; zh-CN when unknown). Needs an app context."""
    with force_locale(API_LOCALES.get(tag or DEFAULT_LOCALE, API_LOCALES[DEFAULT_LOCALE])):
        yield


# --- marshmallow's own messages --------------------------------------------------------
# marshmallow formats its default messages (field errors and validators) in English
# before the app sees them. The 422 handler translates them through the catalog:
# each template below is matched against a message and, when it matches, the
# translated template is filled with the same values. The app's own messages are
# translated where they are raised and pass through untouched.
_ = lazy_gettext
MARSHMALLOW_MESSAGES = (
    # marshmallow.schema.Schema
    _("Invalid input type."),
    _("Unknown field."),
    # marshmallow.fields
    _("Missing data for required field."),
    _("Field may not be null."),
    _("Invalid value."),
    _("Not a valid boolean."),
    _("Not a valid date."),
    _("Not a valid datetime."),
    _("Not a valid time."),
    _('"{input}" cannot be formatted as a date.'),
    _('"{input}" cannot be formatted as a datetime.'),
    _('"{input}" cannot be formatted as a time.'),
    _("Not a valid naive datetime."),
    _("Not a valid aware datetime."),
    _("Special numeric values (nan or infinity) are not permitted."),
    _("Not a valid email address."),
    _("Must be one of: {choices}."),
    _("Not a valid integer."),
    _("Not a valid number."),
    _("Number too large."),
    _("Not a valid list."),
    _("Not a valid mapping type."),
    _("Invalid type."),
    _("Not a valid string."),
    _("Not a valid utf-8 string."),
    _("Not a valid tuple."),
    _("Not a valid URL."),
    _("Not a valid UUID."),
    _("Not a valid IP address."),
    _("Not a valid IPv4 address."),
    _("Not a valid IPv6 address."),
    _("Not a valid IP interface."),
    _("Not a valid IPv4 interface."),
    _("Not a valid IPv6 interface."),
    _("Not a valid period of time."),
    _("{input} cannot be formatted as a timedelta."),
    # marshmallow.validate
    _("Shorter than minimum length {min}."),
    _("Longer than maximum length {max}."),
    _("Length must be between {min} and {max}."),
    _("Length must be {equal}."),
    _("Must be greater than or equal to {min}."),
    _("Must be greater than {min}."),
    _("Must be less than or equal to {max}."),
    _("Must be less than {max}."),
    _("Must be greater than or equal to {min} and less than or equal to {max}."),
    _("Must be greater than or equal to {min} and less than {max}."),
    _("Must be greater than {min} and less than or equal to {max}."),
    _("Must be greater than {min} and less than {max}."),
    _("Invalid input."),
    _("String does not match expected pattern."),
    _("One or more of the choices you made was in: {values}."),
    _("One or more of the choices you made was not in: {choices}."),
    _("Must be equal to {other}."),
)
del _

_FIELD = re.compile(r"\{(\w+)\}")


def _pattern(template: str) -> re.Pattern[str]:
    parts = _FIELD.split(template)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
    return re.compile(f"^{regex}$", re.DOTALL)


# The most specific first: "Must be greater than {min}." would also match the
# message of a range with both ends.
_TEMPLATES = sorted(
    ((_pattern(lazy._args[0]), lazy) for lazy in MARSHMALLOW_MESSAGES),
    key=lambda item: -len(_FIELD.sub("", item[1]._args[0])),
)


def translate_message(text: str) -> str:
    """``text`` in the request's language when it is one of marshmallow's messages."""
    for pattern, template in _TEMPLATES:
        match = pattern.match(text)
        if match:
            return _FIELD.sub(lambda field, found=match: found.group(field.group(1)), str(template))
    return text


def translate_messages(value: Any) -> Any:
    """A 422's ``errors`` (location -> field -> messages, nested) with each message translated."""
    if isinstance(value, dict):
        return {key: translate_messages(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [translate_messages(item) for item in value]
    if isinstance(value, str):
        return translate_message(value)
    return value


__all__ = [
    "API_LOCALES",
    "DEFAULT_LOCALE",
    "current_locale",
    "gettext",
    "in_locale",
    "init_app",
    "lazy_gettext",
    "negotiate",
    "translate_messages",
]
