"""Claims (认领): a user's hold on a posting."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.models.base import Base, Timestamped
from app.models.photos import Photo
from app.models.users import User
from app.policy import LIVE_CLAIM_STATUSES, sql_in

# A user holds at most one live claim per posting.
_LIVE = sa.text(sql_in("status", LIVE_CLAIM_STATUSES))


class Claim(Timestamped, Base):
    __tablename__ = "claims"
    __table_args__ = (
        sa.Index(
            "uq_claims_live_posting_user",
            "posting_id",
            "user_id",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
        sa.Index("ix_claims_posting_id_status", "posting_id", "status", "id"),
        sa.Index("ix_claims_user_id_status", "user_id", "status"),
        sa.Index("ix_claims_status_due_at", "status", "due_at"),
        # fulfilled claims waiting for confirmation (auto-confirm)
        sa.Index("ix_claims_status_fulfilled_at", "status", "fulfilled_at"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    posting_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="CASCADE"))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    kind: so.Mapped[str] = so.mapped_column(sa.String(10))
    status: so.Mapped[str] = so.mapped_column(sa.String(12))
    message: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    claimed_at: so.Mapped[datetime]
    due_at: so.Mapped[datetime | None]
    fulfilled_at: so.Mapped[datetime | None]
    confirmed_at: so.Mapped[datetime | None]
    ended_at: so.Mapped[datetime | None]
    check_in_at: so.Mapped[datetime | None]
    check_out_at: so.Mapped[datetime | None]
    note: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    # Links to images hosted elsewhere, from before photos were uploaded: emptied by
    # migration e5a7c3b19d42 and read by nothing; the next release drops the column.
    photo_urls: so.Mapped[list[str]] = so.mapped_column(sa.JSON, default=list, deferred=True)
    # The confirmer's choice for a wish's story (app.policy KindPolicy.public_story):
    # True keeps the fulfilment's photos to those who see the claim; null until confirmed.
    photos_private: so.Mapped[bool | None]
    rating: so.Mapped[int | None]
    feedback: so.Mapped[str | None] = so.mapped_column(sa.String(1000))
    energy_debited: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Scheduler markers (app/jobs.py), so each reminder is queued once: when the
    # claimant was told the wish is due soon (claim_due_soon), and how far the
    # event reminders got (1 = the 24-hour one, 2 = the 1-hour one).
    due_reminded_at: so.Mapped[datetime | None]
    reminder_stage: so.Mapped[int] = so.mapped_column(sa.SmallInteger, default=0, server_default="0")
    # Service time: reported at fulfilment (possibly lowered at confirmation), measured at check-out.
    minutes: so.Mapped[int | None]
    # Confirmed by the scheduler after AUTO_CONFIRM_DAYS, nobody having confirmed it.
    auto_confirmed: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())

    user: so.Mapped[User] = so.relationship(lazy="joined", innerjoin=True)
    # The fulfilment's photos, in order (at most MAX_PHOTOS); lists load them for a
    # whole page at once (app.services.photos.load_photos).
    photos: so.Mapped[list[Photo]] = so.relationship(viewonly=True, order_by="Photo.position")
