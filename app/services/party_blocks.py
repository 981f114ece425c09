"""Who is a party member, and who may see it: the ``party`` block (branch, community).

A party member is an approved member of an approved ``party_branch`` org; the
community is the one they report to (app.services.party). The block is read here,
below the org and claim services that show it beside a member or a claimant
(``visible_parties``), and the party service above them that keeps the reports and
the branch's lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from app.extensions import db
from app.models import CommunityReport, Org, OrgMember
from app.models.orgs import PARTY_BRANCH
from app.services.permissions import Actor


@dataclass
class Party:
    """A party member's branch (the lowest id of several) and community (or None)."""

    branch_id: int
    branch_name: str
    community_id: int | None = None
    community_name: str | None = None
    community_district: str | None = None

    def as_dict(self) -> dict:
        community = {"id": self.community_id, "name": self.community_name} if self.community_id else None
        return {"branch": {"id": self.branch_id, "name": self.branch_name}, "community": community}


def parties_of(user_ids: Iterable[int]) -> dict[int, Party]:
    """The party block of each party member among ``user_ids`` (two queries)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    found: dict[int, Party] = {}
    branches = db.session.execute(
        sa.select(OrgMember.user_id, Org.id, Org.name)
        .join(Org, Org.id == OrgMember.org_id)
        .where(OrgMember.user_id.in_(ids), Org.kind == PARTY_BRANCH, Org.is_approved)
        .order_by(OrgMember.user_id, Org.id)
    )
    for user_id, org_id, name in branches:
        found.setdefault(user_id, Party(org_id, name))
    if found:
        communities = db.session.execute(
            sa.select(CommunityReport.user_id, Org.id, Org.name, Org.district)
            .join(Org, Org.id == CommunityReport.org_id)
            .where(CommunityReport.user_id.in_(sorted(found)))
        )
        for user_id, org_id, name, district in communities:
            party = found[user_id]
            party.community_id, party.community_name, party.community_district = org_id, name, district
    return found


def communities_of(user_ids: list[int]) -> dict[int, tuple[str, str]]:
    """The community (name, district) each of ``user_ids`` reports to (one query)."""
    rows = db.session.execute(
        sa.select(CommunityReport.user_id, Org.name, Org.district)
        .join(Org, Org.id == CommunityReport.org_id)
        .where(CommunityReport.user_id.in_(sorted(user_ids)))
    )
    return {user_id: (name, district) for user_id, name, district in rows}


def party_of(user_id: int) -> dict | None:
    """``volunteer.party`` for the volunteer themself (None: not a party member)."""
    party = parties_of([user_id]).get(user_id)
    return party.as_dict() if party is not None else None


def visible_parties(actor: Actor, user_ids: Iterable[int]) -> dict[int, dict]:
    """The party blocks among ``user_ids`` that ``actor`` may see (``Actor.sees_party``)."""
    return {
        user_id: party.as_dict()
        for user_id, party in parties_of(user_ids).items()
        if actor.sees_party(user_id, party.branch_id, party.community_id)
    }
