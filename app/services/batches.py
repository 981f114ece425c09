"""Set-based batches for the transitions the scheduler drives.

A batch is ``UPDATE … WHERE id IN (up to n ids matching the rule) AND <the rule>``:
the rule is repeated in the outer statement, so a row changed since the
subquery saw it is re-checked against its latest version and a row changes
state once however many runs race for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from app.extensions import db


def is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def batch_of(model, rule: Sequence[sa.ColumnElement[bool]], limit: int, order_by=None) -> sa.ColumnElement[bool]:
    """``id IN (up to limit ids matching rule)`` (the first by ``order_by`` if given),
    rows another transaction holds skipped."""
    ids = sa.select(model.id).where(*rule).limit(limit)
    if order_by is not None:
        ids = ids.order_by(order_by)
    if not is_postgres():
        # SQLite: no row locks, one writer, and an uncorrelated IN list built once.
        # (Not a CTE: sqlite3 opens no transaction for a statement starting with WITH.)
        return model.id.in_(ids.correlate(None).scalar_subquery())
    # PostgreSQL: the ids come from a materialised CTE. As a plain ``IN (SELECT …
    # LIMIT n FOR UPDATE SKIP LOCKED)`` the subquery may be rescanned per candidate
    # row, skip the rows this very statement just updated, and so move more than n.
    batch = (
        ids.with_for_update(skip_locked=True)
        .cte(f"{model.__tablename__}_batch")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return model.id.in_(sa.select(batch.c.id))


def update_batch(model, rule: Sequence[sa.ColumnElement[bool]], limit: int, values: dict, returning: Sequence):
    """Move at most ``limit`` rows matching ``rule`` to ``values``; the moved rows' ``returning`` columns."""
    return db.session.execute(
        sa.update(model)
        .where(batch_of(model, rule, limit), *rule)
        .values(**values)
        .returning(*returning)
        .execution_options(synchronize_session=False)
    ).all()


def stamp(value) -> str:
    """A compact UTC stamp for dedupe keys (``20261126T100000Z``)."""
    return value.strftime("%Y%m%dT%H%M%SZ")
