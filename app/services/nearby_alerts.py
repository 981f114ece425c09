"""微呼百应 — nearby alerts: when a posting that needs people opens, the volunteers around it hear of it.

The kinds matched to volunteers (``matched_to_volunteers`` in the rulebook:
wish, project, charity) alert when they open — a project or charity only with
places free: a full one is not ``open``. One that opens again because a place
was given back (app.services.claims.places) alerts again, and only those not
told before hear of it.

A volunteer is told when all hold:

- they left ``nearby_alerts`` on, did not post it, and never held a claim on it;
- their home lies within their own ``push_radius_km`` of it (at most 50 km: no
  search goes beyond a 50 km box around it);
- they have had fewer than 3 such alerts today (their local day, in their time
  zone, ``DEFAULT_TIMEZONE`` when they set none).

At most 500 volunteers per posting, skills first: those holding a skill the
posting's tags name (app.skills), nearest first, then everyone else in reach,
nearest first. Each pass walks outwards in rings (1, 3, 10, 50 km) and in pages
of 1,000 volunteers ordered by distance, and stops as soon as 500 are reached,
so a posting in a busy district never reads the whole city's volunteers: the
skilled pass is ranges of ``ix_volunteer_skills_skill_home`` (one per skill),
the other ranges of ``ix_volunteers_home``. Each row's dedupe key names the
posting, so a posting that reopens never alerts anyone twice.

**Party members first (党员志愿者优先).** A kind with ``party_first`` in the
rulebook (a wish) alerts in two waves. The first goes only to party members
(members of an approved ``party_branch``) in range: when the wish's org is a
community, those reporting to it (双报到); otherwise any party member. If no
party member in range may be told (none there, or all with alerts off or past
claimants), everyone in range is alerted at once. Otherwise a follow-up request
is written, due ``PARTY_FIRST_MINUTES`` (default 30) later; the ``alert_nearby``
job takes it then, and only a wish still ``open`` (nobody claimed it) alerts
everyone else in range. Both waves are one walk's rules: the same daily
allowance, the same 500 a posting (those of the first wave count towards it),
never the author, never anyone twice (the dedupe key names the posting).

**Never holding up a claim.** The transaction that opens a posting (a claim
given back, a withdrawal, the release job, an approval) only writes a
:class:`~app.models.NearbyAlertRequest` — a plain INSERT that waits on nobody.
The fan-out runs afterwards in a transaction of its own, one posting each:
for a posting a coordinator just opened (created or approved), right after
that request's commit (:func:`send_requested`), so its neighbours hear of it
at once; for everything else — postings reopened by a withdrawal, a
cancellation or the release job, a fan-out that met a busy volunteer, a
process that died — from the ``alert_nearby`` scheduler job, so a
withdrawal's answer never carries a fan-out. A fan-out holds no lock a claim,
withdrawal or release needs (it reads the posting without locking it), and
on the request path it waits on nothing either: on PostgreSQL its
``lock_timeout`` is :data:`REQUEST_LOCK_TIMEOUT_MS`, and a fan-out that meets
another's lock rolls back and leaves its request to the job.

**Caps exact under concurrency, without a global lock.** A volunteer's daily
cap is one row (``nearby_alert_allowances``: their local day and its count)
taken with one conditional upsert per volunteer — ``INSERT … ON CONFLICT
(user_id) DO UPDATE … WHERE day < excluded.day OR alerts < 3 RETURNING`` — so
two fan-outs at once never both take a volunteer's third alert. A posting's
500 is exact because one posting is fanned out by one transaction at a time
(PostgreSQL: a per-posting ``pg_try_advisory_xact_lock``, which only fan-outs
take and which never waits: a second fan-out of the same posting leaves its
request for later).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from itertools import chain

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import OperationalError

from app.clock import local_date, utcnow
from app.extensions import db
from app.geo import RINGS_KM, bounding_box, distance_km_sql
from app.models import (
    Claim,
    CommunityReport,
    NearbyAlertAllowance,
    NearbyAlertRequest,
    Notification,
    Org,
    OrgMember,
    Posting,
    User,
    Volunteer,
    VolunteerSkill,
)
from app.models.orgs import COMMUNITY, PARTY_BRANCH
from app.outbox import notify_each
from app.policy import POLICIES, kinds_where
from app.services.posting_place import searched_point
from app.skills import vocabulary

log = logging.getLogger(__name__)

KIND = "nearby_posting"
DAILY_LIMIT = 3
PER_POSTING_LIMIT = 500
_PAGE = 1000
# How long a fan-out on a request's path waits for a lock before leaving its work to the job.
REQUEST_LOCK_TIMEOUT_MS = 1
# The namespace of the per-posting fan-out lock (pg_try_advisory_xact_lock(namespace, posting id)).
_FAN_OUT_LOCK = 0x4E42  # "NB"
MATCHED_KINDS = kinds_where(matched_to_volunteers=True)
PARTY_FIRST_KINDS = kinds_where(party_first=True)


# --- in the opening transaction ---------------------------------------------------------------------------------


def request_alerts(posting_ids: Iterable[int]) -> None:
    """The postings ``posting_ids`` opened in the caller's transaction: their nearby
    alerts are due. One INSERT … SELECT of the ones that alert at all (a kind matched
    to volunteers, open, with a place); it waits on no other transaction."""
    ids = sorted({int(p) for p in posting_ids})
    if not ids:
        return
    due = sa.select(
        Posting.id,
        sa.literal(utcnow(), type_=NearbyAlertRequest.created_at.type),
        Posting.kind.in_(PARTY_FIRST_KINDS),
    ).where(Posting.id.in_(ids), Posting.kind.in_(MATCHED_KINDS), Posting.status == "open", Posting.lat.is_not(None))
    db.session.execute(
        sa.insert(NearbyAlertRequest).from_select(["posting_id", "created_at", "party_first"], due),
        execution_options={"synchronize_session": False},
    )


def _due(now) -> sa.ColumnElement[bool]:
    """Requests that may run now (a party-first wish's follow-up waits for its ``due_at``)."""
    return sa.or_(NearbyAlertRequest.due_at.is_(None), NearbyAlertRequest.due_at <= now)


# --- after it: the fan-out ----------------------------------------------------------------------------------


def send_requested(posting_ids: Iterable[int]) -> int:
    """Right after the commit that requested them: fan out the alerts of ``posting_ids``,
    one transaction per posting, waiting on nobody (what meets a lock is left to the
    ``alert_nearby`` job); returns how many volunteers were alerted."""
    alerted = 0
    for posting_id in sorted(set(posting_ids)):
        try:
            alerted += fan_out(posting_id, wait=False) or 0
        except Exception:  # noqa: BLE001 - the request's own change is committed: never fail it now
            db.session.rollback()
            log.exception("nearby alerts of posting %s left to the job", posting_id)
    return alerted


def next_requested() -> int | None:
    """The posting of the oldest alert request, if any (for the ``alert_nearby`` job)."""
    return db.session.scalar(
        sa.select(NearbyAlertRequest.posting_id).where(_due(utcnow())).order_by(NearbyAlertRequest.id).limit(1)
    )


def fan_out(posting_id: int, *, wait: bool = True) -> int | None:
    """Alert the volunteers near ``posting_id`` for its pending requests, in one
    transaction of its own, committed here; returns how many were alerted, or None
    when it was left for later (another fan-out of the posting is running, or — with
    ``wait=False`` — a lock was held)."""
    postgres = db.session.get_bind().dialect.name == "postgresql"
    try:
        if postgres:
            if not wait:
                db.session.execute(sa.text(f"SET LOCAL lock_timeout = '{REQUEST_LOCK_TIMEOUT_MS}ms'"))
            lock = sa.func.pg_try_advisory_xact_lock(_FAN_OUT_LOCK, posting_id)
            if not db.session.scalar(sa.select(lock)):
                db.session.rollback()
                return None
        taken = db.session.execute(
            sa.delete(NearbyAlertRequest)
            .where(NearbyAlertRequest.posting_id == posting_id, _due(utcnow()))
            .returning(NearbyAlertRequest.party_first)
            .execution_options(synchronize_session=False)
        ).all()
        if not taken:
            db.session.rollback()
            return 0
        posting = db.session.get(Posting, posting_id, populate_existing=True)
        party_wave = all(party_first for (party_first,) in taken)
        alerted = _alert_wave(posting, party_wave) if posting is not None else 0
        db.session.commit()
        return alerted
    except OperationalError as exc:
        db.session.rollback()
        if wait or not _is_lock_wait(exc):
            raise
        log.info("nearby alerts of posting %s left to the job: a lock was held", posting_id)
        return None
    except BaseException:
        db.session.rollback()
        raise


def _is_lock_wait(exc: OperationalError) -> bool:
    # lock_not_available (lock_timeout), deadlock_detected
    return (getattr(exc.orig, "sqlstate", None) or "") in ("55P03", "40P01")


def _alert_wave(posting: Posting, party_wave: bool) -> int:
    """One fan-out of ``posting``: its party members' wave (then the follow-up is
    written, unless nobody there could be told: then everyone at once), or everyone's."""
    if not party_wave:
        return alert_volunteers(posting)
    if posting.status != "open":
        return 0
    alerted, candidates = _alert(posting, party_audience(posting))
    if not candidates:
        return alerted + alert_volunteers(posting)
    follow_up_pending = db.session.scalar(
        sa.select(NearbyAlertRequest.id)
        .where(NearbyAlertRequest.posting_id == posting.id, NearbyAlertRequest.due_at.is_not(None))
        .limit(1)
    )
    if follow_up_pending is None:
        now = utcnow()
        wait = timedelta(minutes=current_app.config["PARTY_FIRST_MINUTES"])
        db.session.add(NearbyAlertRequest(posting_id=posting.id, created_at=now, party_first=False, due_at=now + wait))
    return alerted


def party_audience(posting: Posting):
    """Who hears of a party-first posting first, as a clause on a user-id column: the
    party members reporting to its org when that is a community, else any party member."""
    community = None
    if posting.org_id is not None:
        community = db.session.scalar(sa.select(Org.id).where(Org.id == posting.org_id, Org.kind == COMMUNITY))

    def clause(user_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
        party_member = (
            sa.select(OrgMember.id)
            .join(Org, Org.id == OrgMember.org_id)
            .where(OrgMember.user_id == user_id, Org.kind == PARTY_BRANCH, Org.is_approved)
            .exists()
        )
        if community is None:
            return party_member
        reporting = (
            sa.select(CommunityReport.user_id)
            .where(CommunityReport.user_id == user_id, CommunityReport.org_id == community)
            .exists()
        )
        return sa.and_(reporting, party_member)

    return clause


def alert_volunteers(posting: Posting) -> int:
    """Queue ``nearby_posting`` for the volunteers near an open posting that needs
    people, in the caller's transaction; returns how many were queued now.

    Volunteers told of this posting before (it reopened) count towards the 500
    where they come up in the walk, and are not told again. Each new one takes a
    unit of their daily allowance, granted by the database in one statement per
    stretch of the walk, so only those granted are queued.
    """
    return _alert(posting, None)[0]


def _alert(posting: Posting, audience) -> tuple[int, int]:
    """:func:`alert_volunteers` among the volunteers ``audience`` (a clause on a user-id
    column) admits (None: all); returns (queued now, volunteers in range who may be
    told of it at all: alerts on, not a past claimant)."""
    if not POLICIES[posting.kind].matched_to_volunteers or posting.status != "open" or posting.lat is None:
        return 0, 0
    dedupe = f"posting:{posting.id}"
    skills = vocabulary().codes_named_by(posting.tag_names)
    # Whoever held a claim on it knows it already (a released claimant lost it
    # for being overdue, a withdrawn one gave it up: "near you" would be noise).
    past_claimants = set(db.session.scalars(sa.select(Claim.user_id).where(Claim.posting_id == posting.id)))
    walk = (
        chain(_reachable(posting, skills, audience), _reachable(posting, None, audience))
        if skills
        else _reachable(posting, None, audience)
    )
    seen: set[int] = set()
    candidates = 0  # a skilled volunteer comes up again in the second pass
    chosen: dict[int, dict] = {}
    reached = 0  # volunteers this posting has reached, earlier or now
    now = utcnow()
    for page in walk:
        eligible = []
        for user_id, km, tz, wants_alerts in page:
            if user_id in seen:
                continue
            seen.add(user_id)
            if wants_alerts and user_id not in past_claimants:
                eligible.append((user_id, km, tz))
        candidates += len(eligible)
        if not eligible:
            continue
        already = _already_alerted(dedupe, [user_id for user_id, _, _ in eligible])
        # those whose allowance is spent for today (a committed fact that cannot change
        # back today) are passed over without asking the database to refuse them
        spent = _spent_today({u: local_date(now, tz) for u, _, tz in eligible if u not in already})
        eligible = [entry for entry in eligible if entry[0] not in spent]
        start = 0
        while start < len(eligible) and reached < PER_POSTING_LIMIT:
            # the stretch that reaches the limit if every new one in it is granted
            end, assumed = start, reached
            while end < len(eligible) and assumed < PER_POSTING_LIMIT:
                assumed += 1
                end += 1
            stretch = eligible[start:end]
            granted = take_allowances({u: local_date(now, tz) for u, _, tz in stretch if u not in already})
            for user_id, km, _ in stretch:
                if user_id in already:
                    reached += 1
                elif user_id in granted:
                    chosen[user_id] = {"distance_km": round(km, 1)}
                    reached += 1
            start = end
        if reached >= PER_POSTING_LIMIT:
            break
    if not chosen:
        return 0, candidates
    return notify_each(KIND, chosen, dedupe=dedupe, title=posting.title, posting_id=posting.id), candidates


def _spent_today(days: dict[int, date]) -> set[int]:
    """The users of ``days`` (user id -> their local today) with no alert left today."""
    if not days:
        return set()
    a = NearbyAlertAllowance
    rows = db.session.execute(sa.select(a.user_id, a.day, a.alerts).where(a.user_id.in_(list(days))))
    return {u for u, day, alerts in rows if day > days[u] or (day == days[u] and alerts >= DAILY_LIMIT)}


def take_allowances(days: dict[int, date]) -> set[int]:
    """The users of ``days`` (user id -> their local today) granted one more alert today:
    one ``INSERT … ON CONFLICT (user_id) DO UPDATE … WHERE`` (the day is new, or
    fewer than DAILY_LIMIT so far) ``RETURNING user_id``, in user order."""
    if not days:
        return set()
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = NearbyAlertAllowance.__table__
    stmt = insert(table).values([{"user_id": u, "day": days[u], "alerts": 1} for u in sorted(days)])
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.user_id],
        set_={
            "alerts": sa.case((table.c.day == stmt.excluded.day, table.c.alerts + 1), else_=1),
            "day": stmt.excluded.day,
        },
        # a day earlier than the stored one (the user moved west) takes nothing
        where=sa.or_(
            table.c.day < stmt.excluded.day, sa.and_(table.c.day == stmt.excluded.day, table.c.alerts < DAILY_LIMIT)
        ),
    ).returning(table.c.user_id)
    return set(db.session.scalars(stmt))


def _reachable(posting: Posting, skills: list[str] | None, audience=None) -> Iterator[list[tuple]]:
    """Pages of (user id, distance km, time zone, nearby_alerts) of the volunteers
    whose own radius covers the posting, nearest first (ties by id); with
    ``skills``, only those holding one of them (a volunteer holding two comes
    up twice)."""
    inner_km = 0.0
    for outer_km in RINGS_KM:
        last = None
        while True:
            page = _ring_page(posting, skills, inner_km, outer_km, last, audience)
            if page:
                yield page
            if len(page) < _PAGE:
                break
            last = (page[-1][1], page[-1][0])
        inner_km = outer_km


def _ring_page(
    posting: Posting,
    skills: list[str] | None,
    inner_km: float,
    outer_km: float,
    last: tuple[float, int] | None,
    audience=None,
) -> list[tuple]:
    """One page of the ring inner_km < distance <= outer_km, after ``last``.

    The inner query reads only the columns of ``ix_volunteers_home`` (or, with
    ``skills``, of ``ix_volunteer_skills_skill_home``): an index-only scan on
    PostgreSQL; the users are read for the page.
    """
    homes = VolunteerSkill if skills else Volunteer
    # who hears of a wish, and the distance they are told, say no more than its
    # rounded point does (app.services.posting_place)
    lat, lng = searched_point(posting)
    distance = distance_km_sql(homes.home_lat, homes.home_lng, lat, lng)
    min_lat, max_lat, min_lng, max_lng = bounding_box(lat, lng, outer_km)
    where = [
        homes.home_lat.between(min_lat, max_lat),
        homes.home_lng.between(min_lng, max_lng),
        homes.user_id != posting.author_id,
        distance <= homes.push_radius_km,
        distance <= outer_km,
    ]
    if skills:
        where.append(VolunteerSkill.skill.in_(skills))
    if audience is not None:
        where.append(audience(homes.user_id))
    if inner_km:
        # beyond the inner ring only the volunteers with a wider radius qualify
        where += [homes.push_radius_km > inner_km, distance > inner_km]
    if last is not None:
        last_km, last_id = last
        where.append(sa.or_(distance > last_km, sa.and_(distance == last_km, homes.user_id > last_id)))
    page = (
        sa.select(homes.user_id.label("user_id"), distance.label("km"))
        .where(*where)
        .order_by(distance, homes.user_id)
        .limit(_PAGE)
        .subquery("page")
    )
    rows = db.session.execute(
        sa.select(page.c.user_id, page.c.km, User.timezone, User.nearby_alerts)
        .join(User, User.id == page.c.user_id)
        .order_by(page.c.km, page.c.user_id)
    )
    return [tuple(row) for row in rows]


def _already_alerted(dedupe: str, user_ids: list[int]) -> set[int]:
    """Users who already have this posting's alert (by its unique dedupe keys)."""
    keys = [f"{KIND}:{dedupe}:{user_id}"[:160] for user_id in user_ids]
    return set(db.session.scalars(sa.select(Notification.user_id).where(Notification.dedupe_key.in_(keys))))
