"""Audit log: who did what to whose data, append-only."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_target", "target_type", "target_id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    actor_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    action: so.Mapped[str] = so.mapped_column(sa.String(40))
    target_type: so.Mapped[str] = so.mapped_column(sa.String(20))
    target_id: so.Mapped[int | None]
    data: so.Mapped[dict] = so.mapped_column(sa.JSON, default=dict)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
