"""push providers: a device names its provider; per-device deliveries; nearby alerts
requested in the opening transaction and capped by a per-volunteer daily allowance

Revision ID: e13ac606cd69
Revises: 9d41e7b2c3a5
Create Date: 2026-12-07 12:25:46.851569

Existing devices registered FCM tokens: they become ``provider = 'fcm'``.
The allowance of each volunteer who had nearby alerts today (in their own
time zone) starts from those, so the day's cap holds across the upgrade.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "e13ac606cd69"
down_revision = "9d41e7b2c3a5"
branch_labels = None
depends_on = None

DEFAULT_ZONE = "Asia/Shanghai"


def upgrade():
    op.create_table(
        "nearby_alert_allowances",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("alerts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_nearby_alert_allowances_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_nearby_alert_allowances")),
    )
    op.create_table(
        "push_deliveries",
        sa.Column("notification_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_push_deliveries_device_id_devices"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_push_deliveries_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notification_id", "device_id", name=op.f("pk_push_deliveries")),
    )
    op.create_table(
        "nearby_alert_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("posting_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["posting_id"],
            ["postings.id"],
            name=op.f("fk_nearby_alert_requests_posting_id_postings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nearby_alert_requests")),
    )
    with op.batch_alter_table("nearby_alert_requests", schema=None) as batch_op:
        batch_op.create_index("ix_nearby_alert_requests_posting_id", ["posting_id"], unique=False)

    # every existing device registered an FCM token; the default goes once they have it
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider", sa.String(length=16), nullable=False, server_default="fcm"))
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.alter_column("provider", server_default=None)

    _allowances_from_todays_alerts()


def _allowances_from_todays_alerts():
    """Each volunteer's nearby alerts of their local today, as their starting allowance."""
    bind = op.get_bind()
    now = datetime.now(UTC)
    rows = bind.execute(
        sa.text(
            "SELECT n.user_id, u.timezone, n.created_at FROM notifications n JOIN users u ON u.id = n.user_id "
            "WHERE n.kind = 'nearby_posting' AND n.created_at >= :since"
        ),
        {"since": now - timedelta(days=2)},
    ).all()
    counts: dict[int, tuple] = {}
    for user_id, tz, created_at in rows:
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at)
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        try:
            zone = ZoneInfo(tz or DEFAULT_ZONE)
        except (KeyError, ValueError):
            zone = ZoneInfo(DEFAULT_ZONE)
        today = now.astimezone(zone).date()
        if created_at.astimezone(zone).date() == today:
            day, alerts = counts.get(user_id, (today, 0))
            counts[user_id] = (today, alerts + 1)
    if counts:
        table = sa.table("nearby_alert_allowances", sa.column("user_id"), sa.column("day"), sa.column("alerts"))
        op.bulk_insert(table, [{"user_id": u, "day": d, "alerts": a} for u, (d, a) in sorted(counts.items())])


def downgrade():
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("provider")

    with op.batch_alter_table("nearby_alert_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_nearby_alert_requests_posting_id")

    op.drop_table("nearby_alert_requests")
    op.drop_table("push_deliveries")
    op.drop_table("nearby_alert_allowances")
