"""Access and refresh tokens: rotation with reuse detection.

A login opens a *family*. Each refresh spends its token (a conditional UPDATE,
so two racing refreshes cannot both win) and issues the next one in the same
family. A spent token presented again means it was copied: the whole family
is revoked and its access tokens stop working too.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from app.clock import utcnow
from app.database import in_read_only_view
from app.errors import Unauthorized
from app.extensions import db
from app.models import RefreshToken, User
from app.models.base import MAX_ID
from app.services.permissions import coordinated_orgs_sql


def issue_tokens(user: User, family_id: str | None = None) -> dict[str, str]:
    """Create an access and a refresh token; the caller commits."""
    family_id = family_id or str(uuid.uuid4())
    jti = str(uuid.uuid4())
    now = utcnow()
    db.session.add(
        RefreshToken(
            jti=jti,
            family_id=family_id,
            user_id=user.id,
            issued_at=now,
            expires_at=now + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
        )
    )
    return {
        "access_token": create_access_token(identity=user, additional_claims={"fam": family_id}),
        "refresh_token": create_refresh_token(identity=user, additional_claims={"fam": family_id, "jti": jti}),
    }


def rotate_refresh_token(user: User, payload: dict) -> dict[str, str]:
    """Spend the presented refresh token and issue the next of its family."""
    now = utcnow()
    spent = db.session.execute(
        sa.update(RefreshToken)
        .where(
            RefreshToken.jti == payload["jti"],
            RefreshToken.user_id == user.id,
            RefreshToken.family_id == payload.get("fam"),
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        row = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.jti == payload["jti"]))
        if row is not None and row.used_at is not None:
            _revoke(RefreshToken.family_id == row.family_id, now)
            db.session.commit()
            raise Unauthorized("refresh_token_reused")
        db.session.rollback()
        raise Unauthorized("token_revoked")
    pair = issue_tokens(user, family_id=payload.get("fam"))
    db.session.commit()
    return pair


def revoke_family(payload: dict) -> None:
    row = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.jti == payload.get("jti")))
    if row is not None:
        _revoke(RefreshToken.family_id == row.family_id, utcnow())
    db.session.commit()


def revoke_all_for_user(user_id: int) -> None:
    """Revoke every family of a user; the caller commits."""
    _revoke(RefreshToken.user_id == user_id, utcnow())


def _revoke(condition, now: datetime) -> None:
    db.session.execute(
        sa.update(RefreshToken).where(condition, RefreshToken.revoked_at.is_(None)).values(revoked_at=now)
    )


def is_revoked(payload: dict) -> bool:
    """Blocklist check. A refresh token that was spent but not revoked is let
    through so that rotate_refresh_token can detect the reuse."""
    if payload.get("type") == "refresh":
        row = db.session.scalar(sa.select(RefreshToken).where(RefreshToken.jti == payload.get("jti")))
        # a token's family and its user are one: a token naming another's is forged
        return (
            row is None
            or str(row.user_id) != str(payload.get("sub"))
            or row.family_id != payload.get("fam")
            or (row.revoked_at is not None and row.used_at is None)
        )
    return user_and_revocation(payload)[1]


def user_and_revocation(payload: dict) -> tuple[User | None, bool]:
    """The user an access token names (with their volunteer record) and whether
    the token is revoked, in one round trip.

    A family is bound to its user: one nobody issued to the user the token names
    (a token minted elsewhere, or one whose ``sub`` was swapped for another
    user's) counts as revoked, as does one whose tokens were revoked (logout,
    password change, reuse detected). A ``sub`` that is no user id names nobody.
    The answer is read from the database on every request: nothing is cached
    between requests, so a revocation holds from its commit on.
    """
    family = payload.get("fam")
    if not family:
        return None, True
    try:
        user_id = int(payload.get("sub"))
    except (TypeError, ValueError):
        user_id = None
    if user_id is None or not 0 < user_id <= MAX_ID:
        return None, False  # names nobody: 401 invalid_token
    # A view that only reads takes the user's coordinator roles in the same round
    # trip (app.database: one that writes reads them after its locks).
    roles = in_read_only_view() and db.session.get_bind().dialect.name
    user, issued, revoked = db.session.execute(
        _user_and_revocation_statement(roles), {"family": family, "user_id": user_id}
    ).one()
    return user, issued == 0 or revoked > 0


@functools.cache
def _user_and_revocation_statement(roles: str | bool) -> sa.Select:
    """Built once (every authenticated request runs it): the family's counts,
    always one row, with the user and their volunteer record outer-joined; with
    ``roles`` (the dialect's name) also the orgs the user coordinates
    (``User.coordinated_orgs``: where a wish is, what a coordinator may see)."""

    counts = (
        sa.select(
            sa.func.count(RefreshToken.id).label("issued"), sa.func.count(RefreshToken.revoked_at).label("revoked")
        )
        .where(RefreshToken.family_id == sa.bindparam("family"), RefreshToken.user_id == sa.bindparam("user_id"))
        .subquery("family")
    )
    stmt = (
        sa.select(User, counts.c.issued, counts.c.revoked)
        .select_from(counts)
        .outerjoin(User, User.id == sa.bindparam("user_id"))
        .outerjoin(User.volunteer)
        .options(so.contains_eager(User.volunteer))
    )
    if roles:
        stmt = stmt.options(so.with_expression(User.coordinated_orgs, coordinated_orgs_sql(roles == "postgresql")))
    return stmt
