"""Accounts: registration, login, profile and password."""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError

from app.errors import Conflict, Invalid, Unauthorized
from app.extensions import db
from app.i18n import DEFAULT_LOCALE
from app.models import User
from app.services import photos, tokens
from app.services.permissions import Actor

# Verified against when the account does not exist, so that a wrong phone
# costs the same time as a wrong password.
_DUMMY_PASSWORD = "not-a-real-password"


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)


def password_hasher() -> PasswordHasher:
    cfg = current_app.config
    return _hasher(cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST"])


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_cost: int) -> str:
    return _hasher(time_cost, memory_cost).hash(_DUMMY_PASSWORD)


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def check_password(user: User | None, password: str) -> bool:
    hasher = password_hasher()
    if user is None:
        cfg = current_app.config
        try:
            hasher.verify(_dummy_hash(cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST"]), password)
        except (VerificationError, InvalidHashError):
            pass
        return False
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return True


def create_user(
    phone: str,
    password: str,
    display_name: str,
    email: str | None = None,
    is_admin: bool = False,
    locale: str = DEFAULT_LOCALE,
) -> User:
    """Insert a user; the unique indexes decide a race between two sign-ups."""
    user = User(
        phone=phone,
        email=email.lower() if email else None,
        password_hash=hash_password(password),
        display_name=display_name,
        is_admin=is_admin,
        locale=locale,
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise _uniqueness_conflict(exc, phone, email) from None
    return user


def _uniqueness_conflict(exc: IntegrityError, phone: str, email: str | None) -> Conflict:
    text = str(exc.orig).lower()
    if "email" in text:
        return Conflict("email_taken")
    if "phone" in text:
        return Conflict("phone_taken")
    # Fall back to asking the table which one it was.
    if email and db.session.scalar(sa.select(User.id).where(User.email == email.lower())):
        return Conflict("email_taken")
    return Conflict("phone_taken")


def register(
    phone: str, password: str, display_name: str, email: str | None = None, locale: str = DEFAULT_LOCALE
) -> tuple[User, dict]:
    """Create the account (its ``locale``: the language the phone asked for) and sign in."""
    user = create_user(phone, password, display_name, email, locale=locale)
    pair = tokens.issue_tokens(user)
    db.session.commit()
    return user, pair


def login(password: str, phone: str | None = None, email: str | None = None) -> tuple[User, dict]:
    if phone:
        user = db.session.scalar(sa.select(User).where(User.phone == phone))
    else:
        user = db.session.scalar(sa.select(User).where(User.email == (email or "").lower()))
    if not check_password(user, password):
        db.session.rollback()
        raise Unauthorized("invalid_credentials")
    pair = tokens.issue_tokens(user)
    db.session.commit()
    return user, pair


PROFILE_FIELDS = ("display_name", "email", "locale", "timezone")


def update_profile(user: User, changes: dict) -> User:
    """Change the profile; ``avatar_photo_id`` (an upload of the user's for
    ``avatar``, or None) replaces the avatar, and the old one goes."""
    if "avatar_photo_id" in changes:
        photos.set_avatar(Actor(user), changes["avatar_photo_id"])
    for field in PROFILE_FIELDS:
        if field in changes:
            value = changes[field]
            setattr(user, field, value.lower() if field == "email" and value else value)
    if "quiet_hours" in changes:
        quiet = changes["quiet_hours"]
        user.quiet_start, user.quiet_end = (quiet["start"], quiet["end"]) if quiet else (None, None)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("email_taken") from None
    return user


def change_password(user: User, old_password: str, new_password: str) -> None:
    if not check_password(user, old_password):
        db.session.rollback()
        raise Invalid("old_password", gettext("The old password is wrong."), slug="wrong_password")
    user.password_hash = hash_password(new_password)
    tokens.revoke_all_for_user(user.id)
    db.session.commit()


def make_admin(phone: str, password: str, display_name: str) -> User:
    """Create the admin, or promote an existing account with that phone."""
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    if user is None:
        user = create_user(phone, password, display_name, is_admin=True)
    else:
        user.is_admin = True
        user.password_hash = hash_password(password)
    db.session.commit()
    return user
