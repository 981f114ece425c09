"""Organisations (志愿组织): application, approval, members."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from app.extensions import db
from app.models import Org, OrgMember, User
from app.models.base import MAX_ID
from app.services.permissions import Actor


def get_org(org_id: int) -> Org:
    return (db.session.get(Org, org_id) if 0 < org_id <= MAX_ID else None) or _not_found()


def _not_found():
    raise NotFound()


def apply_for_org(actor: Actor, name: str, kind: str, district: str) -> Org:
    """An application: the org waits for an admin; the applicant becomes its
    first coordinator now, with powers once it is approved."""
    if district not in current_app.config["DISTRICTS"]:
        raise Invalid("district", "unknown district")
    user = actor.user
    org = Org(name=name.strip(), kind=kind, district=district, status="pending", applicant_id=user.id, member_count=1)
    db.session.add(org)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("org_name_taken") from None
    db.session.add(OrgMember(org_id=org.id, user_id=user.id, role="coordinator"))
    db.session.commit()
    return org


def approve_org(actor: Actor, org_id: int) -> Org:
    if not actor.is_admin:
        raise Forbidden("admin_required")
    done = db.session.execute(
        sa.update(Org).where(Org.id == org_id, Org.status == "pending").values(status="approved")
    ).rowcount
    if not done:
        get_org(org_id)
        db.session.rollback()
        raise Conflict("org_not_pending")
    db.session.commit()
    return get_org(org_id)


def _require_manager(actor: Actor, org: Org) -> None:
    if not actor.manages_org(org.id):
        raise Forbidden("coordinator_required")


def add_member(actor: Actor, org_id: int, member_id: int, role: str) -> OrgMember:
    org = get_org(org_id)
    _require_manager(actor, org)
    if db.session.get(User, member_id) is None:
        raise Invalid("user_id", "no such user")
    member = OrgMember(org_id=org.id, user_id=member_id, role=role)
    db.session.add(member)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("already_member") from None
    db.session.execute(sa.update(Org).where(Org.id == org.id).values(member_count=Org.member_count + 1))
    db.session.commit()
    return member


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
    db.session.commit()
