"""notify(): inbox/outbox rows written in the caller's transaction."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app import clock
from app.extensions import db
from app.models import Notification, User
from app.outbox import notify, notify_each, quiet_hours_end
from app.outbox.templates import NOTIFICATION_KINDS, TEMPLATES, render
from tests.factories import make_user
from tests.moments import YEAR


def _rows(app, user_id=None) -> list[Notification]:
    with app.app_context():
        stmt = sa.select(Notification).order_by(Notification.id)
        if user_id is not None:
            stmt = stmt.where(Notification.user_id == user_id)
        rows = list(db.session.scalars(stmt))
        db.session.expunge_all()
        return rows


def _set_user(app, user_id, **values) -> None:
    with app.app_context():
        db.session.execute(sa.update(User).where(User.id == user_id).values(**values))
        db.session.commit()


def test_one_row_per_user_with_text_data_and_params(app):
    poster, other = make_user(app), make_user(app)
    with app.app_context():
        written = notify(
            [poster.id, other.id, poster.id, None],
            "wish_claimed",
            dedupe="claim:7",
            title="帮王奶奶买菜",
            volunteer="小陈",
            posting_id=42,
            claim_id=7,
        )
        db.session.commit()
    assert written == 2
    rows = _rows(app)
    assert sorted(r.user_id for r in rows) == sorted([poster.id, other.id])
    row = _rows(app, poster.id)[0]
    assert row.kind == "wish_claimed"
    assert row.title == "心愿被认领啦"
    assert row.body == "小陈认领了您的「帮王奶奶买菜」。"
    assert row.data == {"kind": "wish_claimed", "posting_id": "42", "claim_id": "7"}
    assert row.params == {"title": "帮王奶奶买菜", "volunteer": "小陈"}
    assert row.dedupe_key == f"wish_claimed:claim:7:{poster.id}"
    assert row.push_status == "pending"
    assert row.push_attempts == 0
    assert row.read_at is None


def test_same_event_twice_writes_one_row(app):
    user = make_user(app)
    with app.app_context():
        assert notify([user.id], "claim_confirmed", dedupe="claim:1", title="修水管", posting_id=3) == 1
        db.session.commit()
        assert notify([user.id], "claim_confirmed", dedupe="claim:1", title="修水管", posting_id=3) == 0
        # a different event of the same kind is a new row
        assert notify([user.id], "claim_confirmed", dedupe="claim:2", title="修水管", posting_id=3) == 1
        db.session.commit()
    assert len(_rows(app, user.id)) == 2


def test_rows_roll_back_with_the_callers_transaction(app):
    user = make_user(app)
    with app.app_context():
        notify([user.id], "posting_approved", dedupe="posting:1", title="义务理发", posting_id=1)
        db.session.rollback()
    assert _rows(app) == []


def test_english_user_gets_english_text(app):
    user = make_user(app)
    _set_user(app, user.id, locale="en")
    with app.app_context():
        notify([user.id], "posting_rejected", dedupe="posting:5", title="Fix a tap", reason="duplicate", posting_id=5)
        db.session.commit()
    row = _rows(app, user.id)[0]
    assert row.title == "Posting rejected"
    assert row.body == "Your posting “Fix a tap” was rejected: duplicate"


def test_times_are_shown_in_the_users_zone(app):
    shanghai, berlin = make_user(app), make_user(app)
    _set_user(app, berlin.id, locale="en", timezone="Europe/Berlin")
    starts = datetime(YEAR, 12, 5, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai, 02:30 in Berlin
    with app.app_context():
        notify([shanghai.id, berlin.id], "event_reminder", dedupe="claim:3:24h", title="清扫河道", when=starts)
        db.session.commit()
    assert _rows(app, shanghai.id)[0].body == "您报名的「清扫河道」将于12月5日 09:30开始。"
    assert _rows(app, berlin.id)[0].body == "“清扫河道” starts on 5 Dec at 02:30."
    # the stored params keep the instant, so the inbox can render it again
    assert _rows(app, berlin.id)[0].params == {
        "title": "清扫河道",
        "when": {"$datetime": f"{YEAR}-12-05T01:30:00+00:00"},
    }


def test_muted_kind_keeps_the_inbox_row_but_skips_the_push(app):
    user = make_user(app)
    _set_user(app, user.id, muted_kinds=["nearby_posting"])
    with app.app_context():
        notify([user.id], "nearby_posting", dedupe="posting:9", title="陪老人聊天", distance_km=1.234, posting_id=9)
        notify([user.id], "wish_claimed", dedupe="claim:9", title="陪老人聊天", volunteer="小李", posting_id=9)
        db.session.commit()
    muted, loud = _rows(app, user.id)
    assert (muted.kind, muted.push_status, muted.last_error) == ("nearby_posting", "skipped", "muted")
    assert muted.body == "距您约 1.2 公里：「陪老人聊天」"
    assert loud.push_status == "pending"


def test_notify_each_gives_every_user_their_own_context(app):
    near, far = make_user(app), make_user(app)
    with app.app_context():
        written = notify_each(
            "nearby_posting",
            {near.id: {"distance_km": 0.4}, far.id: {"distance_km": 2.75}},
            dedupe="posting:11",
            title="送药上门",
            posting_id=11,
        )
        db.session.commit()
    assert written == 2
    assert _rows(app, near.id)[0].body == "距您约 0.4 公里：「送药上门」"
    assert _rows(app, far.id)[0].body == "距您约 2.8 公里：「送药上门」"


def test_unknown_kind_is_a_programming_error(app):
    user = make_user(app)
    with app.app_context(), pytest.raises(ValueError, match="unknown notification kind"):
        notify([user.id], "wish_teleported", dedupe="x")


def test_every_kind_renders_in_both_languages_without_placeholders_left(app):
    context = {
        "title": "T",
        "reason": "R",
        "volunteer": "V",
        "when": datetime(YEAR, 1, 1, tzinfo=UTC),
        "distance_km": 1.0,
        "org": "O",
    }
    assert set(TEMPLATES) == set(NOTIFICATION_KINDS)
    with app.app_context():
        for kind in NOTIFICATION_KINDS:
            for locale in ("zh-CN", "en"):
                title, body = render(kind, locale, context)
                assert title and body and "{" not in title + body, (kind, locale)
                chinese = re.search(r"[\u4e00-\u9fff]", title)
                assert bool(chinese) == (locale == "zh-CN"), (kind, locale, title)


# --- quiet hours -------------------------------------------------------------------------

SH = "Asia/Shanghai"


def _sh(day: int, hour: int, minute: int = 0) -> datetime:
    """A Shanghai wall-clock time on <day> November of YEAR as UTC (Shanghai is UTC+8, no DST)."""
    return datetime(YEAR, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (_sh(26, 21, 59), None),
        (_sh(26, 22, 0), _sh(27, 7, 0)),
        (_sh(26, 23, 30), _sh(27, 7, 0)),
        (_sh(27, 0, 0), _sh(27, 7, 0)),  # just after midnight: ends the same local day
        (_sh(27, 6, 59), _sh(27, 7, 0)),
        (_sh(27, 7, 0), None),
        (_sh(27, 12, 0), None),
    ],
)
def test_quiet_hours_across_midnight_in_shanghai(now, expected):
    assert quiet_hours_end(now, SH, "22:00", "07:00") == expected


def test_quiet_hours_within_one_day_and_other_zones():
    assert quiet_hours_end(_sh(26, 13, 30), SH, "13:00", "14:00") == _sh(26, 14, 0)
    assert quiet_hours_end(_sh(26, 14, 0), SH, "13:00", "14:00") is None
    # 23:30 in Berlin (UTC+1 in November) is 22:30 UTC; quiet until 07:00 Berlin = 06:00 UTC
    berlin_late = datetime(YEAR, 11, 26, 22, 30, tzinfo=UTC)
    assert quiet_hours_end(berlin_late, "Europe/Berlin", "22:00", "07:00") == datetime(YEAR, 11, 27, 6, tzinfo=UTC)
    # an unknown zone falls back to Asia/Shanghai
    assert quiet_hours_end(_sh(26, 23, 0), "Mars/Olympus", "22:00", "07:00") == _sh(27, 7, 0)
    # off: unset or empty window
    assert quiet_hours_end(_sh(26, 23, 0), SH, None, None) is None
    assert quiet_hours_end(_sh(26, 23, 0), SH, "22:00", "22:00") is None


def test_push_waits_for_the_end_of_quiet_hours_but_the_inbox_row_exists_at_once(app):
    user = make_user(app)
    _set_user(app, user.id, quiet_start="22:00", quiet_end="07:00")
    clock.freeze(_sh(26, 23, 30))
    with app.app_context():
        notify([user.id], "claim_due_soon", dedupe="claim:4:due", title="买药", posting_id=4, claim_id=4)
        db.session.commit()
    row = _rows(app, user.id)[0]
    assert row.push_status == "pending"
    assert row.created_at == _sh(26, 23, 30)
    assert row.next_attempt_at == _sh(27, 7, 0)

    clock.freeze(_sh(27, 12, 0))
    with app.app_context():
        notify([user.id], "claim_due_soon", dedupe="claim:5:due", title="买药", posting_id=5, claim_id=5)
        db.session.commit()
    assert _rows(app, user.id)[1].next_attempt_at == _sh(27, 12, 0)
