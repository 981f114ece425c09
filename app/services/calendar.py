"""Calendar feeds (日历订阅): a user's sign-ups as an RFC 5545 calendar.

Each user may have one secret feed URL, ``/api/v1/calendar/{token}.ics``. The
token is 256 random bits; only its SHA-256 is stored, so a copy of the
database does not give anyone's calendar away. Asking for a new URL replaces
the token (the old URL answers 404); deleting it revokes the feed.

The feed holds one VEVENT per claim the user holds or held on a posting whose
kind is ``in_calendar`` (wish, project, charity, service), whose time is at
most 30 days past:

- a posting with a start time is an event from ``starts_at`` to ``ends_at``
  (an hour when it has no end);
- otherwise the claim's deadline is the event: a wish's ``due_at`` (or a
  service's ``ends_at``) as a half-hour event ending then — an event rather
  than iCalendar's task component, because Google and Apple Calendar show
  subscribed events but ignore tasks;
- a service booked with no time at all is shown at the moment it was booked.

The UID is ``claim-{id}@{host}``, so a calendar app updates an event rather
than adding a second one; a withdrawn, released or cancelled claim stays in
the feed as ``STATUS:CANCELLED`` so the app removes it. ``LAST-MODIFIED`` and
``DTSTAMP`` are the later of the claim's and the posting's ``updated_at``: the
body changes only when something in it did, and the ETag (a digest of those
versions) lets a polling app get a 304 after three small queries, without the
calendar being built.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from babel.dates import format_datetime
from flask_babel import get_locale, gettext, lazy_pgettext
from icalendar import Calendar, Event
from sqlalchemy.exc import IntegrityError

from app.clock import as_utc, utcnow, zone
from app.errors import NotFound
from app.extensions import db
from app.i18n import in_locale
from app.models import CalendarFeed, Claim, Posting, User
from app.policy import DROPPED_CLAIM_STATUSES, kinds_where
from app.services.permissions import Actor
from app.services.posting_place import shown_place

TOKEN_BYTES = 32
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
# How far back the feed reaches, by the event's time.
FEED_WINDOW = timedelta(days=30)
# Calendar apps may keep a copy this long before asking again (Cache-Control).
FEED_MAX_AGE_SECONDS = 900
# Bump when the feed's text changes, so every ETag changes with it.
FEED_FORMAT = "2"
EVENT_WITHOUT_END = timedelta(hours=1)
DEADLINE_EVENT = timedelta(minutes=30)
CALENDAR_KINDS = kinds_where(in_calendar=True)
# What the feed says of a claim's status (in the feed owner's language).
_STATUS_TEXT = {
    "active": lazy_pgettext("claim status", "active"),
    "waitlisted": lazy_pgettext("claim status", "on the waitlist"),
    "fulfilled": lazy_pgettext("claim status", "done, to be confirmed"),
    "confirmed": lazy_pgettext("claim status", "done"),
    "withdrawn": lazy_pgettext("claim status", "withdrawn"),
    "released": lazy_pgettext("claim status", "released (overdue)"),
    "cancelled": lazy_pgettext("claim status", "cancelled"),
    "no_show": lazy_pgettext("claim status", "absent"),
}


# --- the secret URL ---------------------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_feed(user: User) -> str:
    """A new secret token for ``user``'s feed, replacing any earlier one."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # Two requests at once: the loser's INSERT hits the unique user_id and it
    # retries, replacing the winner's token (the last answer is the live URL).
    attempts = 3
    while True:
        db.session.execute(sa.delete(CalendarFeed).where(CalendarFeed.user_id == user.id))
        db.session.add(CalendarFeed(user_id=user.id, token_hash=token_hash(token), created_at=utcnow()))
        try:
            db.session.commit()
            return token
        except IntegrityError:
            db.session.rollback()
            attempts -= 1
            if not attempts:
                raise


def revoke_feed(user: User) -> None:
    """Forget ``user``'s feed token; its URL answers 404 from now on."""
    db.session.execute(sa.delete(CalendarFeed).where(CalendarFeed.user_id == user.id))
    db.session.commit()


# --- the feed ---------------------------------------------------------------------------------------------------


@dataclass
class Feed:
    """The feed's ETag, and its body unless the caller already has this version."""

    etag: str
    body: bytes | None


def feed(token: str, host: str, *, already_has: Callable[[str], bool]) -> Feed:
    """The calendar behind ``token`` (404 for an unknown one). ``host`` names the
    UIDs' domain; ``already_has(etag)`` says whether the client holds that version
    (If-None-Match), in which case no body is built."""
    user = _feed_owner(token)
    actor = Actor(user)
    cutoff = utcnow() - FEED_WINDOW
    rule = [Claim.user_id == user.id, Claim.kind.in_(CALENDAR_KINDS), _event_end() >= cutoff]
    versions = db.session.execute(
        sa.select(Claim.id, Claim.status, Claim.updated_at, Posting.updated_at)
        .join(Posting, Posting.id == Claim.posting_id)
        .where(*rule)
        .order_by(Claim.id)
    ).all()
    digest = hashlib.sha256()
    for part in (
        FEED_FORMAT,
        host,
        user.timezone or "",
        user.locale,
        actor.is_admin,
        sorted(actor.coordinated),
        *versions,
    ):
        digest.update(repr(part).encode() + b"\n")
    etag = digest.hexdigest()[:32]
    if already_has(etag):
        return Feed(etag, None)

    rows = db.session.execute(
        sa.select(Claim, Posting).join(Posting, Posting.id == Claim.posting_id).where(*rule).order_by(Claim.id)
    ).all()
    with in_locale(user.locale):  # a calendar app fetches the feed: it speaks its owner's language
        return Feed(etag, _calendar(actor, rows, host))


def _calendar(actor: Actor, rows, host: str) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//甬·志愿//calendar feed//ZH")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", gettext("甬·志愿 · My sign-ups"))
    # A hint to clients that choose their own polling interval.
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", timedelta(hours=1))
    for claim, posting in rows:
        calendar.add_component(_event(actor, claim, posting, host))
    return calendar.to_ical()


def _feed_owner(token: str) -> User:
    if not _TOKEN_SHAPE.fullmatch(token):
        raise NotFound()
    user = db.session.scalar(
        sa.select(User)
        .join(CalendarFeed, CalendarFeed.user_id == User.id)
        .where(CalendarFeed.token_hash == token_hash(token))
    )
    if user is None:
        raise NotFound()
    return user


def _event_end() -> sa.ColumnElement[datetime]:
    """When an event ends (see :func:`_span`), as SQL, for the 30-day window."""
    return sa.case(
        (Posting.starts_at.is_not(None), sa.func.coalesce(Posting.ends_at, Posting.starts_at)),
        else_=sa.func.coalesce(Claim.due_at, Posting.ends_at, Claim.claimed_at),
    )


def _span(claim: Claim, posting: Posting) -> tuple[datetime, datetime, bool]:
    """(start, end, is a deadline) of the claim's event."""
    if posting.starts_at is not None:
        return posting.starts_at, posting.ends_at or posting.starts_at + EVENT_WITHOUT_END, False
    deadline = claim.due_at or posting.ends_at
    if deadline is not None:
        return deadline - DEADLINE_EVENT, deadline, True
    return claim.claimed_at, claim.claimed_at + DEADLINE_EVENT, False


def _event(actor: Actor, claim: Claim, posting: Posting, host: str) -> Event:
    start, end, is_deadline = _span(claim, posting)
    dropped = claim.status in DROPPED_CLAIM_STATUSES
    summary = gettext("Due: %(title)s", title=posting.title) if is_deadline else posting.title
    if dropped:
        summary = gettext("[%(status)s] %(summary)s", status=_STATUS_TEXT[claim.status], summary=summary)
    modified = as_utc(max(claim.updated_at, posting.updated_at)).replace(microsecond=0)
    lines = [gettext("Status: %(status)s", status=_STATUS_TEXT.get(claim.status, claim.status))]
    if claim.due_at is not None and not dropped:
        due = as_utc(claim.due_at).astimezone(zone(actor.user.timezone))
        when = format_datetime(due, "yyyy-MM-dd HH:mm", locale=get_locale())
        lines.append(gettext("Complete it by %(when)s.", when=when))
    if posting.description:
        lines.append(posting.description[:1000])

    event = Event()
    event.add("uid", f"claim-{claim.id}@{host}")
    event.add("dtstamp", modified)
    event.add("last-modified", modified)
    event.add("dtstart", as_utc(start))
    event.add("dtend", as_utc(end))
    event.add("summary", summary)
    event.add("description", "\n".join(lines))
    # a withdrawn volunteer is no longer a contact: the place the feed shows is
    # the one every stranger sees (app.services.posting_place)
    place = shown_place(actor, posting, claim.status)
    if place.address:
        event.add("location", place.address)
    if place.location is not None:
        event.add("geo", (place.location["lat"], place.location["lng"]))
    if dropped:
        event.add("status", "CANCELLED")
    else:
        event.add("status", "TENTATIVE" if claim.status == "waitlisted" else "CONFIRMED")
    return event
