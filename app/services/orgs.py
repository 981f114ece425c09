"""Organisations (志愿组织): application, review, the list, members.

An application is an org in ``pending``: every admin is told
(``org_submitted``); one of them approves or rejects it with a reason, and the
applicant is told either way (``org_approved`` / ``org_rejected``). Approved
orgs are public; an application is seen by admins and its own members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound, Unauthorized
from app.extensions import db
from app.models import CommunityReport, JoinRequest, Org, OrgMember, User, Volunteer
from app.models.orgs import APPROVED, PARTY_BRANCH
from app.outbox import notify
from app.services.audit import audit
from app.services.pagination import paginate
from app.services.party_blocks import visible_parties
from app.services.permissions import Actor, admins, party_branch_ids, record_reviewers


@dataclass
class OrgView:
    """An org as listed: the row, and the caller's role in it (``mine=true``)."""

    org: Org
    role: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.org, name)


def get_org(org_id: int) -> Org:
    """The org (ids come bounded: app/inputs.py for paths, the Id field for bodies)."""
    return db.session.get(Org, org_id) or _not_found()


def _not_found():
    raise NotFound()


def require_approved(org: Org) -> Org:
    """``org``, if approved (409 ``org_not_approved`` otherwise): only an approved
    org posts, records and certifies."""
    if not org.is_approved:
        raise Conflict("org_not_approved")
    return org


def view_org(actor: Actor, org_id: int) -> Org:
    """One org as ``actor`` may see it: 404 for an application they may not see."""
    org = db.session.get(Org, org_id)
    if org is None or not actor.may_view_org(org):
        raise NotFound()
    return org


def list_orgs(
    actor: Actor,
    *,
    status: str | None = None,
    district: str | None = None,
    mine: bool = False,
    cursor: str | None = None,
    limit: int = 20,
) -> tuple[list[OrgView], str | None]:
    """Orgs ``actor`` may see, oldest first: approved ones for everyone, every
    status for admins (``status=pending`` is the queue of applications).
    ``mine`` gives the caller's own orgs, whatever their status, each with
    the caller's role in it."""
    if mine:
        if not actor.signed_in:
            raise Unauthorized()
        stmt = (
            sa.select(Org, OrgMember.role)
            .join(OrgMember, OrgMember.org_id == Org.id)
            .where(OrgMember.user_id == actor.id)
        )
    else:
        stmt = sa.select(Org, sa.null()).where(actor.visible_orgs())
    if status is not None:
        stmt = stmt.where(Org.status == status)
    if district is not None:
        stmt = stmt.where(Org.district == district)
    rows, next_cursor = paginate(db.session, stmt, [(Org.id, False)], cursor, limit, lambda r: [r[0].id], rows=True)
    return [OrgView(org, role) for org, role in rows], next_cursor


def apply_for_org(actor: Actor, name: str, kind: str, district: str) -> Org:
    """An application: the org waits for an admin (every admin is told); the
    applicant becomes its first coordinator now, with powers once it is approved."""
    if district not in current_app.config["DISTRICTS"]:
        raise Invalid("district", gettext("Unknown district."))
    user = actor.user
    org = Org(name=name.strip(), kind=kind, district=district, status="pending", applicant_id=user.id, member_count=1)
    db.session.add(org)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("org_name_taken") from None
    db.session.add(OrgMember(org_id=org.id, user_id=user.id, role="coordinator"))
    reviewers = set(db.session.scalars(admins())) - {user.id}
    notify(reviewers, "org_submitted", dedupe=f"org:{org.id}", org=org.name, org_id=org.id)
    db.session.commit()
    return org


def approve_org(actor: Actor, org_id: int) -> Org:
    """pending → approved (admins); the applicant is told."""
    return _review(actor, org_id, APPROVED)


def reject_org(actor: Actor, org_id: int, reason: str) -> Org:
    """pending → rejected with a reason (admins); the applicant is told why."""
    return _review(actor, org_id, "rejected", reason.strip())


def _review(actor: Actor, org_id: int, status: str, reason: str | None = None) -> Org:
    """An admin's decision on a pending application: one conditional UPDATE (two
    admins deciding at once: one wins, the other gets 409), told to the
    applicant and audited."""
    if not actor.is_admin:
        raise Forbidden("admin_required")
    done = db.session.execute(
        sa.update(Org)
        .where(Org.id == org_id, Org.status == "pending")
        .values(status=status, reviewed_by=actor.id, reviewed_at=utcnow(), reject_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        db.session.rollback()
        get_org(org_id)
        raise Conflict("org_not_pending")
    org = db.session.get(Org, org_id, populate_existing=True)
    context = {"reason": reason} if reason else {}
    kind = "org_approved" if status == APPROVED else "org_rejected"
    notify([org.applicant_id], kind, dedupe=f"org:{org.id}", org=org.name, org_id=org.id, **context)
    audit(actor.id, f"org.{'approve' if status == APPROVED else 'reject'}", "org", org.id, **context)
    db.session.commit()
    return org


def list_members(actor: Actor, org_id: int, *, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    """The org's members and coordinators in the order they joined (its
    coordinators and admins): ``{user: {id, display_name}, role, joined_at}``,
    with ``party`` where the caller may see it (``Actor.sees_party``)."""
    org = get_org(org_id)
    _require_manager(actor, org)
    stmt = (
        sa.select(OrgMember.id, OrgMember.user_id, User.display_name, OrgMember.role, OrgMember.created_at)
        .join(User, User.id == OrgMember.user_id)
        .where(OrgMember.org_id == org.id)
    )
    rows, next_cursor = paginate(db.session, stmt, [(OrgMember.id, False)], cursor, limit, lambda r: [r.id], rows=True)
    parties = visible_parties(actor, [row.user_id for row in rows])
    items = []
    for _, user_id, name, role, joined_at in rows:
        item = {"user": {"id": user_id, "display_name": name}, "role": role, "joined_at": joined_at}
        if user_id in parties:
            item["party"] = parties[user_id]
        items.append(item)
    return items, next_cursor


def _require_manager(actor: Actor, org: Org) -> None:
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")


def add_member(actor: Actor, org_id: int, member_id: int, role: str) -> OrgMember:
    org = get_org(org_id)
    _require_manager(actor, org)
    if db.session.get(User, member_id) is None:
        raise Invalid("user_id", gettext("No such user."))
    member = OrgMember(org_id=org.id, user_id=member_id, role=role)
    db.session.add(member)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("already_member") from None
    db.session.execute(sa.update(Org).where(Org.id == org.id).values(member_count=Org.member_count + 1))
    # a request to join the coordinator just answered by adding the person is settled with it
    db.session.execute(
        sa.update(JoinRequest)
        .where(JoinRequest.org_id == org.id, JoinRequest.user_id == member_id, JoinRequest.status == "pending")
        .values(status=APPROVED, decided_by=actor.id, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return member


# --- joining on request -------------------------------------------------------------------------------------


def request_to_join(actor: Actor, org_id: int, message: str | None) -> JoinRequest:
    """A volunteer asks to join an approved org (a refused one may ask again); the
    org's coordinators are told (``join_requested``)."""
    org = view_org(actor, org_id)
    actor.require_may_join(org)
    now = utcnow()
    message = (message or "").strip() or None
    request = db.session.scalar(
        sa.select(JoinRequest).where(JoinRequest.org_id == org.id, JoinRequest.user_id == actor.id).with_for_update()
    )
    if request is not None and request.status == "pending":
        raise Conflict("join_request_pending")
    if request is None:
        request = JoinRequest(org_id=org.id, user_id=actor.id)
        db.session.add(request)
    request.status, request.message, request.requested_at = "pending", message, now
    request.decided_by = request.decided_at = request.reject_reason = None
    try:
        db.session.flush()
    except IntegrityError:  # the same volunteer asked twice at once
        db.session.rollback()
        raise Conflict("join_request_pending") from None
    coordinators = record_reviewers({org.id})[org.id] - {actor.id}
    notify(
        coordinators,
        "join_requested",
        dedupe=f"join:{request.id}:{now.isoformat()}",
        volunteer=actor.user.display_name,
        org=org.name,
        org_id=org.id,
    )
    db.session.commit()
    return request


def list_join_requests(actor: Actor, org_id: int, *, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    """The org's pending requests to join, oldest first (its coordinators)."""
    org = get_org(org_id)
    actor.require_may_decide_join(org)
    stmt = (
        sa.select(JoinRequest, User.display_name, Volunteer.volunteer_no)
        .join(User, User.id == JoinRequest.user_id)
        .outerjoin(Volunteer, Volunteer.user_id == JoinRequest.user_id)
        .where(JoinRequest.org_id == org.id, JoinRequest.status == "pending")
    )
    rows, next_cursor = paginate(
        db.session, stmt, [(JoinRequest.id, False)], cursor, limit, lambda r: [r[0].id], rows=True
    )
    items = [
        {
            "org_id": request.org_id,
            "user": {"id": request.user_id, "display_name": name},
            "volunteer_no": volunteer_no,
            "status": request.status,
            "message": request.message,
            "requested_at": request.requested_at,
        }
        for request, name, volunteer_no in rows
    ]
    return items, next_cursor


def approve_join(actor: Actor, org_id: int, user_id: int) -> JoinRequest:
    """A pending request → approved: the volunteer becomes a member (of a
    ``party_branch``: a party member of it) and is told (``membership_approved``)."""
    org, request = _decide_join(actor, org_id, user_id, APPROVED)
    added = True
    try:
        # a savepoint: a coordinator adding the same person by id at this moment wins the row
        with db.session.begin_nested():
            db.session.add(OrgMember(org_id=org.id, user_id=user_id, role="member"))
    except IntegrityError:
        added = False  # already a member: the request is settled all the same
    if added:
        db.session.execute(sa.update(Org).where(Org.id == org.id).values(member_count=Org.member_count + 1))
    notify(
        [user_id],
        "membership_approved",
        dedupe=f"join:{request.id}:{request.decided_at.isoformat()}",
        org=org.name,
        org_id=org.id,
    )
    audit(actor.id, "org.join.approve", "org", org.id, user_id=user_id)
    db.session.commit()
    return request


def reject_join(actor: Actor, org_id: int, user_id: int, reason: str) -> JoinRequest:
    """A pending request → rejected with a reason the volunteer is told (``membership_rejected``)."""
    org, request = _decide_join(actor, org_id, user_id, "rejected", reason.strip())
    notify(
        [user_id],
        "membership_rejected",
        dedupe=f"join:{request.id}:{request.decided_at.isoformat()}",
        org=org.name,
        org_id=org.id,
        reason=request.reject_reason,
    )
    audit(actor.id, "org.join.reject", "org", org.id, user_id=user_id, reason=request.reject_reason)
    db.session.commit()
    return request


def _decide_join(actor: Actor, org_id: int, user_id: int, status: str, reason: str | None = None):
    """One conditional UPDATE pending → ``status`` (two coordinators deciding at once:
    one wins, the other gets 409 ``join_request_not_pending``)."""
    org = get_org(org_id)
    actor.require_may_decide_join(org)
    where = (JoinRequest.org_id == org.id, JoinRequest.user_id == user_id)
    done = db.session.execute(
        sa.update(JoinRequest)
        .where(*where, JoinRequest.status == "pending")
        .values(status=status, decided_by=actor.id, decided_at=utcnow(), reject_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        db.session.rollback()
        if db.session.scalar(sa.select(JoinRequest.id).where(*where)) is None:
            raise NotFound()
        raise Conflict("join_request_not_pending")
    request = db.session.scalar(sa.select(JoinRequest).where(*where).execution_options(populate_existing=True))
    return org, request


def sole_coordinator_of(user_id: int) -> list[int]:
    """The approved orgs ``user_id`` is the only coordinator of (an org never loses its last one)."""
    other = so.aliased(OrgMember)
    others = sa.select(other.id).where(other.org_id == Org.id, other.role == "coordinator", other.user_id != user_id)
    return list(
        db.session.scalars(
            sa.select(Org.id)
            .join(OrgMember, OrgMember.org_id == Org.id)
            .where(
                OrgMember.user_id == user_id,
                OrgMember.role == "coordinator",
                Org.status == "approved",
                ~others.exists(),
            )
            .order_by(Org.id)
        )
    )


def remove_member(actor: Actor, org_id: int, member_id: int) -> None:
    """Remove a member; the org keeps at least one coordinator."""
    # The member_count UPDATE comes first because it locks the org row: two
    # coordinators removing each other then run one after the other, and the
    # second sees the first's removal when it counts the remaining coordinators.
    locked = db.session.execute(
        sa.update(Org).where(Org.id == org_id).values(member_count=Org.member_count - 1)
    ).rowcount
    try:
        if not locked:
            raise NotFound()
        org = db.session.get(Org, org_id, populate_existing=True)
        if member_id != actor.id:
            _require_manager(actor, org)
        member = db.session.scalar(
            sa.select(OrgMember).where(OrgMember.org_id == org.id, OrgMember.user_id == member_id)
        )
        if member is None:
            raise NotFound()
        if member.role == "coordinator":
            others = db.session.scalar(
                sa.select(sa.func.count())
                .select_from(OrgMember)
                .where(OrgMember.org_id == org.id, OrgMember.role == "coordinator", OrgMember.user_id != member_id)
            )
            if not others:
                raise Conflict("last_coordinator")
    except AppError:
        db.session.rollback()
        raise
    db.session.delete(member)
    if org.kind == PARTY_BRANCH:
        # no longer a party member (of any other branch): no longer reporting to a community
        db.session.flush()
        if db.session.scalar(party_branch_ids(member_id).limit(1)) is None:
            db.session.execute(sa.delete(CommunityReport).where(CommunityReport.user_id == member_id))
    db.session.commit()
