"""Shared marshmallow fields and the base schema of the API."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import current_app
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import RAISE, Schema, ValidationError, fields, missing, pre_load, validate

from app.clock import as_utc, isoformat
from app.inputs import has_forbidden_chars
from app.models.base import MAX_ID
from app.validators import MOBILE_INPUT_PATTERN, WHITESPACE, as_json_schema_reads, normalize_cn_mobile


class BaseSchema(Schema):
    """Unknown fields in a body are an error (422); so is text holding a NUL
    character or an unpaired surrogate (PostgreSQL cannot store either)."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_unstorable_text(self, data, **_kwargs):
        errors = _unstorable(data)
        if errors:
            raise ValidationError(errors)
        return data

    def _serialize(self, obj: Any, *, many: bool = False):
        """marshmallow's own ``_serialize`` with the per-field lookup chain cut
        short: each field's value is read once, as ``Schema.get_attribute``
        would read it, and given to the field's own ``_serialize``. Output is
        identical (``tests/test_dumping.py`` compares the two); a list page of
        20 postings has some 700 fields, where the chain was most of the cost.
        Fields that read their value their own way (``NestedFrom``,
        ``fields.Method``, dotted attributes) go the usual way."""
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        plan = self.__dict__.get("_dump_plan")
        if plan is None:
            plan = self.__dict__["_dump_plan"] = _dump_plan(self)
        result = {}
        for key, name, attribute, field, direct in plan:
            if direct:
                value = _value_of(obj, attribute)
                if value is missing:
                    default = field.dump_default
                    value = default() if callable(default) else default
                    if value is missing:
                        continue
                value = field._serialize(value, name, obj)
            else:
                value = field.serialize(name, obj, accessor=self.get_attribute)
                if value is missing:
                    continue
            result[key] = value
        return result


def _dump_plan(schema: Schema) -> list[tuple[str, str, str, fields.Field, bool]]:
    """Per dumped field: its key, name, attribute, the field, and whether its
    value may be read directly (see BaseSchema._serialize)."""
    plain_lookup = type(schema).get_attribute is Schema.get_attribute
    plan = []
    for name, field in schema.dump_fields.items():
        attribute = field.attribute or name
        direct = (
            plain_lookup
            and field._CHECK_ATTRIBUTE
            and type(field).get_value is fields.Field.get_value
            and "." not in attribute
        )
        plan.append((field.data_key if field.data_key is not None else name, name, attribute, field, direct))
    return plan


def _value_of(obj: Any, key: str) -> Any:
    """marshmallow.utils' lookup of one plain key: item access for mappings and
    rows, else the attribute; ``missing`` when there is neither. Whether an
    object takes item access is asked of its type, once per type (``obj[key]``
    looks there too), not of the object: an object that forwards unknown
    attributes (``PostingView``) would otherwise be asked for ``__getitem__``
    on every field."""
    kind = type(obj)
    items = _TAKES_ITEMS.get(kind)
    if items is None:
        items = _TAKES_ITEMS[kind] = hasattr(kind, "__getitem__")
    if not items:
        return getattr(obj, key, missing)
    try:
        return obj[key]
    except (KeyError, IndexError, TypeError, AttributeError):
        return getattr(obj, key, missing)


_TAKES_ITEMS: dict[type, bool] = {}


def _unstorable(value: Any) -> Any:
    """Where ``value`` holds text no database should get: the messages, shaped like marshmallow's."""
    message = [gettext("Text may not contain NUL characters or unpaired surrogates.")]
    if isinstance(value, str):
        return message if has_forbidden_chars(value) else None
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            if isinstance(key, str) and has_forbidden_chars(key):
                found["_schema"] = message
            inner = _unstorable(item)
            if inner:
                found[key] = inner
        return found or None
    if isinstance(value, list):
        found = {i: inner for i, item in enumerate(value) if (inner := _unstorable(item))}
        return found or None
    return None


def Id(**kwargs) -> fields.Integer:  # noqa: N802 - a field factory, used like a field class
    """A database id in a body or a query: an integer from 1 to the database's maximum."""
    kwargs.setdefault("strict", True)
    return fields.Integer(validate=validate.Range(1, MAX_ID), **kwargs)


# The years 2000-2100 at the start of a date or a time, as the document states them
# for what a client sends (mobile_api.openapi: answers may hold older dates).
YEARS_PATTERN = r"^(?:20[0-9]{2}|2100)-"
DATE_PATTERN = YEARS_PATTERN + "[0-9]{2}-[0-9]{2}$"
YEARS_MARK = "x-years-2000-2100"


def year_between(first: int, last: int) -> str:
    return gettext("The year must be between %(first)d and %(last)d.", first=first, last=last)


class UTCDateTime(fields.DateTime):
    """RFC 3339, answered in UTC (``2026-11-26T10:00:00Z``). Input must carry its
    offset (``Z`` or ``+08:00``): a phone's local time without one is refused,
    never guessed. Years outside 2000-2100 are refused."""

    MIN_YEAR, MAX_YEAR = 2000, 2100

    def __init__(self, *args, **kwargs) -> None:
        # marks the years rule for the document (mobile_api.openapi states it on inputs)
        kwargs["metadata"] = {YEARS_MARK: True, **(kwargs.get("metadata") or {})}
        super().__init__(*args, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat(value)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValidationError(
                gettext("Give the time with its offset, e.g. 2026-11-26T18:00:00+08:00 or 2026-11-26T10:00:00Z.")
            )
        if not self.MIN_YEAR <= parsed.year <= self.MAX_YEAR:
            raise ValidationError(year_between(self.MIN_YEAR, self.MAX_YEAR))
        return as_utc(parsed)


_YYYY_MM_DD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class LocalDate(fields.Date):
    """A calendar date ``YYYY-MM-DD`` (periods are dates in Asia/Shanghai, inclusive);
    years outside 2000-2100 are refused."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["metadata"] = {YEARS_MARK: True, **(kwargs.get("metadata") or {})}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _YYYY_MM_DD.fullmatch(value):
            raise ValidationError(gettext("Use a date as YYYY-MM-DD."))
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if not UTCDateTime.MIN_YEAR <= parsed.year <= UTCDateTime.MAX_YEAR:
            raise ValidationError(year_between(UTCDateTime.MIN_YEAR, UTCDateTime.MAX_YEAR))
        return parsed


class Phone(fields.String):
    """A mainland mobile number, loaded as E.164; the document states what is accepted
    as the pattern the loader itself matches (app.validators.MOBILE_INPUT_PATTERN)."""

    def __init__(self, *args, **kwargs) -> None:
        metadata = dict(kwargs.get("metadata") or {})
        said = metadata.pop("description", "")
        rule = (
            "A mainland mobile number: 11 digits, optionally after +86, 0086 or 86; ASCII or full-width "
            "digits, spaces or hyphens between them (the pattern); kept as E.164 (+8613812345678)."
        )
        kwargs["metadata"] = {"pattern": MOBILE_INPUT_PATTERN, "description": f"{said} {rule}".strip(), **metadata}
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_cn_mobile(text)
        except ValueError:
            raise ValidationError(gettext("Not a valid mainland mobile number.")) from None


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Location(BaseSchema):
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    lng = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)


class QuietHours(BaseSchema):
    start = fields.String(required=True, validate=validate.Regexp(_HHMM, error=_l("Use HH:MM.")))
    end = fields.String(required=True, validate=validate.Regexp(_HHMM, error=_l("Use HH:MM.")))


def quiet_hours_span_time(value: dict | None) -> None:
    """Quiet hours from a time to the same time would be a day or nothing: refused
    wherever quiet hours are set (``PATCH /me``, ``PUT /me/notification-settings``)."""
    if value and value.get("start") is not None and value.get("start") == value.get("end"):
        raise ValidationError(gettext("start and end must differ."))


def page_of(item_schema: type[Schema], name: str) -> type[Schema]:
    """The list envelope ``{"items": [...], "next_cursor": ...}``."""
    return BaseSchema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "next_cursor": fields.String(allow_none=True, required=True),
        },
        name=name,
    )


class StrictBoolean(fields.Boolean):
    """A JSON boolean, and only that: ``0``, ``1``, ``"true"`` are refused (422), as the
    document's ``type: boolean`` says. (Query strings keep ``fields.Boolean``: they are text.)"""

    def _deserialize(self, value, attr, data, **kwargs):
        # not a set lookup: 0 == False and 1 == True hash alike
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


# What a cursor is made of (app.services.pagination: a signed, URL-safe token).
CURSOR_PATTERN = r"^[A-Za-z0-9_.-]*$"


class PageQuery(BaseSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    cursor = fields.String(
        load_default=None,
        metadata={
            "pattern": CURSOR_PATTERN,
            "description": "The `next_cursor` of the page before (opaque and signed: any other is "
            "400 `invalid_cursor`); empty or absent: the first page.",
        },
    )


class _FromSource:
    """Dump ``source(obj)`` rather than an attribute; the spec still documents
    the field's real shape (a ``fields.Method`` could only say "object")."""

    def __init__(self, *args, source: Callable[[Any], Any], **kwargs):
        super().__init__(*args, dump_only=True, **kwargs)
        self.source = source

    def get_value(self, obj, attr, accessor=None, default=missing):
        return self.source(obj)


class NestedFrom(_FromSource, fields.Nested):
    """A nested object computed from the whole object: ``NestedFrom(Location, source=f)``."""


class ListFrom(_FromSource, fields.List):
    """A list computed from the whole object: ``ListFrom(fields.Nested(S), source=f)``."""


def known_timezone(value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(gettext("Unknown time zone.")) from None


def known_district(value: str) -> None:
    if value not in current_app.config["DISTRICTS"]:
        raise ValidationError(
            gettext("Unknown district. One of: %(choices)s", choices=", ".join(current_app.config["DISTRICTS"]))
        )


class District(fields.String):
    """A district code of ``DISTRICTS`` (``haishu``, ``yinzhou``, …); loading refuses
    any other. The OpenAPI document lists the configured codes as its enum."""

    def __init__(self, **kwargs):
        validators = kwargs.pop("validate", None) or []
        validators = list(validators) if isinstance(validators, list | tuple) else [validators]
        super().__init__(validate=[known_district, *validators], **kwargs)


class PrivacyVersion(fields.String):
    """The privacy policy's version a user accepts. Only the current one (``PRIVACY_VERSION``,
    which GET /api/v1/legal names) is accepted: any other is 422 ``consent_outdated``
    (app.services.accounts); the OpenAPI document states it as a pattern matching it alone."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Length(min=1, max=20))
        super().__init__(**kwargs)


class Pattern(validate.Regexp):
    """``validate.Regexp`` matching as the document's ``pattern`` is read (searched, ``$``
    the end of the text); the document states ``pattern`` itself (apispec reads ``regex``)."""

    def __init__(self, pattern: str, **kwargs) -> None:
        super().__init__(pattern, **kwargs)
        self._as_documented = as_json_schema_reads(pattern)

    def __call__(self, value):
        if self._as_documented.search(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# No text a client sends holds a NUL (BaseSchema: 422; app.inputs for a path or a query:
# 400), so every negated class of a pattern the document states for input names it; a
# lone surrogate, refused too, is left to words: JSON Schema's ECMAScript patterns read
# \ud800-\udfff as code units unless the u flag is set, which would refuse every emoji.
NUL = "\\u0000"
# A text with no shape of its own: anything but a NUL.
NO_NUL = f"^[^{NUL}]*$"
# A text with something in it besides white space (and, as every text, no NUL): the rule
# not_blank checks, stated as the pattern the document gives.
NOT_BLANK_PATTERN = f"^[^{NUL}]*[^{WHITESPACE}{NUL}][^{NUL}]*$"
not_blank = Pattern(NOT_BLANK_PATTERN, error=_l("Must not be blank."))
