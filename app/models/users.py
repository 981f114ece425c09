"""Users and volunteers (志愿者)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import utcnow
from app.models.base import Base, Timestamped
from app.policy import average_rating, hours, star_level
from app.validators import mask_phone

_DELETION_SCHEDULED = sa.text("deletion_scheduled_at IS NOT NULL")


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = (
        # The admins (told of every org application and every posting to review),
        # found without reading a million users.
        sa.Index("ix_users_admins", "id", sqlite_where=sa.text("is_admin = 1"), postgresql_where=sa.text("is_admin")),
        # The accounts waiting out their cooling-off period (the erase_accounts job).
        sa.Index(
            "ix_users_deletion_scheduled_at",
            "deletion_scheduled_at",
            sqlite_where=_DELETION_SCHEDULED,
            postgresql_where=_DELETION_SCHEDULED,
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    # E.164; an erased account holds ``erased:<id>`` instead, so the number may register again.
    phone: so.Mapped[str] = so.mapped_column(sa.String(20), unique=True)
    email: so.Mapped[str | None] = so.mapped_column(sa.String(254), unique=True)
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    display_name: so.Mapped[str] = so.mapped_column(sa.String(40))
    is_admin: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    locale: so.Mapped[str] = so.mapped_column(sa.String(10), default="zh-CN", server_default="zh-CN")
    # The user's own zone; null: the deployment's DEFAULT_TIMEZONE (app.clock.zone).
    timezone: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    # Quiet hours as "HH:MM" local times; both null = off.
    quiet_start: so.Mapped[str | None] = so.mapped_column(sa.String(5))
    quiet_end: so.Mapped[str | None] = so.mapped_column(sa.String(5))
    muted_kinds: so.Mapped[list[str]] = so.mapped_column(sa.JSON, default=list)
    nearby_alerts: so.Mapped[bool] = so.mapped_column(default=True, server_default=sa.true())
    # The privacy policy version last accepted (every acceptance is a Consent row);
    # null: none yet (accounts older than consents).
    privacy_version: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    # DELETE /me: when the account is erased unless its owner signs in again first.
    deletion_scheduled_at: so.Mapped[datetime | None]
    # Set by the erase: the row stays as a tombstone the organisations' records point at.
    erased_at: so.Mapped[datetime | None]
    # The end of the user's last write request, kept only while a read replica is
    # configured: for a while after it their reads go to the primary (app.replica).
    last_write_at: so.Mapped[datetime | None]

    volunteer: so.Mapped[Volunteer | None] = so.relationship(
        back_populates="user", uselist=False, lazy="selectin", foreign_keys="Volunteer.user_id"
    )
    # The approved orgs the user coordinates as [[org id, district], …], when the
    # statement that loaded the user read them too (the token's check,
    # app.services.tokens); None otherwise. Not a column: Actor.coordinated reads it.
    coordinated_orgs: so.Mapped[list | None] = so.query_expression()

    @property
    def phone_masked(self) -> str:
        return "" if self.erased_at is not None else mask_phone(self.phone)

    def __repr__(self) -> str:
        return f"<User {self.id}>"


class Volunteer(Timestamped, Base):
    """A registered volunteer (注册志愿者): one per user."""

    __tablename__ = "volunteers"
    __table_args__ = (
        sa.CheckConstraint("energy_balance >= 0", name="energy_balance_not_negative"),
        sa.CheckConstraint("active_wish_claims >= 0", name="active_wish_claims_not_negative"),
        sa.Index("ix_volunteers_district_home", "district", "home_lat", "home_lng"),
        # Nearby alerts (notifications/nearby.py): the volunteers around a point,
        # nearest first, answered from the index alone on PostgreSQL.
        sa.Index("ix_volunteers_home", "home_lat", "home_lng", postgresql_include=["push_radius_km", "user_id"]),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    volunteer_no: so.Mapped[str | None] = so.mapped_column(sa.String(20), unique=True)
    real_name: so.Mapped[str] = so.mapped_column(sa.String(40))
    id_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    id_masked: so.Mapped[str] = so.mapped_column(sa.String(18))
    gender: so.Mapped[str | None] = so.mapped_column(sa.String(10))
    birth_date: so.Mapped[date | None]
    skills: so.Mapped[list[str]] = so.mapped_column(sa.JSON, default=list)
    district: so.Mapped[str] = so.mapped_column(sa.String(32))
    home_lat: so.Mapped[float | None]
    home_lng: so.Mapped[float | None]
    push_radius_km: so.Mapped[float] = so.mapped_column(default=3.0, server_default="3")
    # Identity checked in person (ID card against real name) by a coordinator of an
    # org the volunteer belongs to; reset when the name or ID number changes.
    verified: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    verified_at: so.Mapped[datetime | None]
    verified_by: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    credit_minutes: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    honor_minutes: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    energy_balance: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    active_wish_claims: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    # Reputation: the ratings (1-5) of confirmed work credited to the volunteer, as a
    # count and a sum, moved with the record in the confirmation's transaction
    # (app.services.records.write_credit_record).
    rating_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    rating_total: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    registered_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    # A guardian's consent (监护人同意), kept with the record of a volunteer under
    # GUARDIAN_CONSENT_UNDER_AGE: who consented and when (for the ID number on the
    # record: a new ID number needs a new consent).
    guardian_name: so.Mapped[str | None] = so.mapped_column(sa.String(40))
    guardian_phone: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    guardian_relation: so.Mapped[str | None] = so.mapped_column(sa.String(20))
    guardian_consented_at: so.Mapped[datetime | None]

    user: so.Mapped[User] = so.relationship(back_populates="volunteer", foreign_keys=[user_id])

    @property
    def credit_hours(self) -> float:
        return hours(self.credit_minutes)

    @property
    def honor_hours(self) -> float:
        return hours(self.honor_minutes)

    @property
    def star_level(self) -> int:
        return star_level(self.credit_minutes + self.honor_minutes)

    @property
    def rating(self) -> dict[str, float | int | None]:
        return {"average": average_rating(self.rating_total, self.rating_count), "count": self.rating_count}


class VolunteerSkill(Base):
    """One skill of a volunteer, with a copy of their home and reach: the index the
    skills-first nearby alerts walk (the volunteers with a skill around a point,
    nearest first). Rebuilt from the profile whenever it is saved
    (app.services.volunteers); ``volunteers.skills`` stays the profile's list."""

    __tablename__ = "volunteer_skills"
    __table_args__ = (
        sa.Index(
            "ix_volunteer_skills_skill_home",
            "skill",
            "home_lat",
            "home_lng",
            postgresql_include=["push_radius_km", "user_id"],
        ),
    )

    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("volunteers.user_id", ondelete="CASCADE"), primary_key=True
    )
    skill: so.Mapped[str] = so.mapped_column(sa.String(20), primary_key=True)
    home_lat: so.Mapped[float | None]
    home_lng: so.Mapped[float | None]
    push_radius_km: so.Mapped[float]


class Consent(Base):
    """One acceptance of a version of the privacy policy or the terms, kept (version, time)."""

    __tablename__ = "consents"
    __table_args__ = (sa.Index("ix_consents_user_id_id", "user_id", "id"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    document: so.Mapped[str] = so.mapped_column(sa.String(10))  # privacy | terms
    version: so.Mapped[str] = so.mapped_column(sa.String(20))
    accepted_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
