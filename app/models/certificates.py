"""Certificates of volunteer service (志愿服务证明) and calendar feeds."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.models.base import Base

CERTIFICATE_STATUSES = ("valid", "void")


class Certificate(Base):
    """One issued certificate: a snapshot of what it certifies, signed.

    Everything a reader of the certificate sees is copied here when it is
    issued (the volunteer's name and numbers, the org's name, the figures and
    the table of records), so records added later, a renamed org or a corrected
    name never change a certificate already handed to a school or an employer.
    ``code`` carries the signature over that content (app.services.certificates).
    ``number`` and ``code`` are written in the issuing transaction, right after
    the row gets its id; no committed row lacks them.
    """

    __tablename__ = "certificates"
    __table_args__ = (
        # a volunteer's certificates, newest first (GET /me/certificates)
        sa.Index("ix_certificates_volunteer_id_id", "volunteer_id", "id"),
        sa.Index("ix_certificates_org_id", "org_id"),
        sa.CheckConstraint("credit_minutes >= 0 AND honor_minutes >= 0", name="minutes_not_negative"),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    number: so.Mapped[str | None] = so.mapped_column(sa.String(20), unique=True)
    code: so.Mapped[str | None] = so.mapped_column(sa.String(128))
    # The signing key's id (hex), so an operator can tell which certificates an old key signed.
    key_id: so.Mapped[str | None] = so.mapped_column(sa.String(8))
    volunteer_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id"))
    org_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("orgs.id"))
    volunteer_no: so.Mapped[str] = so.mapped_column(sa.String(20))
    real_name: so.Mapped[str] = so.mapped_column(sa.String(40))
    id_masked: so.Mapped[str] = so.mapped_column(sa.String(18))
    org_name: so.Mapped[str] = so.mapped_column(sa.String(80))
    period_from: so.Mapped[date]
    period_to: so.Mapped[date]
    credit_minutes: so.Mapped[int]
    honor_minutes: so.Mapped[int]
    records_count: so.Mapped[int]
    # [{id, date, activity, place, minutes, kind}], oldest first: the PDF's table.
    records: so.Mapped[list[dict]] = so.mapped_column(sa.JSON, default=list)
    issued_at: so.Mapped[datetime]
    status: so.Mapped[str] = so.mapped_column(sa.String(5), default="valid", server_default="valid")
    voided_at: so.Mapped[datetime | None]
    voided_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    void_reason: so.Mapped[str | None] = so.mapped_column(sa.String(500))
    # When its volunteer's account was erased the names were removed and the row
    # signed again; the SHA-256 of the code printed before keeps that code verifying.
    superseded_code_hash: so.Mapped[str | None] = so.mapped_column(sa.String(64))


class CalendarFeed(Base):
    """A user's secret calendar URL, kept as the SHA-256 of its token only.

    A table of its own rather than a column on ``users``: the users row is read
    on every request and is referenced by most tables (an SQLite migration of
    it rebuilds the table), while this one is read by the feed alone, by the
    unique hash.
    """

    __tablename__ = "calendar_feeds"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    created_at: so.Mapped[datetime]
