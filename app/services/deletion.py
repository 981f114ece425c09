"""Deleting an account (注销账号) with a cooling-off period (冷静期).

``DELETE /me`` (the password, or a code sent for ``delete_account``) schedules
the erase ``ACCOUNT_DELETION_DAYS`` ahead and ends every session. Until then
the account is whole: **signing in again** — with the password or an SMS code
— keeps it (the schedule is dropped as the session opens, and the answer's
``user.deletion_scheduled_at`` is null), and so does ``POST
/me/deletion/cancel`` from a session. At the time, the scheduler's
``erase_accounts`` job erases the person (``app.services.personal_data``).

The last coordinator of an approved org cannot delete their account (409
``last_coordinator``) until another coordinator exists; should one become the
last while waiting (the other left), the erase waits a day and asks again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext

from app.clock import utcnow
from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import User
from app.services import personal_data, sms_codes, tokens
from app.services.accounts import check_password
from app.services.audit import audit
from app.services.orgs import sole_coordinator_of

log = logging.getLogger(__name__)

# A due erase blocked by the last-coordinator rule is asked again this much later.
BLOCKED_RETRY = timedelta(days=1)


def request_deletion(user: User, password: str | None = None, sms_code: str | None = None) -> User:
    """Schedule the erase of ``user``'s account and end all their sessions."""
    if sms_code is not None:
        sms_codes.require_code(user.phone, "delete_account", sms_code)
    elif not check_password(user, password or ""):
        db.session.rollback()
        raise Invalid("password", gettext("The password is wrong."), slug="wrong_password")
    orphaned = sole_coordinator_of(user.id)
    if orphaned:
        db.session.rollback()
        raise Conflict(
            "last_coordinator",
            gettext("You are the last coordinator of an organisation: make another member coordinator first."),
        )
    if user.deletion_scheduled_at is None:
        user.deletion_scheduled_at = utcnow() + timedelta(days=current_app.config["ACCOUNT_DELETION_DAYS"])
        audit(
            user.id, "account.deletion_requested", "user", user.id, scheduled_for=user.deletion_scheduled_at.isoformat()
        )
    tokens.revoke_all_for_user(user.id)
    db.session.commit()
    return user


def cancel_deletion(user: User) -> User:
    """Keep the account: drop a scheduled erase (nothing to do when none is scheduled)."""
    if user.deletion_scheduled_at is not None:
        user.deletion_scheduled_at = None
        audit(user.id, "account.deletion_cancelled", "user", user.id, by="request")
        db.session.commit()
    return user


def erase_due(limit: int) -> tuple[int, int]:
    """Erase up to ``limit`` accounts whose time has come, in the caller's transaction
    (the job's batch); (erased, postponed). Each account is locked and checked again
    first, so a sign-in that called the erase off meanwhile wins."""
    now = utcnow()
    due = sa.and_(User.deletion_scheduled_at.is_not(None), User.deletion_scheduled_at <= now, User.erased_at.is_(None))
    stmt = sa.select(User).where(due).order_by(User.deletion_scheduled_at, User.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    erased = postponed = 0
    for user in db.session.scalars(stmt).all():
        if sole_coordinator_of(user.id):
            user.deletion_scheduled_at = now + BLOCKED_RETRY
            postponed += 1
            continue
        counts = personal_data.erase(user)
        audit(None, "account.erase", "user", user.id, **counts)
        erased += 1
    if postponed:
        log.warning("erase_accounts: %d account(s) wait for another coordinator of their org", postponed)
    return erased, postponed
