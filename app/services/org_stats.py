"""An org's dashboard (组织数据看板): its figures per week or month.

Each figure is one SQL query grouped by period (never one query per period);
periods are local weeks (Monday to Sunday) or calendar months in
``DEFAULT_TIMEZONE`` (Asia/Shanghai). Every period of the range is present,
with zeros where nothing happened; ``period_start`` is the first day of the
period even when the range starts later (the first and last periods then count
only the days of the range).

The figures of a period:

- ``postings_opened``: postings of the org created in the period that are or
  were public (``PUBLIC_POSTING_STATUSES``: open, claimed, full, closed,
  expired — the same rule as the public figures; a posting cancelled or still
  in review does not count);
- ``claims``: claims made (``claimed_at``) on the org's postings in the period,
  whatever became of them (waitlisted and withdrawn ones included);
- ``wishes_fulfilled``: the org's wishes whose claim was marked done
  (``fulfilled_at``, claim still ``DONE_CLAIM_STATUSES``) in the period;
- ``credit_hours``: the credit minutes of the records the org recorded
  (``recorded`` ones) served in the period (``records.served_at``), as hours
  with one decimal;
- ``volunteers_active``: distinct volunteers with a recorded record (credit
  or honor) of the org served in the period.

Local periods in SQL: PostgreSQL truncates ``ts AT TIME ZONE <zone>`` with
``date_trunc``, exact in any zone. SQLite has no zone database: the local date
is the UTC time shifted by the zone's UTC offset at the start of the range.
That is exact for zones without daylight saving time (Asia/Shanghai, UTC+8
all year); in a zone with DST, records within an hour of midnight around a
change could fall into the neighbouring day on SQLite.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask_babel import gettext

from app.clock import local_days, utcnow, zone
from app.errors import Forbidden, Invalid
from app.extensions import db
from app.models import Claim, Posting, ServiceRecord
from app.policy import DONE_CLAIM_STATUSES, PUBLIC_POSTING_STATUSES, hours
from app.services.orgs import get_org
from app.services.permissions import Actor
from app.services.records import counted, served_at

INTERVALS = ("week", "month")
FIGURES = ("postings_opened", "claims", "wishes_fulfilled", "credit_hours", "volunteers_active")
DEFAULT_PERIODS = 12  # when no ``from`` is given: the last twelve weeks or months
MAX_PERIODS = 200


def org_stats(actor: Actor, org_id: int, first: date | None, last: date | None, interval: str = "month") -> dict:
    """``{series: [{period_start, postings_opened, ...}, ...]}`` for the org's
    coordinators and admins, oldest period first. ``last`` defaults to today,
    ``first`` to twelve periods back."""
    org = get_org(org_id)
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")
    if interval not in INTERVALS:
        raise Invalid("interval", gettext("One of: %(choices)s", choices=", ".join(INTERVALS)), location="query")
    if last is None:
        last = max(utcnow().astimezone(zone()).date(), first or date.min)
    if first is None:
        first = period_start(last, interval)
        for _ in range(DEFAULT_PERIODS - 1):
            first = period_start(first - timedelta(days=1), interval)
    starts = period_starts(first, last, interval)
    if len(starts) > MAX_PERIODS:
        raise Invalid("from", gettext("At most %(most)d periods.", most=MAX_PERIODS), location="query")
    start, end = local_days(first, last)
    bucket = _Bucket(interval, start)
    series: dict[date, dict[str, Any]] = {s: dict.fromkeys(FIGURES, 0) for s in starts}

    def fill(rows, *names: str) -> None:
        for period, *values in rows:
            figures = series.get(_as_date(period))
            if figures is None:  # SQLite in a zone with DST: see the module's docstring
                continue
            for name, value in zip(names, values, strict=True):
                figures[name] = value or 0

    opened = sa.select(bucket(Posting.created_at).label("period")).where(
        Posting.org_id == org.id,
        Posting.status.in_(PUBLIC_POSTING_STATUSES),
        Posting.created_at >= start,
        Posting.created_at < end,
    )
    fill(_per_period(opened, sa.func.count()), "postings_opened")

    claims = (
        sa.select(bucket(Claim.claimed_at).label("period"))
        .join(Posting, Posting.id == Claim.posting_id)
        .where(Posting.org_id == org.id, Claim.claimed_at >= start, Claim.claimed_at < end)
    )
    fill(_per_period(claims, sa.func.count()), "claims")

    fulfilled = (
        sa.select(bucket(Claim.fulfilled_at).label("period"), Claim.posting_id)
        .join(Posting, Posting.id == Claim.posting_id)
        .where(
            Posting.org_id == org.id,
            Posting.kind == "wish",
            Claim.status.in_(DONE_CLAIM_STATUSES),
            Claim.fulfilled_at >= start,
            Claim.fulfilled_at < end,
        )
    )
    fill(_per_period(fulfilled, lambda q: sa.func.count(sa.distinct(q.c.posting_id))), "wishes_fulfilled")

    served = served_at()
    served_records = sa.select(
        bucket(served).label("period"),
        sa.case((ServiceRecord.kind == "credit", ServiceRecord.minutes), else_=0).label("credit_minutes"),
        ServiceRecord.volunteer_id,
    ).where(ServiceRecord.org_id == org.id, counted(), served >= start, served < end)
    fill(
        _per_period(
            served_records,
            lambda q: sa.func.sum(q.c.credit_minutes),
            lambda q: sa.func.count(sa.distinct(q.c.volunteer_id)),
        ),
        "credit_hours",
        "volunteers_active",
    )
    return {
        "series": [
            {"period_start": s, **figures, "credit_hours": hours(figures["credit_hours"])}
            for s, figures in series.items()
        ]
    }


def _per_period(stmt: sa.Select, *aggregates) -> list:
    """``stmt`` (with a ``period`` column) grouped by period: one row per period
    that has any, with each aggregate (an expression, or a function of the
    subquery). Grouped outside a subquery, so the period expression and its
    parameters are written once."""
    rows = stmt.subquery("per_period")
    columns = [a(rows) if callable(a) else a for a in aggregates]
    return db.session.execute(sa.select(rows.c.period, *columns).group_by(rows.c.period)).all()


def period_start(day: date, interval: str) -> date:
    """The first day of the week (Monday) or month ``day`` falls in."""
    if interval == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_starts(first: date, last: date, interval: str) -> list[date]:
    """The starts of every period from the one holding ``first`` to the one holding ``last``."""
    starts, current = [], period_start(first, interval)
    while current <= last and len(starts) <= MAX_PERIODS:
        starts.append(current)
        current = current + timedelta(days=7) if interval == "week" else (current + timedelta(days=32)).replace(day=1)
    return starts


class _Bucket:
    """A timestamp column → the local start date of its period, in SQL."""

    def __init__(self, interval: str, start: datetime) -> None:
        self.interval = interval
        self.zone = zone()
        self.start = start

    def __call__(self, column) -> sa.ColumnElement:
        if db.session.get_bind().dialect.name == "postgresql":
            local = sa.func.timezone(self.zone.key, column)  # column AT TIME ZONE zone
            return sa.cast(sa.func.date_trunc(self.interval, local), sa.Date)
        offset = self.start.astimezone(self.zone).utcoffset()
        shift = f"{int(offset.total_seconds() // 60):+d} minutes"
        if self.interval == "week":
            # Monday on or before: back six days, then forward to the next Monday.
            return sa.func.date(column, shift, "-6 days", "weekday 1")
        return sa.func.date(column, shift, "start of month")


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value)
