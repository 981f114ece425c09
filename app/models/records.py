"""Service records (志愿服务记录): credit hours and honor hours, and the ratings of the work."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base
from app.policy import RECORD_STATUSES, sql_in


class ServiceRecord(Base):
    """One record with the fields China's volunteer-service record rules ask for:
    activity, date, place, content, duration, evaluation, recorder, organisation.

    ``status`` is the record's life (``app.policy.RECORD_STATUSES``): ``pending``
    until a second person of the recording org (``org_id``) approves it, then
    ``recorded`` (it counts) or ``rejected`` (it never does). Every record has its
    window ``started_at``..``ended_at``; one volunteer's non-rejected windows
    never overlap (``app.services.records.hold_time``).
    """

    __tablename__ = "service_records"
    __table_args__ = (
        sa.CheckConstraint("minutes >= 0", name="minutes_not_negative"),
        sa.CheckConstraint(sql_in("status", RECORD_STATUSES), name="status_known"),
        sa.CheckConstraint("started_at <= ended_at", name="window_in_order"),
        sa.Index("ix_service_records_volunteer_id_id", "volunteer_id", "id"),
        # the volunteer's windows near a new one (the overlap check)
        sa.Index("ix_service_records_volunteer_id_ended_at", "volunteer_id", "ended_at"),
        # a volunteer's recorded service in a period (a party branch's report: hours and
        # the last service of thousands of members), answered from the index alone
        sa.Index(
            "ix_service_records_recorded_volunteer_id_ended_at",
            "volunteer_id",
            "ended_at",
            postgresql_include=["minutes"],
            postgresql_where=sa.text("status = 'recorded'"),
            sqlite_where=sa.text("status = 'recorded'"),
        ),
        # an org's records by status, oldest first (GET /orgs/{id}/records?status=pending: the review queue)
        sa.Index("ix_service_records_org_id_status_created_at", "org_id", "status", "created_at", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    volunteer_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    posting_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="SET NULL"))
    # One credit record per claim, whatever retries happen.
    claim_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("claims.id", ondelete="SET NULL"), unique=True)
    # The organisation that records it (谁组织谁记录) and certifies it.
    org_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="SET NULL"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(6))  # credit | honor
    status: so.Mapped[str] = so.mapped_column(sa.String(8))
    posting_kind: so.Mapped[str | None] = so.mapped_column(sa.String(10))
    activity: so.Mapped[str] = so.mapped_column(sa.String(80))
    minutes: so.Mapped[int]
    started_at: so.Mapped[datetime]
    ended_at: so.Mapped[datetime]
    place: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    content: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    evaluation: so.Mapped[str | None] = so.mapped_column(sa.String(1000))
    rating: so.Mapped[int | None]
    # Who made the record: the confirmer, the coordinator awarding honor hours, the
    # event's organiser for a check-out; none when the scheduler made it.
    recorded_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # Who decided a pending record (approved or rejected it), when, and why a rejection.
    approved_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: so.Mapped[datetime | None]
    reject_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class VolunteerRating(Base):
    """A rater's rating of a volunteer's work (1-5): one row per (volunteer, rater),
    the rater's latest. ``volunteer.rating`` is the mean over these rows; a rater
    whose account is gone (``rater_id`` null) keeps their row."""

    __tablename__ = "volunteer_ratings"
    __table_args__ = (
        sa.UniqueConstraint("volunteer_id", "rater_id", name="uq_volunteer_ratings_volunteer_rater"),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name="rating_in_range"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    volunteer_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    rater_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    rating: so.Mapped[int]
    claim_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("claims.id", ondelete="SET NULL"))
    rated_at: so.Mapped[datetime]
