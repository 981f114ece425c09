"""Service records (志愿服务记录): credit hours and honor hours."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base


class ServiceRecord(Base):
    """One record with the fields China's volunteer-service record rules ask for:
    activity, date, place, content, duration, evaluation, recorder, organisation."""

    __tablename__ = "service_records"
    __table_args__ = (
        sa.CheckConstraint("minutes >= 0", name="minutes_not_negative"),
        sa.Index("ix_service_records_volunteer_id_id", "volunteer_id", "id"),
        # an org's records, newest first (GET /orgs/{id}/records)
        sa.Index("ix_service_records_org_id_id", "org_id", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    volunteer_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    posting_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="SET NULL"))
    # One credit record per claim, whatever retries happen.
    claim_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("claims.id", ondelete="SET NULL"), unique=True)
    org_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("orgs.id", ondelete="SET NULL"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(6))  # credit | honor
    posting_kind: so.Mapped[str | None] = so.mapped_column(sa.String(10))
    activity: so.Mapped[str] = so.mapped_column(sa.String(80))
    minutes: so.Mapped[int]
    started_at: so.Mapped[datetime | None]
    ended_at: so.Mapped[datetime | None]
    place: so.Mapped[str | None] = so.mapped_column(sa.String(200))
    content: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    evaluation: so.Mapped[str | None] = so.mapped_column(sa.String(1000))
    rating: so.Mapped[int | None]
    recorded_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
