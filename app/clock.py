"""The single clock of the application: tests move time here, nowhere else.

Every time the domain keeps or compares (a wish's expiry, a claim's due time, a
record's window, "today" of a summary, a certificate's issue date, an
idempotent answer's age) is read from :func:`utcnow`. ``CLOCK_SHIFT_DAYS``
(tests only; production refuses it) runs this clock that many days ahead of
the wall clock in every process that imports it, so the suite — and the
servers and schedulers it starts, which inherit the variable — can be run a
year ahead (``CLOCK_SHIFT_DAYS=365 make test``).

What stays on the wall clock, because another party checks it there: the
``iat``/``exp`` of access and refresh tokens (PyJWT verifies them against the
real time), the scheduler's timetable (APScheduler's next run times), rate
limit windows, log and metric timestamps, and the assertions signed for
outside services (FCM's OAuth token). None of them is compared with a time of
this clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.config import Config

# The zone when neither the user nor DEFAULT_TIMEZONE names a valid one.
FALLBACK_TIMEZONE = "Asia/Shanghai"

# How far this process's clock runs ahead of the wall clock (CLOCK_SHIFT_DAYS).
SHIFT = timedelta(days=Config.CLOCK_SHIFT_DAYS)

_offset = timedelta(0)
_frozen: datetime | None = None


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + SHIFT + _offset


def freeze(at: datetime) -> None:
    """Stop the clock at ``at`` (tests only)."""
    global _frozen
    _frozen = as_utc(at)


def advance(delta: timedelta) -> None:
    """Move the clock forward by ``delta`` (tests only)."""
    global _offset, _frozen
    if _frozen is not None:
        _frozen += delta
    else:
        _offset += delta


def reset() -> None:
    """Back to the running clock (still ``CLOCK_SHIFT_DAYS`` ahead, if set)."""
    global _offset, _frozen
    _offset = timedelta(0)
    _frozen = None


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime to aware UTC; naive values are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    """RFC 3339 in UTC to the second, ``2026-11-26T10:00:00Z`` (four-digit years always)."""
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def default_timezone() -> str:
    """``DEFAULT_TIMEZONE`` of the running app (Asia/Shanghai outside one)."""
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.config.get("DEFAULT_TIMEZONE") or FALLBACK_TIMEZONE
    return FALLBACK_TIMEZONE


def zone(name: str | None = None) -> ZoneInfo:
    """The zone ``name`` (a user's own), else ``DEFAULT_TIMEZONE``, else Asia/Shanghai.

    The one place a time zone is chosen: quiet hours, "today", months of a
    summary and the times shown in notifications all come through here.
    """
    for candidate in (name, default_timezone(), FALLBACK_TIMEZONE):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo(FALLBACK_TIMEZONE)


def local_date(value: datetime, tz: str | None = None) -> date:
    """The calendar date of ``value`` in the zone ``tz`` (see :func:`zone`)."""
    return as_utc(value).astimezone(zone(tz)).date()


def day_start(day: date, tz: str | None = None) -> datetime:
    """The moment ``day`` begins in the zone ``tz`` (an aware datetime in that zone)."""
    return datetime.combine(day, time(0), tzinfo=zone(tz))


def local_midnight(now: datetime, tz: str | None = None) -> datetime:
    """The start of ``now``'s day in the zone ``tz`` (see :func:`zone`)."""
    return day_start(local_date(now, tz), tz)


def local_days(first: date | None, last: date | None, tz: str | None = None) -> tuple[datetime | None, datetime | None]:
    """The UTC instants [start, end) of the local days ``first`` to ``last``
    inclusive in the zone ``tz`` (see :func:`zone`); a missing bound stays None.
    ``2026-03-01``–``2026-03-31`` in Asia/Shanghai is 2026-02-28T16:00Z to
    2026-03-31T16:00Z."""
    return (
        day_start(first, tz).astimezone(UTC) if first is not None else None,
        day_start(last + timedelta(days=1), tz).astimezone(UTC) if last is not None else None,
    )
