"""SMS codes (短信验证码): sending one within the limits, and spending one.

A code is six digits from ``secrets``, lives 5 minutes, is used once, is
replaced by a newer one for the same phone and is spent by 5 wrong tries. It
is stored only as an HMAC (a key derived from ``SECRET_KEY`` for this one
purpose) over the phone, the purpose and the digits, and compared in
constant time. Numbers and client addresses are stored as keyed hashes too.

The limits are rules of the codes, kept in the database with them — not in
the request limiter, which may be off (``RATELIMIT_ENABLED``) or count in one
process's memory. They hold across any number of web processes, on
PostgreSQL and on the SQLite default alike, because each is one conditional
statement the database serialises:

- one code per phone per 60 s, whatever the purpose: the phone's row in
  ``sms_codes`` is (re)written only ``WHERE reserved_at <= now - 60 s``;
- 10 per phone per day and 20 per client address per hour: a counter row per
  (key, window) moved by ``INSERT … ON CONFLICT DO UPDATE SET count = count + 1
  WHERE count < limit``;
- ``SMS_DAILY_BUDGET`` for the whole service a day (Asia/Shanghai): the same
  counter, key ``all`` — past it 503 ``sms_unavailable``, so a flood from
  rotating addresses and numbers ends at the budget, never at the bill.

Sending is three steps, so no transaction stays open while the provider is
called: (1) count the client address, (2) reserve — the phone's 60 s slot, its
day, the budget and a fresh code in one transaction, (3) call the provider
and settle: a code it accepted becomes usable; one it refused or could not
take (``invalid_number``, ``failed``) is released and its counts given back,
since nothing was sent or billed; one it rate-limited, or whose answer never
came (``unknown``: it may have been sent), stays counted and unusable.

For ``login``, ``reset_password`` and ``delete_account`` the answer does not
say whether the number has an account: the same limits are counted, the same
202 comes back, and for a number without one nothing is sent — after a pause
as long as a real send recently took, so timing does not tell either.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, has_app_context
from flask_babel import gettext
from prometheus_client.core import GaugeMetricFamily

from app import metrics
from app.clock import day_start, local_date, utcnow
from app.errors import Conflict, Invalid, TooManyRequests, Unavailable
from app.extensions import db
from app.models import SmsCode, SmsCounter, User
from app.policy import (
    SMS_ACCOUNT_PURPOSES,
    SMS_CODE_DIGITS,
    SMS_CODE_MAX_ATTEMPTS,
    SMS_CODE_TTL,
    SMS_NEW_NUMBER_PURPOSES,
    SMS_PER_ADDRESS_PER_HOUR,
    SMS_PER_PHONE_PER_DAY,
    SMS_RESEND_INTERVAL,
)
from app.sms import provider_for

log = logging.getLogger(__name__)

PHONE_DAY = "phone_day"
ADDRESS_HOUR = "address_hour"
BUDGET_DAY = "budget_day"
BUDGET_KEY = "all"
# How long a send takes when it is not really made (a number without an account):
# a moving average of real sends, at most this long.
MAX_PAUSE_SECONDS = 2.0


@dataclass(frozen=True)
class CodeSent:
    """The 202 of ``POST /auth/sms-codes``."""

    resend_after_s: int
    expires_in_s: int


# --- keyed hashes --------------------------------------------------------------------------------------------------


def _key() -> bytes:
    secret = current_app.config["SECRET_KEY"].encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"yz.sms-codes.v1").derive(secret)


def _mac(*parts: str) -> str:
    return hmac.new(_key(), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def phone_key(phone: str) -> str:
    return _mac("phone", phone)


def code_hash(phone: str, purpose: str, code: str) -> str:
    return _mac("code", phone, purpose, code)


def new_code() -> str:
    return f"{secrets.randbelow(10**SMS_CODE_DIGITS):0{SMS_CODE_DIGITS}d}"


# --- counters ------------------------------------------------------------------------------------------------------


def _insert():
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _take(scope: str, key: str, window_start: datetime, limit: int) -> bool:
    """Count one in (scope, key, window) unless it already holds ``limit``; True when counted."""
    if limit <= 0:
        return False
    stmt = _insert()(SmsCounter).values(scope=scope, key=key, window_start=window_start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "key", "window_start"],
        set_={"count": SmsCounter.count + 1},
        where=SmsCounter.count < limit,
    ).returning(SmsCounter.count)
    return db.session.execute(stmt).first() is not None


def _give_back(scope: str, key: str, window_start: datetime) -> None:
    db.session.execute(
        sa.update(SmsCounter)
        .where(
            SmsCounter.scope == scope,
            SmsCounter.key == key,
            SmsCounter.window_start == window_start,
            SmsCounter.count > 0,
        )
        .values(count=SmsCounter.count - 1)
    )


def _count(scope: str, key: str, window_start: datetime) -> int:
    return (
        db.session.scalar(
            sa.select(SmsCounter.count).where(
                SmsCounter.scope == scope, SmsCounter.key == key, SmsCounter.window_start == window_start
            )
        )
        or 0
    )


def _day(now: datetime) -> tuple[datetime, int]:
    """The start of today (Asia/Shanghai, or DEFAULT_TIMEZONE) and the seconds left in it."""
    start = day_start(local_date(now))
    return start, int((start + timedelta(days=1) - now).total_seconds())


def _hour(now: datetime) -> tuple[datetime, int]:
    start = now.replace(minute=0, second=0, microsecond=0)
    return start, int((start + timedelta(hours=1) - now).total_seconds())


def sent_today(now: datetime | None = None) -> int:
    """Codes counted against today's budget (for the metrics)."""
    return _count(BUDGET_DAY, BUDGET_KEY, _day(now or utcnow())[0])


@metrics.on_scrape
def _budget_gauges():
    """Today's SMS codes against SMS_DAILY_BUDGET (read when scraped)."""
    if not has_app_context():
        return
    try:
        used = sent_today()
        db.session.rollback()
    except Exception:  # noqa: BLE001 - a scrape without it beats a failed scrape
        db.session.rollback()
        log.warning("metrics: could not read the SMS budget", exc_info=True)
        return
    yield GaugeMetricFamily("yz_sms_budget_used", "SMS codes counted against today's budget.", value=used)
    yield GaugeMetricFamily(
        "yz_sms_daily_budget",
        "SMS_DAILY_BUDGET: codes the service sends a day.",
        value=current_app.config["SMS_DAILY_BUDGET"],
    )


# --- sending -------------------------------------------------------------------------------------------------------


def request_code(phone: str, purpose: str, address: str | None) -> CodeSent:
    """Send ``phone`` a code for ``purpose`` on behalf of a client at ``address``,
    within the limits (module docstring); raise the refusal otherwise."""
    now = utcnow()
    answer = CodeSent(int(SMS_RESEND_INTERVAL.total_seconds()), int(SMS_CODE_TTL.total_seconds()))

    hour, hour_left = _hour(now)
    if not _take(ADDRESS_HOUR, _mac("address", address or "-"), hour, SMS_PER_ADDRESS_PER_HOUR):
        db.session.rollback()
        _refused(purpose, "address_limit")
        raise TooManyRequests("sms_too_frequent", retry_after=hour_left)
    db.session.commit()

    has_account = db.session.scalar(sa.select(User.id).where(User.phone == phone)) is not None
    if purpose in SMS_NEW_NUMBER_PURPOSES and has_account:
        db.session.rollback()
        _refused(purpose, "phone_taken")
        raise Conflict("phone_taken")
    deliver = has_account or purpose not in SMS_ACCOUNT_PURPOSES

    code = new_code()
    reservation = _reserve(phone, purpose, code, now, count_budget=deliver)
    if not deliver:
        _pause_like_a_send()
        metrics.SMS.labels(purpose, "no_account").inc()
        return answer

    started = time.monotonic()
    result = provider_for(current_app).send(phone, code, purpose)
    _settle(reservation, result.outcome, now)
    metrics.SMS.labels(purpose, result.outcome).inc()
    if result.outcome == "sent":
        _remember_send_time(time.monotonic() - started)
        return answer
    if result.outcome == "rate_limited":
        raise TooManyRequests("sms_too_frequent", retry_after=answer.resend_after_s)
    if result.outcome == "invalid_number":
        raise Invalid("phone", gettext("This number cannot receive SMS messages."))
    raise Unavailable("sms_unavailable", retry_after=answer.resend_after_s)


@dataclass(frozen=True)
class _Reservation:
    phone_key: str
    nonce: str
    day: datetime
    budget_counted: bool


def _reserve(phone: str, purpose: str, code: str, now: datetime, *, count_budget: bool) -> _Reservation:
    """The phone's resend slot, its day, the budget and the new code, in one transaction."""
    key = phone_key(phone)
    nonce = secrets.token_hex(16)
    values = {
        "purpose": purpose,
        "code_hash": code_hash(phone, purpose, code),
        "nonce": nonce,
        "reserved_at": now,
        "sent_at": None,
        "expires_at": now + SMS_CODE_TTL,
        "attempts": 0,
        "used_at": None,
    }
    stmt = _insert()(SmsCode).values(phone_key=key, **values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["phone_key"],
        set_=values,
        where=SmsCode.reserved_at <= now - SMS_RESEND_INTERVAL,
    ).returning(SmsCode.id)
    if db.session.execute(stmt).first() is None:
        db.session.rollback()
        last = db.session.scalar(sa.select(SmsCode.reserved_at).where(SmsCode.phone_key == key))
        db.session.rollback()
        wait = (last + SMS_RESEND_INTERVAL - now).total_seconds() if last else SMS_RESEND_INTERVAL.total_seconds()
        _refused(purpose, "resend_interval")
        raise TooManyRequests("sms_too_frequent", retry_after=max(1, int(wait + 0.999)))
    day, day_left = _day(now)
    if not _take(PHONE_DAY, key, day, SMS_PER_PHONE_PER_DAY):
        db.session.rollback()
        _refused(purpose, "phone_day_limit")
        raise TooManyRequests("sms_too_frequent", retry_after=day_left)
    budget = current_app.config["SMS_DAILY_BUDGET"]
    # A number without an account is sent nothing and costs nothing; it is still
    # refused past the budget, like any other, so the answer tells nothing.
    within = (
        _take(BUDGET_DAY, BUDGET_KEY, day, budget) if count_budget else _count(BUDGET_DAY, BUDGET_KEY, day) < budget
    )
    if not within:
        db.session.rollback()
        _refused(purpose, "budget")
        log.warning("sms daily budget (%d) spent: codes refused until the day ends", budget)
        raise Unavailable("sms_unavailable", retry_after=day_left)
    db.session.commit()
    return _Reservation(key, nonce, day, count_budget)


def _settle(reservation: _Reservation, outcome: str, now: datetime) -> None:
    """Record the provider's answer on the reservation (only if no newer one replaced it)."""
    mine = (SmsCode.phone_key == reservation.phone_key, SmsCode.nonce == reservation.nonce)
    if outcome == "sent":
        sent = utcnow()
        db.session.execute(sa.update(SmsCode).where(*mine).values(sent_at=sent, expires_at=sent + SMS_CODE_TTL))
    elif outcome in ("invalid_number", "failed"):
        # Nothing went out: the slot, the day's count and the budget are given back.
        db.session.execute(
            sa.update(SmsCode).where(*mine).values(reserved_at=now - SMS_RESEND_INTERVAL, expires_at=now, used_at=now)
        )
        _give_back(PHONE_DAY, reservation.phone_key, reservation.day)
        if reservation.budget_counted:
            _give_back(BUDGET_DAY, BUDGET_KEY, reservation.day)
    # rate_limited, unknown: the code stays unusable (never sent_at) and counted.
    db.session.commit()


def _refused(purpose: str, reason: str) -> None:
    metrics.SMS.labels(purpose, reason).inc()


# A running average of how long a real send takes, in this process.
_send_seconds = 0.0
_send_lock = threading.Lock()


def _remember_send_time(seconds: float) -> None:
    global _send_seconds
    with _send_lock:
        _send_seconds = seconds if _send_seconds == 0.0 else 0.8 * _send_seconds + 0.2 * seconds


def _pause_like_a_send() -> None:
    with _send_lock:
        pause = min(_send_seconds, MAX_PAUSE_SECONDS)
    if pause > 0:
        time.sleep(pause * secrets.SystemRandom().uniform(0.8, 1.2))


# --- spending ------------------------------------------------------------------------------------------------------


def spend_code(phone: str, purpose: str, code: str | None) -> bool:
    """Spend the code ``phone`` was sent for ``purpose``, in the caller's transaction
    (which commits it, or rolls it back with everything else). True when it was right.

    Call it before writing anything: a wrong code costs one of its tries, and
    that is committed here at once (a fifth wrong try spends the code). Two
    requests spending one code race on one conditional UPDATE: one wins.
    """
    key = phone_key(phone)
    now = utcnow()
    row = db.session.execute(
        sa.select(SmsCode.id, SmsCode.code_hash).where(
            SmsCode.phone_key == key,
            SmsCode.purpose == purpose,
            SmsCode.sent_at.is_not(None),
            SmsCode.used_at.is_(None),
            SmsCode.expires_at > now,
            SmsCode.attempts < SMS_CODE_MAX_ATTEMPTS,
        )
    ).first()
    given = code_hash(phone, purpose, code or "")
    if row is None or not hmac.compare_digest(row.code_hash, given):
        if row is not None:
            db.session.rollback()
            db.session.execute(
                sa.update(SmsCode)
                .where(SmsCode.id == row.id, SmsCode.attempts < SMS_CODE_MAX_ATTEMPTS)
                .values(attempts=SmsCode.attempts + 1)
            )
            db.session.commit()
        else:
            db.session.rollback()
        return False
    spent = db.session.execute(
        sa.update(SmsCode)
        .where(
            SmsCode.id == row.id,
            SmsCode.code_hash == given,
            SmsCode.used_at.is_(None),
            SmsCode.expires_at > now,
            SmsCode.attempts < SMS_CODE_MAX_ATTEMPTS,
        )
        .values(used_at=now)
    ).rowcount
    if spent != 1:
        db.session.rollback()
        return False
    return True


def invalid_code(field: str = "sms_code") -> Invalid:
    """422 ``invalid_sms_code`` naming ``field``."""
    return Invalid(field, gettext("The SMS code is wrong or has expired; ask for a new one."), "invalid_sms_code")


def require_code(phone: str, purpose: str, code: str | None, field: str = "sms_code") -> None:
    """:func:`spend_code`, or 422 ``invalid_sms_code`` naming ``field``."""
    if not spend_code(phone, purpose, code):
        raise invalid_code(field)


def purge_counters(before: datetime, limit: int) -> int:
    """Delete up to ``limit`` counters of windows that started before ``before`` (the purge job)."""
    windows = (
        sa.select(SmsCounter.scope, SmsCounter.key, SmsCounter.window_start)
        .where(SmsCounter.window_start < before)
        .limit(limit)
        .subquery()
    )
    return db.session.execute(
        sa.delete(SmsCounter).where(
            sa.tuple_(SmsCounter.scope, SmsCounter.key, SmsCounter.window_start).in_(sa.select(windows))
        )
    ).rowcount
