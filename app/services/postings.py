"""The five micro-postings (五微): posting, review, editing, cancelling, and who sees what.

A kind is a policy (``POLICIES``), not a copy of the code: who may post it,
which fields it needs, whether it waits for review and what its capacity
means. Every state change is a conditional UPDATE whose WHERE clause is the
rule ("only a pending posting can be approved"), so two reviewers racing, or
an edit racing a claim, cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from app.clock import utcnow
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import AuditEntry, Claim, Org, OrgMember, Posting, PostingTag, User
from app.models.postings import geocell_for
from app.services.claims import cancel_claims_for_posting
from app.services.permissions import coordinates_in_district, coordinator_org_ids
from app.validators import mask_name
from notifications import notify
from notifications.nearby import alert_nearby_volunteers

# Who may post a kind.
ANYONE = "anyone"  # any signed-in user, for themself
COORDINATORS = "coordinators"  # coordinators of the org named in org_id
PROVIDERS = "providers"  # a registered volunteer, or a coordinator

# Statuses only some people may see (404 for everyone else). A cancelled posting
# may never have been published (an author withdrawing a wish under review), so
# it leaves the public wall too; those who held a claim on it still see it.
HIDDEN_STATUSES = ("pending_review", "rejected", "cancelled")
# Statuses in which a posting can still be edited or cancelled.
LIVE_STATUSES = ("pending_review", "open", "claimed", "full")
# A claim in these statuses makes its claimant one of the beneficiary's contacts.
CONTACT_CLAIM_STATUSES = ("active", "fulfilled")
LIVE_CLAIM_STATUSES = ("active", "waitlisted", "fulfilled")


@dataclass(frozen=True)
class KindPolicy:
    """The rules of one kind of posting."""

    kind: str
    label: str
    posted_by: str
    # "one": exactly one claim; "slots": N places (required); "optional": N or
    # unlimited (None); "stock": N items in stock (required).
    capacity: str
    needs_schedule: bool = False  # starts_at and ends_at required
    default_expiry_days: int | None = None
    max_expiry_days: int | None = None
    default_claim_ttl_hours: int | None = None  # None: the kind has no claim deadline
    has_energy_cost: bool = False
    has_beneficiary: bool = False
    # A resident's posting waits for a coordinator; one posted for an org does not.
    reviewed_unless_for_org: bool = False
    waitlist: bool = False  # a claim beyond capacity is waitlisted

    def capacity_required(self) -> bool:
        return self.capacity in ("slots", "stock")


POLICIES: dict[str, KindPolicy] = {
    policy.kind: policy
    for policy in (
        KindPolicy(
            "wish",
            "微心愿",
            ANYONE,
            capacity="one",
            default_expiry_days=30,
            max_expiry_days=90,
            default_claim_ttl_hours=168,
            has_beneficiary=True,
            reviewed_unless_for_org=True,
        ),
        KindPolicy("project", "微项目", COORDINATORS, capacity="slots", needs_schedule=True, waitlist=True),
        KindPolicy("charity", "微公益", COORDINATORS, capacity="optional", waitlist=True),
        KindPolicy("service", "微服务", PROVIDERS, capacity="optional"),
        KindPolicy("energy", "微能量", COORDINATORS, capacity="stock", has_energy_cost=True),
    )
}

# Body fields that map one-to-one onto columns.
_PLAIN_FIELDS = (
    "title",
    "description",
    "district",
    "address",
    "capacity",
    "starts_at",
    "ends_at",
    "expires_at",
    "claim_ttl_hours",
    "energy_cost",
    "photo_urls",
)


@dataclass
class PostingView:
    """A posting as one viewer sees it: the row plus what depends on the viewer."""

    posting: Posting
    author: dict[str, Any]
    org: dict[str, Any] | None
    beneficiary: dict[str, Any]
    my_claim: Claim | None = None
    distance_km: float | None = None

    def __getattr__(self, name: str) -> Any:
        # Everything else is the posting's own column.
        return getattr(self.posting, name)

    @property
    def location(self) -> dict[str, float] | None:
        if self.posting.lat is None or self.posting.lng is None:
            return None
        return {"lat": self.posting.lat, "lng": self.posting.lng}

    @property
    def reject_reason(self) -> str | None:
        return self.posting.review_note if self.posting.status == "rejected" else None


_BENEFICIARY_FIELDS = ("beneficiary_name", "beneficiary_phone", "beneficiary_address")


# --- creating -------------------------------------------------------------------


def create_posting(author: User, data: Mapping[str, Any]) -> PostingView:
    """Post a wish, project, charity activity, service or energy reward.

    ``data`` is the validated body of ``POST /postings``. A resident's wish
    waits for review (``pending_review``); everything posted for an org, and
    every other kind, is ``open`` at once.
    """
    policy = POLICIES[data["kind"]]
    now = utcnow()
    org = _named_org(data.get("org_id"))
    for_org = org is not None and (author.is_admin or org.id in coordinator_org_ids(author))
    _check_poster(policy, author, org, for_org, data)

    values = _trimmed({name: data.get(name) for name in _PLAIN_FIELDS})
    values["photo_urls"] = values["photo_urls"] or []
    _apply_location(values, data.get("location"))
    if policy.has_beneficiary:
        beneficiary = data.get("beneficiary") or {}
        # A resident's own wish: the resident is the beneficiary and the contact.
        values["beneficiary_name"] = beneficiary.get("name") or author.display_name
        values["beneficiary_phone"] = beneficiary.get("phone") if beneficiary else author.phone
        values["beneficiary_address"] = beneficiary.get("address")
    elif data.get("beneficiary"):
        raise Invalid("beneficiary", f"Only a wish has a beneficiary, not a {policy.kind}.")
    _check_fields(policy, values, now, changed=set(values), creating=True)

    reviewed = policy.reviewed_unless_for_org and not (for_org or author.is_admin)
    posting = Posting(
        kind=policy.kind,
        status="pending_review" if reviewed else "open",
        org_id=org.id if org else None,
        author_id=author.id,
        claimed_count=0,
        waitlist_count=0,
        **values,
    )
    posting.tags = _tag_rows(data.get("tags") or [])
    db.session.add(posting)
    db.session.flush()
    if posting.status == "open":
        alert_nearby_volunteers(posting)
    db.session.commit()
    return view_of(author, posting)


def _named_org(org_id: int | None) -> Org | None:
    if org_id is None:
        return None
    org = db.session.get(Org, org_id)
    if org is None:
        raise Invalid("org_id", "No such organisation.")
    if org.status != "approved":
        raise Conflict("org_not_approved")
    return org


def _check_poster(policy: KindPolicy, author: User, org: Org | None, for_org: bool, data: Mapping) -> None:
    """403 unless ``author`` may post this kind (for ``org``).

    Anyone may name an org on a wish of their own: it then waits for that org's
    coordinators (or the district's) to review it. Every other kind is posted
    for an org only by its coordinators.
    """
    if org is not None and not for_org and policy.posted_by != ANYONE:
        raise Forbidden("coordinator_required")
    if policy.posted_by == COORDINATORS and org is None:
        if author.is_admin or coordinator_org_ids(author):
            raise Invalid("org_id", f"Name the organisation this {policy.kind} is posted for.")
        raise Forbidden("coordinator_required")
    if policy.posted_by == PROVIDERS and org is None:
        if author.volunteer is None and not author.is_admin and not coordinator_org_ids(author):
            raise Forbidden("volunteer_required")
    if data.get("beneficiary") and policy.has_beneficiary and not (for_org or author.is_admin):
        # A resident posts a wish for themself; only a coordinator posts for someone else.
        raise Forbidden("coordinator_required")


def _check_fields(
    policy: KindPolicy, values: dict[str, Any], now: datetime, changed: set[str], creating: bool = False
) -> None:
    """422 unless ``values`` (the whole posting) fit ``policy``; fills defaults.

    Rules relative to now (in the future, within 90 days) apply to the fields
    being set, so an edit of the title does not trip over an old start time.
    """
    district = values.get("district")
    if "district" in changed and district not in current_app.config["DISTRICTS"]:
        raise Invalid("district", "Unknown district.")

    capacity = values.get("capacity")
    if policy.capacity == "one":
        if capacity not in (None, 1):
            raise Invalid("capacity", "A wish is taken on by exactly one volunteer; its capacity is 1.")
        values["capacity"] = 1
    elif policy.capacity_required() and capacity is None:
        what = "the stock of this reward" if policy.capacity == "stock" else "the number of places"
        raise Invalid("capacity", f"Required: {what}.")

    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if policy.needs_schedule:
        for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
            if value is None:
                raise Invalid(name, f"Required for a {policy.kind}.")
    if starts_at is not None and ends_at is not None and starts_at >= ends_at:
        raise Invalid("ends_at", "Must be after starts_at.")
    if ends_at is not None and "ends_at" in changed and ends_at <= now:
        raise Invalid("ends_at", "Must be in the future.")

    if values.get("expires_at") is None and policy.default_expiry_days and creating:
        values["expires_at"] = now + timedelta(days=policy.default_expiry_days)
    expires_at = values.get("expires_at")
    if expires_at is not None and "expires_at" in changed:
        if expires_at <= now:
            raise Invalid("expires_at", "Must be in the future.")
        if policy.max_expiry_days and expires_at > now + timedelta(days=policy.max_expiry_days):
            raise Invalid("expires_at", f"At most {policy.max_expiry_days} days from now.")

    if policy.default_claim_ttl_hours:
        if values.get("claim_ttl_hours") is None:
            values["claim_ttl_hours"] = policy.default_claim_ttl_hours
    elif values.get("claim_ttl_hours") is not None and "claim_ttl_hours" in changed:
        raise Invalid("claim_ttl_hours", f"A {policy.kind} has no claim deadline.")

    if policy.has_energy_cost:
        if not values.get("energy_cost"):
            raise Invalid("energy_cost", "Required: the energy points this reward costs (more than 0).")
    elif values.get("energy_cost") is not None and "energy_cost" in changed:
        raise Invalid("energy_cost", f"Only an energy reward has an energy cost, not a {policy.kind}.")


def _trimmed(values: dict[str, Any]) -> dict[str, Any]:
    """Texts without surrounding blanks; a blank address is no address."""
    for name in ("title", "description", "address"):
        if isinstance(values.get(name), str):
            values[name] = values[name].strip() or None
    return values


def _apply_location(values: dict[str, Any], location: Mapping[str, float] | None) -> None:
    """Set lat/lng and keep the geocell (the nearby index) in step with them."""
    lat, lng = (location["lat"], location["lng"]) if location else (None, None)
    values.update(lat=lat, lng=lng, geocell=geocell_for(lat, lng))


def _tag_rows(tags: Sequence[str]) -> list[PostingTag]:
    return [PostingTag(tag=tag, position=i) for i, tag in enumerate(normalise_tags(tags))]


def normalise_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, de-duplicated, in the order given."""
    seen: dict[str, None] = {}
    for tag in tags:
        text = tag.strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


# --- reading --------------------------------------------------------------------


def get_posting(viewer: User | None, posting_id: int) -> PostingView:
    """One posting as ``viewer`` (None: anonymous) may see it; 404 if they may not."""
    return view_of(viewer, _visible_posting(viewer, posting_id))


def _visible_posting(viewer: User | None, posting_id: int) -> Posting:
    posting = db.session.get(Posting, posting_id)
    if posting is None or not can_view(viewer, posting):
        raise NotFound()
    return posting


def can_view(viewer: User | None, posting: Posting) -> bool:
    """Pending, rejected and cancelled postings are seen by their author, the
    org's coordinators and admins; pending ones also by the district's
    coordinators (who review them), cancelled ones by those who claimed them.
    Everything else is public."""
    if posting.status not in HIDDEN_STATUSES:
        return True
    if viewer is None:
        return False
    if viewer.is_admin or viewer.id == posting.author_id:
        return True
    if posting.org_id is not None and posting.org_id in coordinator_org_ids(viewer):
        return True
    if posting.status == "cancelled":
        held = sa.select(Claim.id).where(Claim.posting_id == posting.id, Claim.user_id == viewer.id).limit(1)
        return db.session.scalar(held) is not None
    return posting.status == "pending_review" and coordinates_in_district(viewer, posting.district)


def _claimed_by(viewer: User) -> sa.Exists:
    return sa.exists().where(Claim.posting_id == Posting.id, Claim.user_id == viewer.id)


def visible_clause(viewer: User | None) -> sa.ColumnElement[bool]:
    """``can_view`` as SQL, for lists."""
    public = Posting.status.not_in(HIDDEN_STATUSES)
    if viewer is None:
        return public
    if viewer.is_admin:
        return sa.true()
    clauses = [public, Posting.author_id == viewer.id, sa.and_(Posting.status == "cancelled", _claimed_by(viewer))]
    orgs = coordinated_orgs(viewer)
    if orgs:
        clauses.append(Posting.org_id.in_(sorted(orgs)))
        clauses.append(sa.and_(Posting.status == "pending_review", Posting.district.in_(sorted(set(orgs.values())))))
    return sa.or_(*clauses)


def coordinated_orgs(user: User) -> dict[int, str]:
    """The approved orgs ``user`` coordinates: id -> district."""
    rows = db.session.execute(
        sa.select(Org.id, Org.district)
        .join(OrgMember, OrgMember.org_id == Org.id)
        .where(OrgMember.user_id == user.id, OrgMember.role == "coordinator", Org.status == "approved")
    )
    return dict(rows.tuples().all())


def view_of(viewer: User | None, posting: Posting) -> PostingView:
    """The full view of one posting: the beneficiary's contact for those allowed."""
    return views_of(viewer, [posting], detail=True)[0]


def views_of(
    viewer: User | None,
    postings: Sequence[Posting],
    *,
    detail: bool = False,
    distances: Mapping[int, float] | None = None,
) -> list[PostingView]:
    """Views of many postings in a fixed number of queries (authors, orgs, the
    viewer's claims), never one per posting. Lists (``detail=False``) never
    carry a beneficiary's phone or address."""
    if not postings:
        return []
    ids = [p.id for p in postings]
    authors = dict(
        db.session.execute(
            sa.select(User.id, User.display_name).where(User.id.in_({p.author_id for p in postings}))
        ).all()
    )
    org_ids = {p.org_id for p in postings if p.org_id is not None}
    orgs = dict(db.session.execute(sa.select(Org.id, Org.name).where(Org.id.in_(org_ids))).all()) if org_ids else {}
    claims = viewer_claims(viewer, ids) if viewer is not None else {}
    coordinated = coordinator_org_ids(viewer) if detail and viewer is not None else set()

    views = []
    for posting in postings:
        my_claim = claims.get(posting.id)
        contact = detail and _is_contact(viewer, posting, my_claim, coordinated)
        views.append(
            PostingView(
                posting=posting,
                author={"id": posting.author_id, "display_name": authors.get(posting.author_id)},
                org={"id": posting.org_id, "name": orgs.get(posting.org_id)} if posting.org_id else None,
                beneficiary=_beneficiary(posting, contact),
                my_claim=my_claim,
                distance_km=round(distances[posting.id], 3) if distances and posting.id in distances else None,
            )
        )
    return views


def viewer_claims(viewer: User, posting_ids: Sequence[int]) -> dict[int, Claim]:
    """The viewer's claim on each posting: the live one, else the latest (one query)."""
    rows = db.session.scalars(
        sa.select(Claim).where(Claim.user_id == viewer.id, Claim.posting_id.in_(posting_ids)).order_by(Claim.id)
    )
    chosen: dict[int, Claim] = {}
    for claim in rows:
        current = chosen.get(claim.posting_id)
        if current is None or claim.status in LIVE_CLAIM_STATUSES or current.status not in LIVE_CLAIM_STATUSES:
            chosen[claim.posting_id] = claim
    return chosen


def _is_contact(viewer: User | None, posting: Posting, my_claim: Claim | None, coordinated: set[int]) -> bool:
    """May ``viewer`` see the beneficiary's phone and exact address?"""
    if viewer is None:
        return False
    return (
        viewer.is_admin
        or viewer.id == posting.author_id
        or (posting.org_id is not None and posting.org_id in coordinated)
        or (my_claim is not None and my_claim.status in CONTACT_CLAIM_STATUSES)
    )


def _beneficiary(posting: Posting, contact: bool) -> dict[str, Any]:
    beneficiary: dict[str, Any] = {"name_masked": mask_name(posting.beneficiary_name)}
    if contact and posting.beneficiary_name is not None:
        beneficiary["phone"] = posting.beneficiary_phone
        beneficiary["address"] = posting.beneficiary_address
    return beneficiary


# --- reviewing ------------------------------------------------------------------


def can_review(user: User, posting: Posting) -> bool:
    """Coordinators of the posting's org or of an org in its district; admins."""
    return (
        user.is_admin
        or (posting.org_id is not None and posting.org_id in coordinator_org_ids(user))
        or coordinates_in_district(user, posting.district)
    )


def approve_posting(reviewer: User, posting_id: int) -> PostingView:
    """pending_review → open; the author is told and, for a wish, nearby volunteers."""
    posting = _reviewable(reviewer, posting_id)
    now = utcnow()
    _transition(
        posting,
        "pending_review",
        "posting_not_pending",
        status="open",
        reviewed_by=reviewer.id,
        reviewed_at=now,
        review_note=None,
    )
    notify(
        [posting.author_id],
        "posting_approved",
        dedupe=f"posting:{posting.id}",
        title=posting.title,
        posting_id=posting.id,
    )
    _audit(reviewer, "posting.approve", posting)
    alert_nearby_volunteers(posting)
    db.session.commit()
    return view_of(reviewer, posting)


def reject_posting(reviewer: User, posting_id: int, reason: str) -> PostingView:
    """pending_review → rejected with a reason the author is told."""
    posting = _reviewable(reviewer, posting_id)
    reason = reason.strip()
    _transition(
        posting,
        "pending_review",
        "posting_not_pending",
        status="rejected",
        reviewed_by=reviewer.id,
        reviewed_at=utcnow(),
        review_note=reason,
    )
    notify(
        [posting.author_id],
        "posting_rejected",
        dedupe=f"posting:{posting.id}",
        title=posting.title,
        reason=reason,
        posting_id=posting.id,
    )
    _audit(reviewer, "posting.reject", posting, reason=reason)
    db.session.commit()
    return view_of(reviewer, posting)


def _reviewable(reviewer: User, posting_id: int) -> Posting:
    posting = _visible_posting(reviewer, posting_id)
    if not can_review(reviewer, posting):
        raise Forbidden("coordinator_required")
    return posting


def _transition(posting: Posting, from_status: str | Sequence[str], conflict: str, **values: Any) -> None:
    """One conditional UPDATE from ``from_status``; 409 ``conflict`` if the posting
    is no longer there (someone else won)."""
    allowed = [from_status] if isinstance(from_status, str) else list(from_status)
    done = db.session.execute(
        sa.update(Posting)
        .where(Posting.id == posting.id, Posting.status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        db.session.rollback()
        raise Conflict(conflict)
    db.session.refresh(posting)


def _audit(actor: User, action: str, posting: Posting, **data: Any) -> None:
    db.session.add(AuditEntry(actor_id=actor.id, action=action, target_type="posting", target_id=posting.id, data=data))


# --- editing and cancelling -------------------------------------------------------


def may_manage(user: User, posting: Posting) -> bool:
    """Its author, the org's coordinators, admins."""
    return (
        user.is_admin
        or user.id == posting.author_id
        or (posting.org_id is not None and posting.org_id in coordinator_org_ids(user))
    )


def update_posting(user: User, posting_id: int, changes: Mapping[str, Any]) -> PostingView:
    """Edit a posting. Once anything is claimed (or waitlisted) only ``expires_at``
    may change, and only later: extending is always allowed (wishes: up to 90 days
    from now). Checked in the UPDATE itself, so a claim landing meanwhile wins."""
    posting = _visible_posting(user, posting_id)
    if not may_manage(user, posting):
        raise Forbidden("poster_required")
    if posting.status not in LIVE_STATUSES:
        raise Conflict("posting_not_editable")
    policy = POLICIES[posting.kind]
    if "beneficiary" in changes:
        if not policy.has_beneficiary:
            raise Invalid("beneficiary", f"Only a wish has a beneficiary, not a {policy.kind}.")
        if not (user.is_admin or (posting.org_id is not None and posting.org_id in coordinator_org_ids(user))):
            raise Forbidden("coordinator_required")

    current = {name: getattr(posting, name) for name in (*_PLAIN_FIELDS, *_BENEFICIARY_FIELDS)}
    current.update(lat=posting.lat, lng=posting.lng, geocell=posting.geocell)
    new: dict[str, Any] = _trimmed({name: changes[name] for name in _PLAIN_FIELDS if name in changes})
    if "photo_urls" in new and new["photo_urls"] is None:
        new["photo_urls"] = []
    if "location" in changes:
        _apply_location(new, changes["location"])
    if "beneficiary" in changes:
        beneficiary = changes["beneficiary"]
        new.update(
            beneficiary_name=beneficiary["name"],
            beneficiary_phone=beneficiary.get("phone"),
            beneficiary_address=beneficiary.get("address"),
        )
    # A client may send the whole form back: only real changes count (and need
    # the posting to be unclaimed).
    new = {name: value for name, value in new.items() if current.get(name) != value}
    merged = {**current, **new}
    _check_fields(policy, merged, utcnow(), changed=set(new))
    new = {name: merged[name] for name in new}  # with the defaults _check_fields filled in
    new_tags = normalise_tags(changes["tags"]) if "tags" in changes else None
    if new_tags == posting.tag_names:
        new_tags = None

    nothing_claimed = sa.and_(Posting.claimed_count == 0, Posting.waitlist_count == 0)
    stmt = sa.update(Posting).where(Posting.id == posting.id, Posting.status.in_(LIVE_STATUSES))
    if set(new) <= {"expires_at"} and new_tags is None:
        if "expires_at" in new:
            stmt = stmt.where(
                sa.or_(nothing_claimed, Posting.expires_at.is_(None), Posting.expires_at <= new["expires_at"])
            )
    else:
        stmt = stmt.where(nothing_claimed)
    if new or new_tags is not None:
        done = db.session.execute(
            stmt.values(updated_at=utcnow(), **new).execution_options(synchronize_session=False)
        ).rowcount
        if not done:
            db.session.rollback()
            db.session.refresh(posting)
            if posting.status not in LIVE_STATUSES:
                raise Conflict("posting_not_editable")
            raise Conflict("posting_claimed")
        if new_tags is not None:
            # Core statements: the ORM would see a re-added tag as a conflicting identity.
            db.session.execute(
                sa.delete(PostingTag)
                .where(PostingTag.posting_id == posting.id)
                .execution_options(synchronize_session=False)
            )
            if new_tags:
                db.session.execute(
                    sa.insert(PostingTag),
                    [{"posting_id": posting.id, "tag": t, "position": i} for i, t in enumerate(new_tags)],
                )
        db.session.commit()
        db.session.refresh(posting)
    return view_of(user, posting)


def cancel_posting(user: User, posting_id: int, reason: str | None = None) -> PostingView:
    """Take a posting down: its live claims are cancelled (energy refunded) and
    their volunteers told, in the same transaction."""
    posting = _visible_posting(user, posting_id)
    if not may_manage(user, posting):
        raise Forbidden("poster_required")
    reason = (reason or "").strip() or None
    _transition(posting, LIVE_STATUSES, "posting_not_cancellable", status="cancelled", cancel_reason=reason)
    cancel_claims_for_posting(posting)
    if user.id != posting.author_id:
        _audit(user, "posting.cancel", posting, reason=reason)
    db.session.commit()
    return view_of(user, posting)
