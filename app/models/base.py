"""Declarative base with a naming convention and an aware-UTC datetime type."""

from __future__ import annotations

import functools
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from app.clock import as_utc, utcnow

# Ids are 32-bit integers on PostgreSQL: a larger id names no row (and must not reach the query).
MAX_ID = 2**31 - 1

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware timestamp that always comes back as aware UTC.

    SQLite stores no zone and returns naive values; PostgreSQL returns the
    session's zone. Both are normalised here, in one place.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)


class Base(so.DeclarativeBase):
    registry = so.registry(
        metadata=sa.MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: UTCDateTime()},
    )


class Timestamped:
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)


def insert_loaded(session: so.Session, model: type[Base], **values):
    """INSERT one row with a Core statement (``RETURNING`` its id) and give back
    the object as if it had been loaded: persistent in ``session``, every column
    set, no read-back and no unit-of-work INSERT. Columns not in ``values`` take
    their Python default, or their server default through ``RETURNING``.

    For hot paths only; changes made to the object later are flushed as usual.
    """
    table = model.__table__
    row, returned = {}, []
    for column in table.columns:
        if column.key in values:
            row[column.key] = values[column.key]
        elif column.default is not None and column.default.is_scalar:
            row[column.key] = column.default.arg
        elif column.default is not None and column.default.is_callable:
            row[column.key] = column.default.arg(None)
        elif column.server_default is not None or column.primary_key:
            returned.append(column)
        else:
            row[column.key] = None
    result = session.execute(_insert_returning(table, tuple(column.key for column in returned)), row).one()
    row.update(zip((column.key for column in returned), result, strict=True))
    instance = model(**{column.key: row[column.key] for column in table.columns})
    so.make_transient_to_detached(instance)
    session.add(instance)
    return instance


@functools.cache
def _insert_returning(table: sa.Table, returned: tuple[str, ...]) -> sa.Insert:
    """One statement per table and returned columns: built once, its columns
    named by the parameters each execution passes."""
    return sa.insert(table).returning(*(table.c[key] for key in returned))
