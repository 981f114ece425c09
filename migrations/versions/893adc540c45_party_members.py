"""party members: requests to join an org, the community a party member reports to
(双报到), and nearby alerts that reach party members first (a delayed second wave)

Revision ID: 893adc540c45
Revises: e13ac606cd69
Create Date: 2026-12-07 15:39:46.909560

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "893adc540c45"
down_revision = "e13ac606cd69"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "community_reports",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_community_reports_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_community_reports_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_community_reports")),
    )
    with op.batch_alter_table("community_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_community_reports_org_id"), ["org_id"], unique=False)

    op.create_table(
        "org_join_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reject_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_org_join_requests_decided_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_org_join_requests_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_org_join_requests_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_join_requests")),
        sa.UniqueConstraint("org_id", "user_id", name="uq_org_join_requests_org_user"),
    )
    with op.batch_alter_table("org_join_requests", schema=None) as batch_op:
        batch_op.create_index("ix_org_join_requests_org_id_status_id", ["org_id", "status", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_org_join_requests_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_service_records_recorded_volunteer_id_ended_at",
            ["volunteer_id", "ended_at"],
            unique=False,
            postgresql_include=["minutes"],
            postgresql_where=sa.text("status = 'recorded'"),
            sqlite_where=sa.text("status = 'recorded'"),
        )

    with op.batch_alter_table("nearby_alert_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("party_first", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("service_records", schema=None) as batch_op:
        batch_op.drop_index("ix_service_records_recorded_volunteer_id_ended_at")

    with op.batch_alter_table("nearby_alert_requests", schema=None) as batch_op:
        batch_op.drop_column("due_at")
        batch_op.drop_column("party_first")

    with op.batch_alter_table("org_join_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_join_requests_user_id"))
        batch_op.drop_index("ix_org_join_requests_org_id_status_id")

    op.drop_table("org_join_requests")
    with op.batch_alter_table("community_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_community_reports_org_id"))

    op.drop_table("community_reports")
