"""The scheduler's heartbeat: when each job last ran, and how it ended."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.models.base import Base


class JobRun(Base):
    """One row per job, rewritten at the end of every run (``flask doctor`` reads it)."""

    __tablename__ = "job_runs"

    job: so.Mapped[str] = so.mapped_column(sa.String(40), primary_key=True)
    last_finished_at: so.Mapped[datetime]
    last_ok_at: so.Mapped[datetime | None]
    last_error: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    last_duration_ms: so.Mapped[int] = so.mapped_column(default=0)
    runs: so.Mapped[int] = so.mapped_column(default=0)
