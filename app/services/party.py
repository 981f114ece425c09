"""Party members serve where they live (党员志愿者, 双报到).

A party member is a member of an approved ``party_branch`` org (joined on
request or added by a coordinator). They report to the community where they
live (在职党员到社区报到): one approved ``community`` org at a time. Their
``party`` block (branch, community) is seen by them, by their branch's
coordinators and by that community's coordinators (``Actor.sees_party``).

The branch's and the community's lists give each member's service in a period,
wherever it happened (any org's records): recorded hours (``recorded`` records
only, by when the service ended, like every other period), wishes fulfilled
(wish claims marked done in the period), claims made in the period, and the
last recorded service up to the period's end. The figures of a page (or of a
CSV batch of 1,000 members) are read with one grouped query each over
the volunteers' indexes of records and claims,
so a branch of thousands of members costs a handful of queries, never one per
member; the hours and the last service come from the partial index
``ix_service_records_recorded_volunteer_id_ended_at`` alone (an index-only scan
on PostgreSQL: 5,000 members over a year of records, bench/party_members.py).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from app.clock import local_date, local_days, utcnow, zone
from app.districts import district_name
from app.errors import Conflict, Invalid
from app.extensions import db
from app.i18n import current_locale
from app.models import Claim, CommunityReport, Org, OrgMember, ServiceRecord, User, Volunteer
from app.models.orgs import COMMUNITY, PARTY_BRANCH
from app.policy import DONE_CLAIM_STATUSES, hours
from app.services.orgs import get_org
from app.services.pagination import paginate
from app.services.party_blocks import communities_of, parties_of, party_of
from app.services.permissions import Actor
from app.services.record_exports import TIME_FORMAT, csv_cell, csv_lines
from app.services.records import counted, served_at

BATCH_SIZE = 1000
WISH = "wish"

CSV_COLUMNS = (
    _l("Volunteer no."),
    _l("Real name"),
    _l("Party branch"),
    _l("Community"),
    _l("Community district"),
    _l("Recorded hours"),
    _l("Wishes fulfilled"),
    _l("Claims"),
    _l("Last served"),
)


# --- reporting to a community (双报到) -------------------------------------------------------------------------


def report_to_community(actor: Actor, org_id: int) -> dict:
    """The caller, a party member, reports to an approved community org (one at a
    time: a new one replaces the old); returns their party block."""
    actor.require_party_member()
    org = db.session.get(Org, org_id)
    if org is None or org.kind != COMMUNITY:
        raise Invalid("org_id", gettext("Name a community organisation."))
    if not org.is_approved:
        raise Conflict("org_not_approved")
    report = db.session.get(CommunityReport, actor.id, with_for_update=True)
    if report is None:
        db.session.add(CommunityReport(user_id=actor.id, org_id=org.id))
    else:
        report.org_id = org.id
    db.session.commit()
    return party_of(actor.id)


def leave_community(actor: Actor) -> None:
    """The caller no longer reports to a community (nothing to undo: nothing happens)."""
    db.session.execute(sa.delete(CommunityReport).where(CommunityReport.user_id == actor.id))
    db.session.commit()


# --- the branch's and the community's lists --------------------------------------------------------------------


def default_period(first: date | None, last: date | None) -> tuple[date | None, date | None]:
    """Neither bound given: the current month (Asia/Shanghai, ``DEFAULT_TIMEZONE``)."""
    if first is None and last is None:
        today = local_date(utcnow())
        first, last = today.replace(day=1), today.replace(day=calendar.monthrange(today.year, today.month)[1])
    return first, last


def _members(org: Org) -> sa.Select:
    """(user id,) of the org's party members: a branch's members, or the party members reporting to a community."""
    if org.kind == PARTY_BRANCH:
        return sa.select(OrgMember.user_id.label("user_id")).where(OrgMember.org_id == org.id)
    branch_member = (
        sa.select(OrgMember.id)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.user_id == CommunityReport.user_id, Org.kind == PARTY_BRANCH, Org.is_approved)
    )
    return sa.select(CommunityReport.user_id.label("user_id")).where(
        CommunityReport.org_id == org.id, branch_member.exists()
    )


def list_party_members(
    actor: Actor, org_id: int, first: date | None, last: date | None, *, cursor: str | None, limit: int
) -> tuple[list[dict], str | None]:
    """A branch's members, or the party members reporting to a community, by user id,
    with their service in the period (default: the current month)."""
    org = get_org(org_id)
    actor.require_may_list_party_members(org)
    first, last = default_period(first, last)
    members = _members(org).subquery()
    stmt = (
        sa.select(User.id, User.display_name, Volunteer.volunteer_no)
        .join(members, members.c.user_id == User.id)
        .outerjoin(Volunteer, Volunteer.user_id == User.id)
    )
    rows, next_cursor = paginate(db.session, stmt, [(User.id, False)], cursor, limit, lambda r: [r.id], rows=True)
    figures = service_figures([r.id for r in rows], first, last)
    parties = parties_of(r.id for r in rows)
    items = []
    for user_id, name, volunteer_no in rows:
        party = parties.get(user_id)
        figure = figures[user_id]
        items.append(
            {
                "user": {"id": user_id, "display_name": name},
                "volunteer_no": volunteer_no,
                "branch": party.as_dict()["branch"] if party else None,
                "community": party.as_dict()["community"] if party else None,
                "recorded_hours": hours(figure.minutes),
                "wishes_fulfilled": figure.wishes_fulfilled,
                "claims": figure.claims,
                "last_served_at": figure.last_served_at,
            }
        )
    return items, next_cursor


@dataclass
class Figures:
    minutes: int = 0
    wishes_fulfilled: int = 0
    claims: int = 0
    last_served_at: datetime | None = None


def service_figures(user_ids: list[int], first: date | None, last: date | None) -> dict[int, Figures]:
    """Each user's service in the local days ``first``..``last`` (either open), wherever it
    happened: four grouped queries, whatever the number of users."""
    figures = {user_id: Figures() for user_id in user_ids}
    if not user_ids:
        return figures
    start, end = local_days(first, last)
    ids = sorted(figures)

    def within(column) -> list:
        where = []
        if start is not None:
            where.append(column >= start)
        if end is not None:
            where.append(column < end)
        return where

    record = ServiceRecord
    # one pass over each member's recorded service up to the period's end: the period's
    # minutes, and the latest service (which may lie before the period)
    in_period = sa.and_(*within(served_at())) if start is not None else sa.true()
    served = db.session.execute(
        sa.select(
            record.volunteer_id,
            sa.func.sum(record.minutes).filter(in_period),
            sa.func.max(served_at()),
        )
        .where(record.volunteer_id.in_(ids), counted(), *([served_at() < end] if end is not None else []))
        .group_by(record.volunteer_id)
    )
    for user_id, total, latest in served:
        figures[user_id].minutes = int(total or 0)
        figures[user_id].last_served_at = latest
    # one pass over each member's claims: wishes marked done in the period, claims made in it
    fulfilled = sa.and_(Claim.status.in_(DONE_CLAIM_STATUSES), Claim.kind == WISH, *within(Claim.fulfilled_at))
    made = sa.and_(*within(Claim.claimed_at)) if start is not None or end is not None else sa.true()
    counts = db.session.execute(
        sa.select(
            Claim.user_id,
            sa.func.count().filter(fulfilled),
            sa.func.count().filter(made),
        )
        .where(Claim.user_id.in_(ids), sa.or_(fulfilled, made))
        .group_by(Claim.user_id)
    )
    for user_id, wishes, claims in counts:
        figures[user_id].wishes_fulfilled = wishes
        figures[user_id].claims = claims
    return figures


def party_report_csv(actor: Actor, org_id: int, first: date | None, last: date | None) -> Iterator[bytes]:
    """The branch's report (UTF-8 with a BOM): one row per member with their community
    (its name and district's name, never a code) and their service in the period,
    as a generator of byte chunks, one per batch of members. Permission is checked now."""
    org = get_org(org_id)
    actor.require_may_export_party_report(org)
    first, last = default_period(first, last)
    members = _members(org).subquery()
    stmt = (
        sa.select(User.id, sa.func.coalesce(Volunteer.real_name, User.display_name), Volunteer.volunteer_no)
        .join(members, members.c.user_id == User.id)
        .outerjoin(Volunteer, Volunteer.user_id == User.id)
        .order_by(User.id)
        .limit(BATCH_SIZE)
    )
    locale = current_locale()
    local_zone = zone()

    def rows(batch) -> list[list]:
        ids = [r[0] for r in batch]
        figures = service_figures(ids, first, last)
        communities = communities_of(ids)  # every row's branch is this one
        out = []
        for user_id, name, volunteer_no in batch:
            community, figure = communities.get(user_id), figures[user_id]
            last_served = figure.last_served_at
            out.append(
                [
                    volunteer_no,
                    name,
                    org.name,
                    community[0] if community else None,
                    district_name(community[1], locale) if community else None,
                    hours(figure.minutes),
                    figure.wishes_fulfilled,
                    figure.claims,
                    last_served.astimezone(local_zone).strftime(TIME_FORMAT) if last_served else None,
                ]
            )
        return out

    def generate() -> Iterator[bytes]:
        yield "\ufeff".encode() + csv_lines([[str(column) for column in CSV_COLUMNS]])
        last_id = 0
        while True:
            batch = db.session.execute(stmt.where(User.id > last_id)).all()
            if batch:
                last_id = batch[-1][0]
                yield csv_lines([[csv_cell(value) for value in row] for row in rows(batch)])
            if len(batch) < BATCH_SIZE:
                return

    return generate()


def report_filename(org_id: int, first: date | None, last: date | None) -> str:
    period = "-".join(day.isoformat() for day in (first, last) if day is not None)
    return f"party-members-{org_id}{'-' + period if period else ''}.csv"
