"""SMS codes (短信验证码) and the counters of their limits.

Phone numbers and client addresses are never stored here in clear: both are
keyed hashes (app.services.sms_codes), so the table says nothing about the
people who asked for a code, and nothing about a number that has no account.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.models.base import Base


class SmsCode(Base):
    """The one live code of a phone: a newer one replaces it (the row is reused).

    ``reserved_at`` starts the phone's resend interval; the code is usable only
    once the provider accepted it (``sent_at``), until ``expires_at``, while
    ``used_at`` is null and fewer than the allowed wrong tries were made.
    """

    __tablename__ = "sms_codes"
    __table_args__ = (sa.Index("ix_sms_codes_reserved_at", "reserved_at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    phone_key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    purpose: so.Mapped[str] = so.mapped_column(sa.String(20))
    code_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    # A fresh value per reservation: the provider's answer settles only its own.
    nonce: so.Mapped[str] = so.mapped_column(sa.String(32))
    reserved_at: so.Mapped[datetime]
    sent_at: so.Mapped[datetime | None]
    expires_at: so.Mapped[datetime]
    attempts: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    used_at: so.Mapped[datetime | None]


class SmsCounter(Base):
    """How many codes one key (a phone, a client address, the whole service) was
    given in one window; moved with one conditional upsert, so concurrent requests
    in any number of processes never pass a limit."""

    __tablename__ = "sms_counters"

    scope: so.Mapped[str] = so.mapped_column(sa.String(16), primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    window_start: so.Mapped[datetime] = so.mapped_column(primary_key=True)
    count: so.Mapped[int] = so.mapped_column(default=0)
