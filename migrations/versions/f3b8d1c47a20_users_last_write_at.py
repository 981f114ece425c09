"""users.last_write_at: reads after one's own write go to the primary (read replica)

Revision ID: f3b8d1c47a20
Revises: 893adc540c45
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "f3b8d1c47a20"
down_revision = "893adc540c45"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("last_write_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("last_write_at")
