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


def credit_many(
    entries: dict[int, list[tuple[int, str, int | None, int | None]]],
    counters: dict[int, dict[str, int]] | None = None,
) -> None:
    """Credit many volunteers at once: ``entries[user_id]`` are ``(points, reason,
    claim_id, posting_id)``, and ``counters[user_id]`` other deltas of the same row
    (``{"credit_minutes": 90}``) moved with the points. Set-based, whatever the
    number of volunteers: their rows locked in id order (one lock order for every
    batch), one UPDATE … FROM (a VALUES list) of all of them, one INSERT of the ledger
    rows, each with its running ``balance_after``. Users without a volunteer
    profile get nothing. The caller commits."""
    counters = counters or {}
    entries = {user_id: [e for e in rows if e[0] > 0] for user_id, rows in entries.items()}
    users = sorted(user_id for user_id in {*entries, *counters} if entries.get(user_id) or counters.get(user_id))
    if not users:
        return
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(
            sa.select(Volunteer.id).where(Volunteer.user_id.in_(users)).order_by(Volunteer.user_id).with_for_update()
        )
    names = sorted({name for deltas in counters.values() for name in deltas})
    delta = (
        sa.values(
            sa.column("user_id", sa.Integer),
            sa.column("points", sa.Integer),
            *(sa.column(name, sa.Integer) for name in names),
            name="delta",
        )
        .data(
            [
                (
                    user_id,
                    sum(points for points, _, _, _ in entries.get(user_id, [])),
                    *(counters.get(user_id, {}).get(name, 0) for name in names),
                )
                for user_id in users
            ]
        )
        .cte("delta")
    )  # WITH delta(user_id, …) AS (VALUES …): both PostgreSQL and SQLite read it
    values = {"energy_balance": Volunteer.energy_balance + delta.c.points}
    values.update({name: getattr(Volunteer, name) + delta.c[name] for name in names})
    balances = dict(
        db.session.execute(
            sa.update(Volunteer)
            .where(Volunteer.user_id == delta.c.user_id)
            .values(**values)
            .returning(Volunteer.user_id, Volunteer.energy_balance)
            .execution_options(synchronize_session=False)
        ).all()
    )
    rows = []
    for user_id in users:
        mine = entries.get(user_id, [])
        if user_id not in balances or not mine:
            continue
        running = balances[user_id] - sum(points for points, _, _, _ in mine)
        for points, reason, claim_id, posting_id in mine:
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
    if rows:
        db.session.execute(sa.insert(EnergyEntry), rows)


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


def affordable(points) -> sa.ColumnElement[bool]:
    """The balance covers ``points`` (a number or a SQL expression): it never goes below 0."""
    return Volunteer.energy_balance >= points


def _move(user_id: int, delta: int, *, reason: str, claim_id: int | None, posting_id: int | None) -> int | None:
    stmt = sa.update(Volunteer).where(Volunteer.user_id == user_id)
    if delta < 0:
        stmt = stmt.where(affordable(-delta))
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
