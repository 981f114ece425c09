"""Organisations (志愿组织) and their members."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.hybrid import hybrid_property

from app.models.base import Base, Timestamped

ORG_KINDS = ("community", "school", "enterprise", "party_branch", "ngo", "government")
# An application waits (pending) for an admin, who approves or rejects it.
APPROVED = "approved"
ORG_STATUSES = ("pending", APPROVED, "rejected")
MEMBER_ROLES = ("coordinator", "member")


class Org(Timestamped, Base):
    __tablename__ = "orgs"
    __table_args__ = (sa.Index("ix_orgs_district_status", "district", "status"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(80), unique=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(20))
    district: so.Mapped[str] = so.mapped_column(sa.String(32))
    status: so.Mapped[str] = so.mapped_column(sa.String(10), default="pending")
    applicant_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    member_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # The admin's decision on the application (approve or reject) and, when
    # rejected, the reason the applicant was told.
    reviewed_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: so.Mapped[datetime | None]
    reject_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))

    @hybrid_property
    def is_approved(self) -> bool:
        """An approved org: public, its coordinators coordinate, it posts, records and
        certifies. The one definition, in Python and (``Org.is_approved``) in SQL."""
        return self.status == APPROVED


class OrgMember(Timestamped, Base):
    __tablename__ = "org_members"
    __table_args__ = (sa.UniqueConstraint("org_id", "user_id", name="uq_org_members_org_user"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    org_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="CASCADE"))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: so.Mapped[str] = so.mapped_column(sa.String(12))

    org: so.Mapped[Org] = so.relationship(lazy="joined")


# A volunteer's request to join an org: pending until one of its coordinators decides.
JOIN_REQUEST_STATUSES = ("pending", "approved", "rejected")
PARTY_BRANCH = "party_branch"
COMMUNITY = "community"


class JoinRequest(Timestamped, Base):
    """A volunteer asks to join an org (``POST /orgs/{id}/join``); one row per
    (org, user): a refused volunteer may ask again, which makes it pending anew."""

    __tablename__ = "org_join_requests"
    __table_args__ = (
        sa.UniqueConstraint("org_id", "user_id", name="uq_org_join_requests_org_user"),
        # the org's queue, oldest first
        sa.Index("ix_org_join_requests_org_id_status_id", "org_id", "status", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    org_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="CASCADE"))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: so.Mapped[str] = so.mapped_column(sa.String(10), default="pending")
    message: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    requested_at: so.Mapped[datetime]
    decided_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: so.Mapped[datetime | None]
    reject_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))


class CommunityReport(Timestamped, Base):
    """A party member reporting to the community where they live (在职党员到社区报到):
    one community at a time per person (the user id is the key)."""

    __tablename__ = "community_reports"

    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    org_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
