"""Finishing a claim: marked done by whoever did the work, confirmed by someone else.

Nobody credits their own work: a wish's claimant marks it done and its
managers confirm; a service's provider marks it done and the resident who
booked it (or its coordinators) confirms; a reward is handed over by its
managers. The minutes are reported when the work is marked done (1 to
``MAX_REPORTED_MINUTES``) and may be lowered, never raised, by the confirmer.
A fulfilled claim nobody confirms within ``AUTO_CONFIRM_DAYS`` is confirmed by
the scheduler (:func:`auto_confirm`), through the same steps as a person's
confirmation.

The confirmation writes the record (``app.services.records``): ``recorded``
at once when the confirmer is a coordinator of the recording org (or an
admin), else ``pending``; never one whose window overlaps another record of
the volunteer (409 ``overlapping_record``; the scheduler then confirms the
claim without a record).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import format_decimal, gettext

from app.clock import utcnow
from app.errors import Conflict, Forbidden, Invalid
from app.extensions import db
from app.models import Claim, Posting
from app.outbox import notify_many
from app.policy import CHECK_IN_OUT, FULFIL_CONFIRM, HAND_OVER, MAX_REPORTED_MINUTES, POLICIES, PROVIDER, kinds_where
from app.services import records, reputation
from app.services.batches import update_batch
from app.services.claims.access import claim_access, move, tell_and_commit
from app.services.claims.places import return_claim_allowance
from app.services.lifecycle import retire_tags
from app.services.permissions import Actor
from app.services.photos import attach, usable_photos

AUTO_CONFIRMED_KINDS = kinds_where(auto_confirm=True)
STORY_KINDS = kinds_where(public_story=True)
# What a confirmation needs of the claim to write its record.
_CONFIRMED = (Claim.id, Claim.posting_id, Claim.user_id, Claim.minutes, Claim.fulfilled_at, Claim.note, Claim.rating)


def fulfil_claim(
    actor: Actor, claim_id: int, note: str, photo_ids: Sequence[int] = (), minutes: int | None = None
) -> Claim:
    """Mark a claim done (完成) with a note, up to ``MAX_PHOTOS`` photos (the
    caller's own uploads, checked here) and the minutes the work took: a wish's
    claimant, or a service's provider. The other side is told to confirm; no
    hours are credited yet."""
    access = claim_access(actor, claim_id)
    claim, posting, policy = access.claim, access.posting, access.policy
    if policy.finish != FULFIL_CONFIRM:
        raise Conflict("wrong_claim_kind")
    if not actor.may_fulfil(claim, posting):
        raise Forbidden("provider_required" if policy.credited == PROVIDER else "claimant_required")
    if claim.status != "active":
        raise Conflict("claim_not_active")  # before the photos are read; the UPDATE below decides
    if minutes is None or not 1 <= minutes <= MAX_REPORTED_MINUTES:
        raise Invalid("minutes", gettext("From 1 to %(most)s minutes.", most=format_decimal(MAX_REPORTED_MINUTES)))
    now = utcnow()
    if records.recording_org_id(posting) is not None and records.covered(
        actor.id, now - timedelta(minutes=minutes), now
    ):
        raise Conflict("overlapping_record")
    credited_user, confirmer = claim.user_id, (posting.author_id if policy.credited != PROVIDER else claim.user_id)
    photos = usable_photos(actor, photo_ids, "fulfil")
    values = {"status": "fulfilled", "fulfilled_at": now, "note": note, "minutes": minutes}
    if not move(claim_id, ("active",), **values):
        db.session.rollback()
        raise Conflict("claim_not_active")
    attach("fulfil", claim_id, photos)
    if policy.counts_toward_claim_limit:
        return_claim_allowance([credited_user])
    return tell_and_commit([confirmer], "claim_fulfilled", posting, claim_id, volunteer=actor.user.display_name)


def confirm_claim(
    actor: Actor,
    claim_id: int,
    rating: int | None = None,
    feedback: str | None = None,
    minutes: int | None = None,
    private_photos: bool | None = None,
) -> Claim:
    """Confirm a finished claim (确认) and rate it.

    - wish, service: the claim must be fulfilled; its record is written for the
      one who did the work, with the reported minutes or fewer (``minutes``),
      ``ended_at`` the fulfilment and ``started_at`` that minus the minutes;
      energy 10 per credited hour (plus 5 for a wish). A wish closes, and its
      fulfilment becomes its public story unless ``private_photos`` (the photos
      stay with those who see the claim).
    - energy: the reward is handed over.
    """
    access = claim_access(actor, claim_id)
    claim, posting, policy = access.claim, access.posting, access.policy
    if policy.finish == CHECK_IN_OUT:
        raise Conflict("wrong_claim_kind")
    actor.require_may_confirm(claim, posting)
    now = utcnow()
    if policy.finish == HAND_OVER:
        values = {"status": "confirmed", "confirmed_at": now, "fulfilled_at": now, "rating": rating}
        if not move(claim_id, ("active",), **values, feedback=feedback):
            db.session.rollback()
            raise Conflict("claim_not_active")
        return tell_and_commit([claim.user_id], "claim_confirmed", posting, claim_id)

    if rating is None:
        raise Invalid("rating", gettext("A rating from 1 to 5 is required."))
    rule = [Claim.id == claim_id, Claim.status == "fulfilled"]
    if minutes is not None:
        rule.append(sa.or_(Claim.minutes.is_(None), Claim.minutes >= minutes))
    rows = db.session.execute(
        sa.update(Claim)
        .where(*rule)
        .values(
            status="confirmed",
            confirmed_at=now,
            rating=rating,
            feedback=feedback,
            minutes=sa.func.coalesce(sa.cast(sa.literal(minutes), sa.Integer), Claim.minutes, 0),
            photos_private=bool(private_photos) if policy.public_story else None,
        )
        .returning(*_CONFIRMED)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        db.session.rollback()
        current = db.session.get(Claim, claim_id)
        if current.status == "fulfilled":
            raise Invalid(
                "minutes",
                gettext("At most the %(minutes)s minutes reported.", minutes=format_decimal(current.minutes)),
                slug="minutes_above_reported",
            )
        raise Conflict("claim_not_fulfilled")
    try:
        record_confirmed(rows, confirmer=actor, feedback=feedback)
    except Conflict:
        db.session.rollback()
        raise
    db.session.commit()
    return db.session.get(Claim, claim_id)


def auto_confirm(limit: int) -> int:
    """Fulfilled claims nobody confirmed within ``AUTO_CONFIRM_DAYS`` → confirmed
    (no rating, ``auto_confirmed``), with a ``pending`` record — none where it
    would overlap another record of the volunteer; both sides are told. Their
    photos stay private: publishing them is the poster's choice, and the poster
    made none."""
    now = utcnow()
    cutoff = now - timedelta(days=current_app.config["AUTO_CONFIRM_DAYS"])
    rule = (Claim.status == "fulfilled", Claim.kind.in_(AUTO_CONFIRMED_KINDS), Claim.fulfilled_at <= cutoff)
    values = {
        "status": "confirmed",
        "confirmed_at": now,
        "auto_confirmed": True,
        "minutes": sa.func.coalesce(Claim.minutes, 0),
        # Nobody who may publish the photos said so: they stay with the claim.
        "photos_private": sa.case((Claim.kind.in_(STORY_KINDS), True), else_=None),
        "updated_at": now,
    }
    rows = update_batch(Claim, rule, limit, values, _CONFIRMED)
    record_confirmed(rows, confirmer=None, feedback=None, tell_both=True)
    return len(rows)


def record_confirmed(rows: Sequence, *, confirmer: Actor | None, feedback: str | None, tell_both: bool = False) -> None:
    """The consequences of confirmed fulfilments (rows of ``_CONFIRMED``): the
    rating, counted once per rater, and the record of whoever did the work
    (``recorded`` when the confirmer stands behind it for the recording org, else
    ``pending``); a wish closed; ``claim_confirmed`` to the one credited (and,
    ``tell_both``, to the other side too).

    A person's confirmation whose record would overlap another of the
    volunteer's raises 409 ``overlapping_record`` (the caller rolls back); the
    scheduler's (``confirmer`` None) confirms the claim without a record. The
    volunteers' time is held in id order (one lock order for a batch)."""
    if not rows:
        return
    postings = {p.id: p for p in db.session.scalars(sa.select(Posting).where(Posting.id.in_({r[1] for r in rows})))}
    told = []
    now = utcnow()

    def credited_of(row) -> int:
        return postings[row[1]].author_id if POLICIES[postings[row[1]].kind].credited == PROVIDER else row[2]

    for user_id in sorted({credited_of(row) for row in rows}):
        records.hold_time(user_id)
    for row in sorted(rows, key=lambda r: (credited_of(r), r[0])):
        claim_id, posting_id, user_id, minutes, fulfilled_at, note, rating = row
        fulfilled_at = fulfilled_at or now
        posting = postings[posting_id]
        credited = credited_of(row)
        started_at = fulfilled_at - timedelta(minutes=minutes)
        if rating is not None and confirmer is not None:
            reputation.rate(credited, confirmer.id, rating, claim_id)
        org_id = records.recording_org_id(posting)
        writes = org_id is not None
        if writes and records.covered(credited, started_at, fulfilled_at):
            if confirmer is not None:
                raise Conflict("overlapping_record")
            writes = False
        if writes:
            records.write_credit_record(
                user_id=credited,
                posting=posting,
                claim_id=claim_id,
                minutes=minutes,
                started_at=started_at,
                recorded_by=confirmer.id if confirmer is not None else None,
                stood_behind_by=confirmer.id if confirmer is not None and confirmer.stands_behind(org_id) else None,
                content=note,
                evaluation=records.evaluation_for(rating, feedback),
                rating=rating,
            )
        audience = {user_id, posting.author_id} if tell_both else {credited}
        told.append(
            (
                sorted(audience),
                f"claim:{claim_id}",
                {"title": posting.title, "posting_id": posting_id, "claim_id": claim_id},
            )
        )
    one_claim_postings = [p.id for p in postings.values() if POLICIES[p.kind].capacity == "one"]
    if one_claim_postings:
        # A posting taken on by exactly one claim is over once that claim is confirmed.
        closed = db.session.scalars(
            sa.update(Posting)
            .where(Posting.id.in_(one_claim_postings), Posting.status == "claimed")
            .values(status="closed")
            .returning(Posting.id)
            .execution_options(synchronize_session=False)
        ).all()
        retire_tags(closed)
    notify_many("claim_confirmed", told)
