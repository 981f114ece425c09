"""Posting one of the five micro-postings (五微)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import gettext

from app.clock import utcnow
from app.errors import Invalid
from app.extensions import db
from app.models import Org, Posting, PostingTag
from app.policy import POLICIES
from app.services import nearby_alerts
from app.services.orgs import require_approved
from app.services.permissions import Actor
from app.services.photos import attach, usable_photos
from app.services.postings.fields import (
    PLAIN_FIELDS,
    apply_location,
    check_fields,
    no_beneficiary,
    tag_rows,
    trimmed,
)
from app.services.postings.reviewing import ask_for_review
from app.services.postings.views import PostingView, view_of


def create_posting(actor: Actor, data: Mapping[str, Any]) -> PostingView:
    """Post a wish, project, charity activity, service or energy reward.

    ``data`` is the validated body of ``POST /postings``. A resident's wish
    waits for review (``pending_review``); everything posted for an org, and
    every other kind, is ``open`` at once. ``photo_ids`` are the poster's own
    uploads, checked and attached in order.
    """
    policy = POLICIES[data["kind"]]
    author = actor.user
    now = utcnow()
    org = _named_org(data.get("org_id"))
    for_org = actor.posts_for_org(org)
    actor.require_may_post(policy, org, for_someone_else=bool(data.get("beneficiary")) and policy.has_beneficiary)

    values = trimmed({name: data.get(name) for name in PLAIN_FIELDS})
    apply_location(values, data.get("location"))
    if policy.has_beneficiary:
        beneficiary = data.get("beneficiary") or {}
        # A resident's own wish: the resident is the beneficiary and the contact.
        values["beneficiary_name"] = beneficiary.get("name") or author.display_name
        values["beneficiary_phone"] = beneficiary.get("phone") if beneficiary else author.phone
        values["beneficiary_address"] = beneficiary.get("address")
    elif data.get("beneficiary"):
        raise no_beneficiary(policy)
    check_fields(policy, values, now, changed=set(values), creating=True)
    # Checked last: the only check that costs (reading and re-encoding the photos).
    photos = usable_photos(actor, data.get("photo_ids") or [], "posting")

    reviewed = policy.reviewed and not (for_org or actor.is_admin)
    posting = Posting(
        kind=policy.kind,
        status="pending_review" if reviewed else "open",
        org_id=org.id if org else None,
        author_id=author.id,
        claimed_count=0,
        waitlist_count=0,
        **values,
    )
    rows = tag_rows(data.get("tags") or [], posting.kind, posting.status, posting.lat, posting.lng)
    posting.tags = [PostingTag(**row) for row in rows]
    db.session.add(posting)
    db.session.flush()
    attach("posting", posting.id, photos)
    opened = posting.status == "open"
    if opened:
        nearby_alerts.request_alerts([posting.id])
    else:
        ask_for_review(posting)
    db.session.commit()
    if opened:
        nearby_alerts.send_requested([posting.id])  # after the commit, in a transaction of its own
    return view_of(actor, posting)


def _named_org(org_id: int | None) -> Org | None:
    if org_id is None:
        return None
    org = db.session.get(Org, org_id)
    if org is None:
        raise Invalid("org_id", gettext("No such organisation."))
    return require_approved(org)
