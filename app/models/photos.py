"""Photos (照片): uploaded straight to object storage, checked, then attached once."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base

# Attached to nothing: an upload not used yet, or a photo taken off what it
# belonged to (the purge job's candidates; app.services.photos).
UNLINKED = "posting_id IS NULL AND claim_id IS NULL AND avatar_user_id IS NULL"
_UNLINKED = sa.text(UNLINKED)
# Its upload URL may still be live, or its original still stored (app.services.photos.close_uploads).
_UPLOAD_OPEN = sa.text("NOT upload_closed")


class Photo(Base):
    """One photo and the files it is stored as.

    The phone PUTs the original to ``uploads/<key>``; when the photo is first
    used it is checked and re-encoded into ``photos/<key>.<ext>`` (the display
    size) and ``photos/<key>-thumb.<ext>``, and the original is deleted. A
    photo belongs to at most one thing: a posting (``posting_id``), a claim's
    fulfilment (``claim_id``) or a user's avatar (``avatar_user_id``).
    """

    __tablename__ = "photos"
    __table_args__ = (
        sa.Index("ix_photos_posting_id", "posting_id", "position"),
        sa.Index("ix_photos_claim_id", "claim_id", "position"),
        sa.Index("ix_photos_owner_id_status", "owner_id", "status"),
        sa.Index("ix_photos_unlinked", "created_at", sqlite_where=_UNLINKED, postgresql_where=_UNLINKED),
        sa.Index("ix_photos_upload_open", "created_at", sqlite_where=_UPLOAD_OPEN, postgresql_where=_UPLOAD_OPEN),
        sa.CheckConstraint("size > 0", name="size_positive"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    owner_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    purpose: so.Mapped[str] = so.mapped_column(sa.String(10))
    content_type: so.Mapped[str] = so.mapped_column(sa.String(20))
    # The bytes the uploader declared; the upload must be exactly this long.
    size: so.Mapped[int]
    # The random stem of the photo's storage keys.
    key: so.Mapped[str] = so.mapped_column(sa.String(40), unique=True)
    status: so.Mapped[str] = so.mapped_column(sa.String(10), default="pending")
    # The display size's, once checked.
    width: so.Mapped[int | None]
    height: so.Mapped[int | None]
    posting_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("postings.id", ondelete="SET NULL"))
    claim_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("claims.id", ondelete="SET NULL"))
    avatar_user_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    # Its place among the photos of what it belongs to.
    position: so.Mapped[int] = so.mapped_column(sa.SmallInteger, default=0, server_default="0")
    # The original is deleted and its upload URL has expired: nothing can put it back.
    upload_closed: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    checked_at: so.Mapped[datetime | None]
    attached_at: so.Mapped[datetime | None]
