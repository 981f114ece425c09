"""Refresh tokens (rotated, grouped in families) and idempotency keys."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base


class RefreshToken(Base):
    """One issued refresh token. A login starts a family; each refresh spends
    one token and issues the next in the same family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        sa.Index("ix_refresh_tokens_family_id", "family_id"),
        sa.Index("ix_refresh_tokens_user_id", "user_id"),
        sa.Index("ix_refresh_tokens_expires_at", "expires_at"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    jti: so.Mapped[str] = so.mapped_column(sa.String(36), unique=True)
    family_id: so.Mapped[str] = so.mapped_column(sa.String(36))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    issued_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    expires_at: so.Mapped[datetime]
    used_at: so.Mapped[datetime | None]
    revoked_at: so.Mapped[datetime | None]


_ANONYMOUS = sa.text("user_id IS NULL")


class IdempotencyKey(Base):
    """The stored first response to a POST carrying ``Idempotency-Key``: a
    user's, or (``user_id`` NULL) a registration's, whose caller has no account yet."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        # NULLs never collide in the constraint above: the anonymous keys get their own.
        sa.Index(
            "uq_idempotency_keys_anonymous_key",
            "key",
            unique=True,
            sqlite_where=_ANONYMOUS,
            postgresql_where=_ANONYMOUS,
        ),
        sa.Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    key: so.Mapped[str] = so.mapped_column(sa.String(255))
    method: so.Mapped[str] = so.mapped_column(sa.String(8))
    path: so.Mapped[str] = so.mapped_column(sa.String(255))
    request_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    status_code: so.Mapped[int | None]
    response_body: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    completed_at: so.Mapped[datetime | None]
