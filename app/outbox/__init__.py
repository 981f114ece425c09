"""Notifications: the inbox rows that are also the push outbox.

``notify()`` writes one row per user inside the caller's transaction, so the
message "your wish was claimed" commits or rolls back with the claim itself.
The dispatcher (notifications.dispatch) sends pending rows later.

A row is written ready for the dispatcher:

- its text rendered in the user's language (``locale``, zh-CN by default),
  times shown in the user's time zone;
- ``push_status`` ``pending`` with ``next_attempt_at`` now, or the end of the
  user's quiet hours when they are in them (the inbox row is there at once);
- ``skipped`` (reason ``muted`` in ``last_error``) when the user muted the kind:
  the inbox keeps it, no push goes out;
- ``skipped`` (reason ``batched``) for a kind of ``PUSH_INTERVALS`` when the user
  already has a push of that kind due within the interval: one push per
  interval, every message in the inbox. The windows live in ``push_windows``
  (see :func:`claim_push_windows`), so two transactions writing at once cannot
  both push the same user.
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from app.clock import utcnow, zone
from app.extensions import db
from app.i18n import API_LOCALES
from app.models import Notification, PushWindow, User
from app.outbox.templates import NOTIFICATION_KINDS, PUSH_INTERVALS, encode_params, render

# ids a push may carry for deep links; values always strings (FCM rule)
DATA_KEYS = ("posting_id", "claim_id", "org_id", "certificate_id", "record_id")
_INSERT_CHUNK = 1000  # rows per INSERT, well under PostgreSQL's 65,535 parameters


# What writing a user's notification needs to know of them.
RECIPIENT_FIELDS = ("id", "locale", "timezone", "quiet_start", "quiet_end", "muted_kinds")
Recipient = namedtuple("Recipient", RECIPIENT_FIELDS)


def recipient_columns(user=User) -> list:
    """The columns of a recipient, labelled ``recipient_<field>`` so that they can
    ride along in another statement (``user`` may be an alias)."""
    return [getattr(user, name).label(f"recipient_{name}") for name in RECIPIENT_FIELDS]


def recipient_of(row) -> Recipient:
    """The recipient whose :func:`recipient_columns` ``row`` carries."""
    return Recipient(*(getattr(row, f"recipient_{name}") for name in RECIPIENT_FIELDS))


def notify(user_ids: Iterable[int], kind: str, *, dedupe: str, recipients: Iterable[Recipient] = (), **context) -> int:
    """Queue ``kind`` for each user; returns how many rows were new.

    ``dedupe`` names the event (e.g. ``"claim:42"``); the row's unique
    ``dedupe_key`` is ``kind:dedupe:user``, so the same event twice writes
    one row per user. Muted kinds keep the inbox row but skip the push.
    ``context`` fills the texts (``title``, ``volunteer``, ``when``, …) and
    its ``posting_id``/``claim_id``/``org_id``/``certificate_id``/``record_id`` go into ``data`` for deep links.
    """
    ids = {int(u) for u in user_ids if u is not None}
    return _queue(kind, [({user_id: {} for user_id in ids}, dedupe, context)], known=recipients)


def notify_each(kind: str, contexts: Mapping[int, Mapping[str, Any]], *, dedupe: str, **common) -> int:
    """Like :func:`notify`, with a context per user on top of ``common`` (e.g. each
    volunteer's own ``distance_km``); one SELECT and one INSERT per 1,000 users."""
    return _queue(kind, [(contexts, dedupe, common)])


def notify_many(kind: str, events: Iterable[tuple[Iterable[int], str, Mapping[str, Any]]]) -> int:
    """Many events of one kind at once, e.g. a scheduler batch: each ``(user_ids,
    dedupe, context)`` writes exactly what ``notify(user_ids, kind, dedupe=dedupe,
    **context)`` would, but the whole batch costs one SELECT of its users and one
    INSERT per 1,000 rows instead of two statements per event."""
    return _queue(kind, [({u: {} for u in user_ids}, dedupe, context) for user_ids, dedupe, context in events])


def _queue(
    kind: str,
    events: list[tuple[Mapping[int, Mapping[str, Any]], str, Mapping[str, Any]]],
    known: Iterable[Recipient] = (),
) -> int:
    """Write the rows of ``events``, each ``(per-user contexts, dedupe, common context)``;
    the settings of users in ``known`` (read by the caller in its own statement)
    are not read again."""
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    events = [
        ({int(u): dict(c or {}) for u, c in contexts.items() if u is not None}, dedupe, common)
        for contexts, dedupe, common in events
    ]
    ids = sorted({user_id for per_user, _, _ in events for user_id in per_user})
    if not ids:
        return 0
    users = {row.id: row for row in known if row.id in ids}
    missing = [user_id for user_id in ids if user_id not in users]
    if missing:
        users.update(
            (row.id, row)
            for row in db.session.execute(
                # An erased account is told nothing: its inbox is gone for good.
                sa.select(*(getattr(User, name) for name in RECIPIENT_FIELDS)).where(
                    User.id.in_(missing), User.erased_at.is_(None)
                )
            )
        )
    now = utcnow()
    rows = []
    for per_user, dedupe, common in events:
        for user_id in sorted(per_user):
            user = users.get(user_id)
            if user is None:
                continue
            context = {**common, **per_user[user_id]}
            params = encode_params(kind, context)
            title, body = render(kind, user.locale, params, user.timezone)
            rows.append(
                {
                    "user_id": user_id,
                    "kind": kind,
                    "title": _clip(title, 120),
                    "body": _clip(body, 500),
                    "data": push_data(kind, context),
                    "params": params,
                    "dedupe_key": f"{kind}:{dedupe}:{user_id}"[:160],
                    "created_at": now,
                    **push_fields(kind, user, now),
                }
            )
    if kind in PUSH_INTERVALS:
        _coalesce_pushes(kind, rows)
    return sum(insert_ignoring_duplicates(rows[i : i + _INSERT_CHUNK]) for i in range(0, len(rows), _INSERT_CHUNK))


def push_fields(kind: str, user: Recipient, now: datetime) -> dict[str, Any]:
    """How a new row of ``kind`` for ``user`` waits for the dispatcher: skipped when
    the user muted the kind, else pending from now or from the end of their quiet hours."""
    is_muted = kind in (user.muted_kinds or [])
    return {
        "push_status": "skipped" if is_muted else "pending",
        "last_error": "muted" if is_muted else None,
        "next_attempt_at": quiet_hours_end(now, user.timezone, user.quiet_start, user.quiet_end) or now,
    }


# --- one row written by another statement ---------------------------------------------------------------------

# A value only the writing statement knows (the posting's title it reads, the id
# of the claim it inserts), marked in the prepared texts by characters no text
# contains (the Unicode private use area) and replaced by the statement.
SLOT_OPEN, SLOT_CLOSE = "\ue000", "\ue001"


def slot(name: str) -> str:
    """The marker of the statement's value ``name`` (see :func:`prepared_row`)."""
    return f"{SLOT_OPEN}{name}{SLOT_CLOSE}"


@dataclass(frozen=True)
class PreparedRow:
    """What :func:`notify` would write for one recipient, for a statement that writes
    the row itself: ``texts`` has (locale, title, body) for every API language (the
    statement picks the recipient's, :data:`~app.i18n.DEFAULT_LOCALE` for any
    other); ``data`` and ``params`` are JSON text; any of them may hold
    :func:`slot` markers. The push fields start as ``pending`` from now: the
    caller settles them with :func:`settle_prepared` once it knows the recipient."""

    kind: str
    texts: tuple[tuple[str, str, str], ...]
    data: str
    params: str
    dedupe_key: str


def prepared_row(kind: str, *, dedupe: str, user_id: str, **context) -> PreparedRow:
    """The row of ``kind`` :func:`notify` writes for ``user_id`` with ``dedupe`` and
    ``context``, rendered in every API language; values may be :func:`slot` markers.

    Only for kinds without a push interval (a statement cannot coalesce pushes),
    and for texts that need no clipping: a marker's value must be short enough."""
    if kind not in NOTIFICATION_KINDS or kind in PUSH_INTERVALS:
        raise ValueError(f"{kind!r} cannot be written by another statement")
    params = encode_params(kind, context)
    texts = tuple((locale, *render(kind, locale, params)) for locale in API_LOCALES)
    return PreparedRow(
        kind=kind,
        texts=texts,
        data=json.dumps(push_data(kind, context), ensure_ascii=False),
        params=json.dumps(params, ensure_ascii=False),
        dedupe_key=f"{kind}:{dedupe}:{user_id}",
    )


def settle_prepared(notification_id: int | None, row: PreparedRow, recipient: Recipient, now: datetime) -> None:
    """The push fields of a prepared row once written, the recipient's settings
    known: one UPDATE when the recipient muted the kind or is in quiet hours (the
    row was written ``pending`` from now), none otherwise."""
    if notification_id is None:
        return
    fields = push_fields(row.kind, recipient, now)
    if fields["push_status"] != "pending" or fields["next_attempt_at"] != now:
        db.session.execute(
            sa.update(Notification).where(Notification.id == notification_id).values(**fields),
            execution_options={"synchronize_session": False},
        )


def _coalesce_pushes(kind: str, rows: list[dict]) -> None:
    """Keep the push of the first row per user whose push window is open; the
    others keep their inbox row and skip the push (``batched``)."""
    due: dict[int, datetime] = {}
    for row in rows:
        if row["push_status"] == "pending":
            due.setdefault(row["user_id"], row["next_attempt_at"])
    granted = claim_push_windows(kind, due, PUSH_INTERVALS[kind])
    pushing: set[int] = set()
    for row in rows:
        user_id = row["user_id"]
        if row["push_status"] != "pending":
            continue
        if user_id in granted and user_id not in pushing:
            pushing.add(user_id)
        else:
            row.update(push_status="skipped", last_error="batched")


def claim_push_windows(kind: str, due: Mapping[int, datetime], interval: timedelta) -> set[int]:
    """The users of ``due`` (user id -> when their push would go) who may be pushed
    ``kind`` now: those with no push of the kind due within ``interval`` before.

    One ``INSERT … ON CONFLICT (user_id, kind) DO UPDATE … WHERE next_push_at <=
    excluded.last_push_at RETURNING user_id`` per 1,000 users, in user order. A
    user's window row is locked until the caller commits, so a concurrent
    transaction wanting to push the same user waits, then sees the window this
    one opened and skips; the rows are taken in one order, so two such batches
    cannot deadlock. The window opens even when the notification row turns out
    to be a duplicate (the same event queued twice, already pushed once).
    """
    if not due:
        return set()
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = PushWindow.__table__
    granted: set[int] = set()
    users = sorted(due)
    for i in range(0, len(users), _INSERT_CHUNK):
        stmt = insert(table).values(
            [
                {
                    "user_id": user_id,
                    "kind": kind,
                    "last_push_at": due[user_id],
                    "next_push_at": due[user_id] + interval,
                }
                for user_id in users[i : i + _INSERT_CHUNK]
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.user_id, table.c.kind],
            set_={"last_push_at": stmt.excluded.last_push_at, "next_push_at": stmt.excluded.next_push_at},
            where=table.c.next_push_at <= stmt.excluded.last_push_at,
        ).returning(table.c.user_id)
        granted.update(db.session.scalars(stmt))
    return granted


def push_data(kind: str, context: Mapping[str, Any]) -> dict[str, str]:
    """The deep-link payload kept on the row: ``kind`` and the ids it concerns, all strings."""
    return {"kind": kind, **{k: str(context[k]) for k in DATA_KEYS if context.get(k) is not None}}


def push_payload(notification_id: int, data: Mapping[str, Any] | None) -> dict[str, str]:
    """What a push (and its inbox item) carries: the row's data and its own id,
    so the app can drop a push that arrives twice."""
    return {**{str(k): str(v) for k, v in (data or {}).items()}, "notification_id": str(notification_id)}


def quiet_hours_end(now: datetime, tz: str | None, start: str | None, end: str | None) -> datetime | None:
    """When ``now`` lies inside the quiet hours ``start``–``end`` ("HH:MM", local to
    ``tz``, ``DEFAULT_TIMEZONE`` when unset), the UTC moment they end; otherwise None.

    ``22:00``–``07:00`` spans midnight: 23:30 and 06:59 are inside, 07:00 is not.
    Equal or missing bounds mean no quiet hours.
    """
    if not start or not end or start == end:
        return None
    try:
        begins, ends = time.fromisoformat(start), time.fromisoformat(end)
    except ValueError:
        return None
    local_zone = zone(tz)
    local = now.astimezone(local_zone)
    clock = local.time().replace(tzinfo=None)
    if begins < ends:
        if not begins <= clock < ends:
            return None
        end_day = local.date()
    else:
        if ends <= clock < begins:
            return None
        end_day = local.date() + timedelta(days=1) if clock >= begins else local.date()
    return datetime.combine(end_day, ends, tzinfo=local_zone).astimezone(UTC)


def insert_ignoring_duplicates(rows: list[dict]) -> int:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING on either database; returns the rows written."""
    if not rows:
        return 0
    if db.session.get_bind().dialect.name == "postgresql":
        return _insert_unnest(rows)
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(Notification).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Notification.id)
    # Rows as executemany parameters, not .values(rows): SQLAlchemy then sends them
    # as multi-row VALUES from one cached statement, where a 1,000-row .values()
    # would be compiled afresh each time.
    return len(db.session.execute(stmt, rows).all())


def _insert_unnest(rows: list[dict]) -> int:
    """PostgreSQL: the rows as one array per column, ``INSERT … SELECT FROM unnest(…)``.

    Eleven parameters instead of eleven per row: a 1,000-row multi-VALUES INSERT
    spends most of its time in the driver turning 11,000 placeholders into
    ``$n``; this form is about five times faster for a scheduler batch.
    """
    names = tuple(dict.fromkeys(name for row in rows for name in row))
    stmt, json_columns = _unnest_statement(names)
    params = {}
    for i, name in enumerate(names):
        column_values = [row.get(name) for row in rows]
        if name in json_columns:
            # JSON travels as text and is cast per element (there is no json[] input of dicts)
            column_values = [None if v is None else json.dumps(v) for v in column_values]
        params[f"p{i}"] = column_values
    return len(db.session.execute(stmt, params).all())


@functools.cache
def _unnest_statement(names: tuple[str, ...]) -> tuple[sa.TextClause, frozenset[str]]:
    """The INSERT … SELECT FROM unnest(…) of these columns, built once per column set."""
    from sqlalchemy.dialects import postgresql

    table = Notification.__table__
    dialect = postgresql.dialect()
    arrays, values, json_columns = [], [], set()
    for i, name in enumerate(names):
        column = table.c[name]
        if isinstance(column.type, sa.JSON):
            arrays.append(f"CAST(:p{i} AS text[])")
            values.append(f"CAST(c{i} AS json)")
            json_columns.add(name)
        else:
            arrays.append(f"CAST(:p{i} AS {column.type.compile(dialect=dialect)}[])")
            values.append(f"c{i}")
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    stmt = sa.text(
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) AS batch({aliases}) "
        "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id"
    )
    return stmt, frozenset(json_columns)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
