"""Energy points (微能量): an append-only ledger and a balance that never goes below 0.

The balance lives on the volunteer row and moves only by conditional UPDATE;
each movement appends one ledger row in the same transaction.

Ledger reasons: ``redeem`` (a reward claimed, debit), ``refund_withdrawn`` and
``refund_cancelled`` (its points back), ``service_hours`` (10 per recorded
credit hour), ``wish_confirmed`` (5 per confirmed wish, paid with its record).
One entry per (claim, reason). Points for service are minted when its record
becomes ``recorded`` (``app.services.records``), never for a rejected one.
"""

from __future__ import annotations

import sqlalchemy as sa

from app.extensions import db
from app.models import EnergyEntry, Volunteer
from app.services.pagination import paginate


def credit(
    user_id: int, points: int, *, reason: str, claim_id: int | None = None, posting_id: int | None = None
) -> int:
    """Add points; returns the new balance. The caller commits."""
    return _move(user_id, points, reason=reason, claim_id=claim_id, posting_id=posting_id)


def credit_many(user_id: int, entries: list[tuple[int, str, int | None, int | None]]) -> int | None:
    """Add several credits at once, ``(points, reason, claim_id, posting_id)`` each:
    one UPDATE of the balance and one ledger row per entry, each with its running
    ``balance_after``. Returns the new balance (None: the user has no volunteer
    profile, and nothing is written)."""
    entries = [entry for entry in entries if entry[0] > 0]
    if not entries:
        return balance_of(user_id)
    total = sum(points for points, _, _, _ in entries)
    balance = db.session.execute(
        sa.update(Volunteer)
        .where(Volunteer.user_id == user_id)
        .values(energy_balance=Volunteer.energy_balance + total)
        .returning(Volunteer.energy_balance)
        .execution_options(synchronize_session=False)
    ).scalar()
    if balance is None:
        return None
    running = balance - total
    rows = []
    for points, reason, claim_id, posting_id in entries:
        running += points
        rows.append(
            {
                "user_id": user_id,
                "delta": points,
                "balance_after": running,
                "reason": reason,
                "claim_id": claim_id,
                "posting_id": posting_id,
            }
        )
    db.session.execute(sa.insert(EnergyEntry), rows)
    return balance


def refund(
    user_id: int, points: int, *, reason: str, claim_id: int | None = None, posting_id: int | None = None
) -> int:
    return _move(user_id, points, reason=reason, claim_id=claim_id, posting_id=posting_id)


def debit(
    user_id: int, points: int, *, reason: str, claim_id: int | None = None, posting_id: int | None = None
) -> int | None:
    """Take points if the balance allows; returns the new balance, or None
    when it does not (nothing is written then)."""
    return _move(user_id, -points, reason=reason, claim_id=claim_id, posting_id=posting_id)


def _move(user_id: int, delta: int, *, reason: str, claim_id: int | None, posting_id: int | None) -> int | None:
    stmt = sa.update(Volunteer).where(Volunteer.user_id == user_id)
    if delta < 0:
        stmt = stmt.where(Volunteer.energy_balance >= -delta)
    balance = db.session.execute(
        stmt.values(energy_balance=Volunteer.energy_balance + delta)
        .returning(Volunteer.energy_balance)
        .execution_options(synchronize_session=False)
    ).scalar()
    if balance is None:
        return None
    db.session.add(
        EnergyEntry(
            user_id=user_id, delta=delta, balance_after=balance, reason=reason, claim_id=claim_id, posting_id=posting_id
        )
    )
    return balance


def balance_of(user_id: int) -> int:
    """The user's energy balance (0 without a volunteer profile)."""
    balance = db.session.scalar(sa.select(Volunteer.energy_balance).where(Volunteer.user_id == user_id))
    return balance or 0


def ledger_page(user_id: int, *, cursor: str | None, limit: int) -> tuple[list[EnergyEntry], str | None]:
    """The user's ledger entries, newest first."""
    stmt = sa.select(EnergyEntry).where(EnergyEntry.user_id == user_id)
    return paginate(db.session, stmt, [(EnergyEntry.id, True)], cursor, limit, lambda e: [e.id])
