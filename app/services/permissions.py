"""Who may act for an organisation."""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import Org, OrgMember, User


def coordinator_org_ids(user: User) -> set[int]:
    """Ids of the approved orgs the user coordinates."""
    rows = db.session.scalars(
        sa.select(OrgMember.org_id)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.user_id == user.id, OrgMember.role == "coordinator", Org.status == "approved")
    )
    return set(rows)


def is_coordinator_of(user: User | None, org_id: int | None) -> bool:
    if user is None or org_id is None:
        return False
    return org_id in coordinator_org_ids(user)


def coordinates_in_district(user: User, district: str) -> bool:
    """True when the user coordinates an approved org of that district."""
    found = db.session.scalar(
        sa.select(OrgMember.id)
        .join(Org, Org.id == OrgMember.org_id)
        .where(
            OrgMember.user_id == user.id,
            OrgMember.role == "coordinator",
            Org.status == "approved",
            Org.district == district,
        )
        .limit(1)
    )
    return found is not None


def memberships(user: User) -> list[tuple[Org, str]]:
    rows = db.session.execute(
        sa.select(Org, OrgMember.role)
        .join(OrgMember, OrgMember.org_id == Org.id)
        .where(OrgMember.user_id == user.id)
        .order_by(Org.id)
    )
    return [(org, role) for org, role in rows]
