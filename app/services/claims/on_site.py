"""On site (project, charity): check-in, check-out, no-show.

Check-out credits the overlap of check-in..check-out with the event's
starts_at..ends_at, at most 12 hours, less any time the volunteer's other
records already cover; an event's settlement (``app.services.claims.deadlines``)
checks out at the end whoever forgot. A check-out on site is ``recorded`` at
once (the org's event, the server's clock and the geofence stand behind it);
the settlement's, or one at an event posted without a point (no geofence), is
``pending`` until a coordinator of the org approves it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import gettext

from app.clock import utcnow
from app.errors import Conflict, Forbidden, Invalid
from app.extensions import db
from app.geo import haversine_km
from app.models import Claim, Posting
from app.policy import CHECK_IN_OPENS_BEFORE, CHECK_IN_RADIUS_KM, metres, minutes_between, on_site_credit
from app.services import records
from app.services.claims.access import ClaimAccess, claim_access, claimant_access, move, refused, tell_and_commit
from app.services.permissions import Actor


def check_in(actor: Actor, claim_id: int, lat: float, lng: float) -> Claim:
    """签到: the claimant, on site (within ``CHECK_IN_RADIUS_KM``), from
    ``CHECK_IN_OPENS_BEFORE`` the start until the end. Only once."""
    access = _on_site_claim(actor, claim_id)
    posting = access.posting
    now = utcnow()
    opens = posting.starts_at - CHECK_IN_OPENS_BEFORE if posting.starts_at is not None else None
    if (opens is not None and now < opens) or (posting.ends_at is not None and now >= posting.ends_at):
        raise Conflict("check_in_not_open")
    _require_on_site(posting, lat, lng)
    if not move(claim_id, ("active",), Claim.user_id == actor.id, Claim.check_in_at.is_(None), check_in_at=now):
        raise refused(claim_id)
    db.session.commit()
    return db.session.get(Claim, claim_id)


def check_out(actor: Actor, claim_id: int, lat: float, lng: float) -> Claim:
    """签退: the claimant, on site. Writes the credit record (see :func:`credit_attendance`)."""
    access = _on_site_claim(actor, claim_id)
    posting = access.posting
    now = utcnow()
    _require_on_site(posting, lat, lng)
    row = db.session.execute(
        sa.update(Claim)
        .where(
            Claim.id == claim_id,
            Claim.user_id == actor.id,
            Claim.status == "active",
            Claim.check_in_at.is_not(None),
            Claim.check_out_at.is_(None),
        )
        .values(status="confirmed", check_out_at=now, confirmed_at=now, ended_at=now)
        .returning(Claim.check_in_at)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        db.session.rollback()
        claim = db.session.get(Claim, claim_id)
        if claim.status == "active" and claim.check_in_at is None:
            raise Conflict("not_checked_in")
        raise Conflict("claim_not_active")
    records.hold_time(actor.id)
    # The org's event, the server's clock and the geofence stand behind a check-out on
    # site; an event posted without a point has no geofence, so a coordinator approves.
    geofenced = posting.lat is not None and posting.lng is not None
    credit_attendance(posting, claim_id, actor.id, row[0], now, on_site=geofenced)
    return tell_and_commit([actor.id], "claim_confirmed", posting, claim_id)


def credit_attendance(
    posting: Posting, claim_id: int, user_id: int, checked_in: datetime, checked_out: datetime, *, on_site: bool
) -> None:
    """The credit of a checked-out claim, in the caller's transaction, which holds
    the volunteer's time: the overlap with the event (at most 12 hours), less what
    the volunteer's other records already cover (its longest free stretch), as
    the claim's minutes and one record — ``recorded`` at once for a check-out on
    site (``on_site``: within the geofence; the organiser stands behind it),
    ``pending`` otherwise (the settlement's, or an event without a point). No
    time left: no record."""
    started, minutes = on_site_credit(checked_in, checked_out, posting.starts_at, posting.ends_at)
    start, end = records.uncovered_stretch(user_id, started, started + timedelta(minutes=minutes))
    minutes = minutes_between(start, end)
    move(claim_id, ("confirmed",), minutes=minutes)
    if not minutes:
        return
    records.write_credit_record(
        user_id=user_id,
        posting=posting,
        claim_id=claim_id,
        minutes=minutes,
        started_at=start,
        recorded_by=posting.author_id if on_site else None,
        stood_behind_by=posting.author_id if on_site else None,
    )


def mark_no_show(actor: Actor, claim_id: int) -> Claim:
    """缺席: a manager of the posting marks an active claim that never checked in,
    once the activity has ended. The place stays counted: it was taken and not used."""
    access = claim_access(actor, claim_id)
    posting = access.posting
    if not access.manages_posting:
        raise Forbidden("coordinator_required")
    if not access.policy.on_site:
        raise Conflict("wrong_claim_kind")
    now = utcnow()
    end = posting.ends_at or posting.starts_at
    if end is None or now < end:
        raise Conflict("event_not_ended")
    if not move(claim_id, ("active",), Claim.check_in_at.is_(None), status="no_show", ended_at=now):
        raise refused(claim_id)
    return tell_and_commit([access.claim.user_id], "claim_no_show", posting, claim_id)


def _on_site_claim(actor: Actor, claim_id: int) -> ClaimAccess:
    access = claimant_access(actor, claim_id)
    if not access.policy.on_site:
        raise Conflict("wrong_claim_kind")
    return access


def _require_on_site(posting: Posting, lat: float, lng: float) -> None:
    if posting.lat is None or posting.lng is None:
        return  # a posting without a point has no site to be near
    if haversine_km(lat, lng, posting.lat, posting.lng) > CHECK_IN_RADIUS_KM:
        raise Invalid(
            "location",
            gettext("You are more than %(metres)s m from the site.", metres=metres(CHECK_IN_RADIUS_KM)),
            slug="too_far_from_site",
        )
