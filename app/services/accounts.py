"""Accounts: registration, login, recovery, consent, profile, phone and password.

Every account's phone is proven by an SMS code (``app.services.sms_codes``):
registration, signing in by code, a password reset and a new number each
spend one. Consent to the privacy policy is kept per version
(``consents``); a user whose accepted version is not the current one
(``PRIVACY_VERSION``) may read but not write until they accept it
(``app/consent.py`` answers 428 ``consent_required``).
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError

from app.clock import utcnow
from app.errors import Conflict, Invalid, Unauthorized
from app.extensions import db
from app.i18n import DEFAULT_LOCALE
from app.models import Consent, User
from app.services import sms_codes, tokens
from app.services.audit import audit

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


# --- consent ---------------------------------------------------------------------------------------------------


def legal() -> dict:
    """The documents a user accepts: versions and where to read them (``GET /legal``)."""
    cfg = current_app.config
    return {
        "privacy_version": cfg["PRIVACY_VERSION"],
        "terms_version": cfg["TERMS_VERSION"],
        "privacy_url": cfg["PRIVACY_URL"],
        "terms_url": cfg["TERMS_URL"],
    }


def consent_required(user: User) -> bool:
    """Whether ``user`` must accept the current privacy policy before writing."""
    return user.privacy_version != current_app.config["PRIVACY_VERSION"]


def _check_current(privacy_version: str) -> None:
    if privacy_version != current_app.config["PRIVACY_VERSION"]:
        raise Invalid(
            "privacy_version",
            gettext(
                "The current privacy policy is version %(version)s.", version=current_app.config["PRIVACY_VERSION"]
            ),
            slug="consent_outdated",
        )


def record_consent(user: User, privacy_version: str) -> None:
    """Keep the acceptance (version, time); the caller commits."""
    db.session.add(Consent(user_id=user.id, document="privacy", version=privacy_version, accepted_at=utcnow()))
    user.privacy_version = privacy_version


def accept_privacy_policy(user: User, privacy_version: str) -> User:
    """``POST /me/consents``: the user accepts the current version (422 ``consent_outdated`` for any other)."""
    _check_current(privacy_version)
    if user.privacy_version != privacy_version:
        record_consent(user, privacy_version)
        db.session.commit()
    return user


# --- registration, signing in, recovery ---------------------------------------------------------------------------


def register(
    phone: str,
    sms_code: str,
    password: str,
    display_name: str,
    privacy_version: str,
    email: str | None = None,
    locale: str = DEFAULT_LOCALE,
) -> tuple[User, dict]:
    """Create the account of a phone proven by a code sent for ``register``, with
    the current privacy policy accepted (its ``locale``: the language the phone
    asked for), and sign in. Two sign-ups racing with one code: one spends it."""
    _check_current(privacy_version)
    sms_codes.require_code(phone, "register", sms_code)
    user = create_user(phone, password, display_name, email, locale=locale)
    record_consent(user, privacy_version)
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
    return _sign_in(user)


def login_with_code(phone: str, sms_code: str) -> tuple[User, dict]:
    """短信验证码登录: a code sent to the account's phone for ``login``. A wrong code
    answers as a wrong password does (401 ``invalid_credentials``)."""
    if not sms_codes.spend_code(phone, "login", sms_code):
        raise Unauthorized("invalid_credentials")
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    if user is None:
        db.session.rollback()
        raise Unauthorized("invalid_credentials")
    return _sign_in(user)


def _sign_in(user: User) -> tuple[User, dict]:
    """Open a session. Signing in before the scheduled erase keeps the account: the
    deletion is called off. One conditional UPDATE, so a login racing the erase
    either wins (the erase finds nothing to do) or finds the account gone (401)."""
    kept = db.session.execute(
        sa.update(User)
        .where(User.id == user.id, User.erased_at.is_(None))
        .values(deletion_scheduled_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not kept:
        db.session.rollback()
        raise Unauthorized("invalid_credentials")
    if user.deletion_scheduled_at is not None:
        audit(user.id, "account.deletion_cancelled", "user", user.id, by="sign_in")
        user.deletion_scheduled_at = None
    pair = tokens.issue_tokens(user)
    db.session.commit()
    return user, pair


def reset_password(phone: str, sms_code: str, new_password: str) -> None:
    """找回密码: a code sent for ``reset_password`` sets a new password and ends every
    session of the account (its refresh and access tokens are refused)."""
    sms_codes.require_code(phone, "reset_password", sms_code)
    user = db.session.scalar(sa.select(User).where(User.phone == phone))
    if user is None:
        db.session.rollback()
        raise sms_codes.invalid_code()
    user.password_hash = hash_password(new_password)
    tokens.revoke_all_for_user(user.id)
    audit(user.id, "account.password_reset", "user", user.id)
    db.session.commit()


def change_phone(user: User, phone: str, sms_code: str, password: str) -> User:
    """换绑手机: the new number proven by a code sent to it for ``change_phone``, the
    password proving the account's holder asks. A taken number → 409 ``phone_taken``."""
    if not check_password(user, password):
        db.session.rollback()
        raise Invalid("password", gettext("The password is wrong."), slug="wrong_password")
    if phone == user.phone:
        db.session.rollback()
        raise Conflict("phone_taken")
    sms_codes.require_code(phone, "change_phone", sms_code)
    user.phone = phone
    audit(user.id, "account.change_phone", "user", user.id)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("phone_taken") from None
    return user


PROFILE_FIELDS = ("display_name", "email", "locale", "timezone")


def update_profile(user: User, changes: dict) -> User:
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
