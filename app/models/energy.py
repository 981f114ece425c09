"""The energy ledger (微能量): append-only; the balance lives on the volunteer."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base


class EnergyEntry(Base):
    __tablename__ = "energy_ledger"
    __table_args__ = (
        # One entry per (claim, reason): a retried confirm cannot pay twice.
        sa.UniqueConstraint("claim_id", "reason", name="uq_energy_ledger_claim_reason"),
        sa.Index("ix_energy_ledger_user_id_id", "user_id", "id"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    delta: so.Mapped[int]
    balance_after: so.Mapped[int]
    reason: so.Mapped[str] = so.mapped_column(sa.String(20))
    claim_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("claims.id", ondelete="SET NULL"))
    posting_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="SET NULL"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
