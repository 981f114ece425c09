"""The single clock of the application: tests move time here, nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta(0)
_frozen: datetime | None = None


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


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
    global _offset, _frozen
    _offset = timedelta(0)
    _frozen = None


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime to aware UTC; naive values are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def isoformat(value: datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
