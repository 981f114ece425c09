"""A claim on PostgreSQL in one statement (one round trip).

One data-modifying ``WITH`` does what :func:`app.services.claims.claiming._claim`
does in five or six statements, with the same rules, built from the same
definitions:

``policy``
    the kinds' rules as a table, from ``app.policy.POLICIES``;
``target``
    the posting, locked (``FOR UPDATE``: a claim waiting for another one sees
    the row as that one left it), with whether a place is free
    (``places.place_free``) or the line open (``places.line_open``) inside the
    claim window (``places.claim_window``);
``holder``
    the volunteer's row, locked after the posting's (the lock order of every
    claim transaction), only for kinds with an allowance or an energy cost:
    whether the allowance (``places.allowance_left``) and the balance
    (``energy.affordable``) allow;
``decision``
    the first refusal, in the order of the multi-statement path: not allowed to
    claim (``Actor.may_claim_sql``), a live claim already held, no place, the
    allowance, the energy — or none, and then the place taken;
``claim``, ``taken``, ``held``, ``ledger``, ``told``
    only when nothing refused: the claim INSERT, the posting's counters and
    status, the volunteer's allowance and balance, the ledger row of a
    reward's energy, and the poster's notification (the outbox row), prepared
    by ``app.outbox.prepared_row`` in every language and completed with the
    posting's title and the new claim's id.

The statement answers one row (none when the posting does not exist): the
refusal, or the new claim's columns and the notification's id. Refusals whose
slug depends on more than a flag (``forbidden``, ``no_place``) are explained by
the same Python code as the other path, after the rollback. The unique index
of live claims per (posting, user) still guards a double tap that races past
the ``decision``'s check. The statement is compiled once and sent as driver
SQL with bound parameters; nothing goes through the ORM.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime

import psycopg
import sqlalchemy as sa
from flask import current_app
from psycopg.rows import namedtuple_row
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from app.clock import as_utc
from app.errors import Conflict, NotFound
from app.extensions import db
from app.i18n import API_LOCALES, DEFAULT_LOCALE
from app.models import Claim, EnergyEntry, Notification, Posting, User, Volunteer
from app.outbox import RECIPIENT_FIELDS, PreparedRow, Recipient, prepared_row, settle_prepared, slot
from app.policy import LIVE_CLAIM_STATUSES, POLICIES
from app.services.claims.places import (
    allowance_left,
    claim_window,
    line_open,
    place_free,
    status_once_taken,
    why_not_taken,
)
from app.services.energy import affordable
from app.services.permissions import Actor

# The kinds' rules the statement reads, as columns of its ``policy`` table.
POLICY_COLUMNS: dict[str, tuple[sa.types.TypeEngine, object]] = {
    "kind": (sa.String(), lambda p: p.kind),
    "closes_at_end": (sa.Boolean(), lambda p: p.closes_at_end),
    "one_place": (sa.Boolean(), lambda p: p.capacity == "one"),
    "waitlist": (sa.Boolean(), lambda p: p.waitlist),
    "counts_limit": (sa.Boolean(), lambda p: p.counts_toward_claim_limit),
    "costs_energy": (sa.Boolean(), lambda p: p.has_energy_cost),
    "told": (sa.Boolean(), lambda p: p.poster_told_of_claims),
    "volunteers_only": (sa.Boolean(), lambda p: p.claimant_is_volunteer),
    "ttl_hours": (sa.Integer(), lambda p: p.claim_ttl_hours),
}
TOLD_KIND = "wish_claimed"
UNIQUE_LIVE_CLAIM = "uq_claims_live_posting_user"


def claim(actor: Actor, posting_id: int, message: str | None, now: datetime) -> Claim:
    """Claim ``posting_id`` for ``actor`` in one statement, then commit. Returns the
    new claim (a transient object, for the answer); raises the refusal's error."""
    user = actor.user
    prepared = _prepared_notification(user.display_name, posting_id)
    params = {
        "posting_id": posting_id,
        "user_id": user.id,
        "is_volunteer": actor.is_volunteer,
        "message": message,
        "now": now,
        "claim_limit": current_app.config["ACTIVE_WISH_CLAIM_LIMIT"],
        **_notification_params(prepared),
    }
    try:
        row = _execute(params)
    except IntegrityError as exc:
        db.session.rollback()
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) == UNIQUE_LIVE_CLAIM:
            raise Conflict("duplicate_claim") from None
        raise
    if row is None:
        db.session.rollback()
        raise NotFound()
    if row.refusal is not None:
        db.session.rollback()
        _refuse(actor, row, posting_id, now)
    if row.notification_id is not None:
        recipient = Recipient(*(getattr(row, f"recipient_{name}") for name in RECIPIENT_FIELDS))
        settle_prepared(row.notification_id, prepared, recipient, now)
    commit_keeping_loaded()  # the actor's user stays loaded for the answer: no read-back
    return _answer(row, posting_id, user, message, now)


def commit_keeping_loaded() -> None:
    """Commit without expiring what the session holds: the claim just written is
    exactly what is returned, and the actor's user is still what it was, so
    reading either back would be wasted round trips."""
    session = db.session()
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def _refuse(actor: Actor, row, posting_id: int, now: datetime) -> None:
    """Raise the refusal's error, explained by the rules' own Python where a flag is not enough."""
    policy = POLICIES[row.kind]
    if row.refusal == "forbidden":
        actor.require_may_claim(policy, row.author_id)  # raises the rule's 403 (own_posting, volunteer_required)
        raise RuntimeError("Actor.may_claim_sql refused what Actor.require_may_claim allows")
    if row.refusal == "no_place":
        # A double tap whose twin committed while this one waited for the posting's
        # lock reads the posting after the twin: its live claim answers first, as in
        # the multi-statement path (where the claim's INSERT comes first).
        if _holds_live_claim(posting_id, actor.id):
            raise Conflict("duplicate_claim")
        raise why_not_taken(posting_id, policy, now)
    raise Conflict(row.refusal)


def _holds_live_claim(posting_id: int, user_id: int) -> bool:
    return (
        db.session.scalar(
            sa.select(Claim.id)
            .where(Claim.posting_id == posting_id, Claim.user_id == user_id, Claim.status.in_(LIVE_CLAIM_STATUSES))
            .limit(1)
        )
        is not None
    )


def _answer(row, posting_id: int, user: User, message: str | None, now: datetime) -> Claim:
    """The claim as the answer shows it, from the statement's row (not added to the session)."""
    answer = Claim(
        id=row.claim_id,
        posting_id=posting_id,
        user_id=user.id,
        kind=row.kind,
        status=row.claim_status,
        message=message,
        claimed_at=now,
        due_at=as_utc(row.due_at) if row.due_at is not None else None,
        energy_debited=row.energy_debited,
        auto_confirmed=False,
        reminder_stage=0,
        created_at=now,
        updated_at=now,
    )
    sa.orm.attributes.set_committed_value(answer, "user", user)
    sa.orm.attributes.set_committed_value(answer, "photos", [])
    return answer


# --- the notification ---------------------------------------------------------------------------------------


def _prepared_notification(volunteer: str, posting_id: int) -> PreparedRow:
    """The poster's ``wish_claimed`` row as :func:`app.outbox.notify` writes it in the
    multi-statement path (same dedupe, same context), the title, the claim's id and
    the poster's id left to the statement."""
    return prepared_row(
        TOLD_KIND,
        dedupe=f"claim:{slot('claim_id')}",
        user_id=slot("user_id"),
        title=slot("title"),
        volunteer=volunteer,
        posting_id=posting_id,
        claim_id=slot("claim_id"),
    )


def _notification_params(row: PreparedRow) -> dict[str, str]:
    params = {"n_data": row.data, "n_params": row.params, "n_dedupe": row.dedupe_key}
    for i, (_, title, body) in enumerate(row.texts):
        params[f"n_title_{i}"], params[f"n_body_{i}"] = title, body
    return params


def _filled(template, values: dict[str, sa.ColumnElement], as_json: bool = False) -> sa.ColumnElement:
    """``template`` with each :func:`~app.outbox.slot` replaced by its value (in a JSON
    text, the quoted marker by the value as a JSON string)."""
    for name, value in values.items():
        text_value = sa.cast(value, sa.Text)
        if as_json:
            template = sa.func.replace(template, f'"{slot(name)}"', sa.cast(sa.func.to_json(text_value), sa.Text))
        else:
            template = sa.func.replace(template, slot(name), text_value)
    return template


# --- the statement ------------------------------------------------------------------------------------------


@functools.cache
def _statement() -> tuple[str, tuple[str, ...]]:
    """The statement's SQL with PostgreSQL's own ``$n`` placeholders, and the
    names of its parameters in that order.

    Compiled once by SQLAlchemy; its constants (status names, slugs, the
    markers) are then written into the text as literals, so an execution binds
    only the request's dozen values, and psycopg has nothing to rewrite: a
    statement this long is past the size its placeholder conversion caches, and
    converting it anew cost about as much CPU as running it."""
    statement = _build()
    binds = sa.sql.visitors.iterate(statement)
    named = {bind.key for bind in binds if isinstance(bind, sa.BindParameter) and bind.required}
    # placeholders for the request's values let the constant lists (``IN (…)``) be expanded
    compiled = statement.params({key: None for key in named}).compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True}
    )
    constants = {name: value for name, value in compiled.params.items() if name not in named}
    order: list[str] = []

    def placeholder(match: re.Match) -> str:
        name = match.group(1)
        if name is None:
            return "%"  # pyformat's escaped percent sign
        if name in constants:
            return _literal(constants[name])
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return re.sub(r"%\((\w+)\)s|%%", placeholder, str(compiled)), tuple(order)


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no literal for {value!r}")


def _execute(params: dict[str, object]):
    """Run the statement on the session's connection, in its transaction: the
    driver's raw cursor, prepared on the connection after its first use, the row
    as a named tuple. A driver error is raised as SQLAlchemy raises it."""
    sql, order = _statement()
    values = [params[name] for name in order]
    raw = db.session.connection().connection.driver_connection
    try:
        with psycopg.RawCursor(raw, row_factory=namedtuple_row) as cursor:
            cursor.execute(sql, values)
            return cursor.fetchone()
    except psycopg.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, values, exc, psycopg.Error, connection_invalidated=raw.broken) from exc


def _policy_table() -> sa.CTE:
    columns = [sa.column(name, type_) for name, (type_, _) in POLICY_COLUMNS.items()]
    rows = [tuple(read(policy) for _, read in POLICY_COLUMNS.values()) for policy in POLICIES.values()]
    return sa.values(*columns, name="policy", literal_binds=True).data(rows).cte("policy")


def _build() -> sa.Select:
    posting, volunteer, claims = Posting.__table__, Volunteer.__table__, Claim.__table__
    now = sa.bindparam("now", type_=sa.DateTime(timezone=True))
    user_id = sa.bindparam("user_id", type_=sa.Integer)
    policy = _policy_table()

    window = claim_window(now, policy.c.closes_at_end)
    target = (
        sa.select(
            Posting.id,
            Posting.kind,
            Posting.title,
            Posting.author_id,
            Posting.claim_ttl_hours,
            sa.func.coalesce(Posting.energy_cost, 0).label("cost"),
            *(policy.c[name] for name in POLICY_COLUMNS if name != "kind"),
            sa.and_(window, place_free()).label("takes"),
            sa.and_(window, policy.c.waitlist, line_open()).label("queues"),
        )
        .select_from(posting.join(policy, policy.c.kind == Posting.kind))
        .where(Posting.id == sa.bindparam("posting_id", type_=sa.Integer))
        .with_for_update(of=posting)
        .cte("target")
        .prefix_with("MATERIALIZED")
    )
    pays = sa.and_(target.c.costs_energy, target.c.cost > 0)
    holder = (
        sa.select(allowance_left().label("allowance_left"), affordable(target.c.cost).label("affordable"))
        .select_from(volunteer.join(target, sa.true()))
        .where(Volunteer.user_id == user_id, sa.or_(target.c.counts_limit, pays))
        .with_for_update(of=volunteer)
        .cte("holder")
        .prefix_with("MATERIALIZED")
    )
    live = sa.exists().where(
        Claim.posting_id == target.c.id, Claim.user_id == user_id, Claim.status.in_(LIVE_CLAIM_STATUSES)
    )
    refusal = sa.case(
        (sa.not_(Actor.may_claim_sql(target.c.volunteers_only, target.c.author_id)), "forbidden"),
        (live, "duplicate_claim"),
        (sa.not_(sa.or_(target.c.takes, target.c.queues)), "no_place"),
        (
            sa.and_(target.c.takes, target.c.counts_limit, sa.not_(sa.func.coalesce(holder.c.allowance_left, False))),
            "active_claim_limit",
        ),
        (sa.and_(pays, sa.not_(sa.func.coalesce(holder.c.affordable, False))), "insufficient_energy"),
        else_=sa.null(),
    )
    decision = (
        sa.select(
            target,
            refusal.label("refusal"),
            sa.case((target.c.takes, "active"), else_="waitlisted").label("place"),
            sa.case((pays, target.c.cost), else_=0).label("debit"),
            sa.func.coalesce(sa.func.nullif(target.c.claim_ttl_hours, 0), target.c.ttl_hours).label("ttl"),
        )
        .select_from(target.outerjoin(holder, sa.true()))
        .cte("decision")
        .prefix_with("MATERIALIZED")
    )
    granted = decision.c.refusal.is_(None)
    counted = sa.and_(decision.c.place == "active", decision.c.counts_limit)

    claim_cte = (
        sa.insert(claims)
        .from_select(
            [
                "posting_id",
                "user_id",
                "kind",
                "status",
                "message",
                "claimed_at",
                "due_at",
                "photo_urls",
                "energy_debited",
                "reminder_stage",
                "auto_confirmed",
                "created_at",
                "updated_at",
            ],
            sa.select(
                decision.c.id,
                user_id,
                decision.c.kind,
                decision.c.place,
                sa.cast(sa.bindparam("message", type_=sa.String), sa.String),
                now,
                now + sa.func.make_interval(0, 0, 0, 0, decision.c.ttl),
                sa.cast(sa.literal("[]"), sa.JSON),
                decision.c.debit,
                0,
                sa.false(),
                now,
                now,
            ).where(granted),
        )
        .returning(Claim.id, Claim.status, Claim.due_at, Claim.energy_debited)
        .cte("claim")
    )
    taken = (
        sa.update(posting)
        .where(Posting.id == decision.c.id, granted)
        .values(
            claimed_count=Posting.claimed_count + sa.case((decision.c.place == "active", 1), else_=0),
            waitlist_count=Posting.waitlist_count + sa.case((decision.c.place == "waitlisted", 1), else_=0),
            status=sa.case(
                (decision.c.place == "active", status_once_taken(decision.c.one_place)), else_=Posting.status
            ),
            updated_at=now,
        )
        .cte("taken")
    )
    held = (
        sa.update(volunteer)
        .where(Volunteer.user_id == user_id, granted, sa.or_(counted, decision.c.debit > 0))
        .values(
            active_wish_claims=Volunteer.active_wish_claims + sa.case((counted, 1), else_=0),
            energy_balance=Volunteer.energy_balance - decision.c.debit,
            updated_at=now,
        )
        .returning(Volunteer.energy_balance)
        .cte("held")
    )
    ledger = (
        sa.insert(EnergyEntry.__table__)
        .from_select(
            ["user_id", "delta", "balance_after", "reason", "claim_id", "posting_id", "created_at"],
            sa.select(
                user_id,
                -decision.c.debit,
                held.c.energy_balance,
                sa.literal("redeem"),
                claim_cte.c.id,
                decision.c.id,
                now,
            )
            .select_from(decision.join(claim_cte, sa.true()).join(held, sa.true()))
            .where(decision.c.debit > 0),
        )
        .cte("ledger")
    )

    poster = sa.orm.aliased(User, name="poster")
    values = {"title": decision.c.title, "claim_id": claim_cte.c.id, "user_id": decision.c.author_id}
    locales = list(API_LOCALES)  # the order of a prepared row's texts
    default = locales.index(DEFAULT_LOCALE)

    def in_language(part: str) -> sa.ColumnElement:
        return sa.case(
            *(
                (poster.locale == locale, sa.bindparam(f"n_{part}_{i}", type_=sa.Text))
                for i, locale in enumerate(locales)
                if i != default
            ),
            else_=sa.bindparam(f"n_{part}_{default}", type_=sa.Text),
        )

    told = (
        postgresql.insert(Notification.__table__)
        .from_select(
            [
                "user_id",
                "kind",
                "title",
                "body",
                "data",
                "params",
                "dedupe_key",
                "created_at",
                "push_status",
                "push_attempts",
                "next_attempt_at",
            ],
            sa.select(
                decision.c.author_id,
                sa.literal(TOLD_KIND),
                _filled(in_language("title"), values),
                _filled(in_language("body"), values),
                sa.cast(_filled(sa.bindparam("n_data", type_=sa.Text), values, as_json=True), sa.JSON),
                sa.cast(_filled(sa.bindparam("n_params", type_=sa.Text), values, as_json=True), sa.JSON),
                sa.func.left(_filled(sa.bindparam("n_dedupe", type_=sa.Text), values), 160),
                now,
                sa.literal("pending"),
                0,
                now,
            )
            .select_from(decision.join(claim_cte, sa.true()).join(poster, poster.id == decision.c.author_id))
            .where(decision.c.told),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(Notification.id)
        .cte("told")
    )
    recipient = sa.orm.aliased(User, name="recipient")
    return (
        sa.select(
            decision.c.refusal,
            decision.c.kind,
            decision.c.author_id,
            claim_cte.c.id.label("claim_id"),
            claim_cte.c.status.label("claim_status"),
            claim_cte.c.due_at,
            claim_cte.c.energy_debited,
            told.c.id.label("notification_id"),
            *(getattr(recipient, name).label(f"recipient_{name}") for name in RECIPIENT_FIELDS),
        )
        .select_from(
            decision.outerjoin(claim_cte, sa.true())
            .outerjoin(told, sa.true())
            .outerjoin(recipient, sa.and_(told.c.id.is_not(None), recipient.id == decision.c.author_id))
        )
        .add_cte(taken, ledger)
    )
